"""Activation kinds: one class per kind, behind a registry keyed by kind name.

Everything relumilp knows about an element-wise activation -- evaluation, interval image, phases of
neurons, MILP and LP encodings, symbolic relaxations, rescaling, rounding -- lives on its class. Code
elsewhere asks the object (``node.activation``) and never tests kind names. See
``docs/architecture.md`` ("How to add an activation kind").
"""

from __future__ import annotations

from .base import Activation, Phases, from_spec, get, kinds, label, register
from .clip import Clip, ClippedReLU
from .identity import Identity
from .pwl import Abs, Hardtanh, HardSigmoid, PiecewiseLinear, ReLU6, prelu
from .relu import LeakyReLU, ReLU
from .smooth import (ELU, GELU, Erf, Exp, HardSwish, Log, Power, Reciprocal, RePU, SiLU, Sigmoid, SmoothActivation,
                     SoftExponential, Softplus, Softsign, Sqrt, Square, Tanh)

__all__ = [
    "Abs", "Activation", "Clip", "ClippedReLU", "ELU", "Erf", "Exp", "GELU", "HardSigmoid", "HardSwish", "Hardtanh", "Identity",
    "LeakyReLU", "Log", "Phases", "PiecewiseLinear", "Power", "ReLU", "ReLU6", "Reciprocal", "RePU", "SiLU", "Sigmoid", "SmoothActivation", "SoftExponential",
    "Softplus", "Softsign", "Sqrt", "Square", "Tanh", "from_spec", "get", "kinds", "label", "prelu", "register",
]
