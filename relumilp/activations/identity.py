"""The identity activation ``y = x`` (one piece, no kink): exact everywhere, never a binary."""

from __future__ import annotations

import numpy as np

from .base import Activation, register


@register
class Identity(Activation):
    """``y = x``."""

    kind = "identity"
    LABEL = "identity"

    def __init__(self):
        self._set_pieces((), (1.0,), (0.0,))

    def apply(self, x):
        return np.array(x, dtype=np.float64, copy=True)

    def apply_torch(self, x):
        return x

    def interval_torch(self, l, u):
        return l, u

    def linear_relaxation(self, l, u):
        import torch

        one, zero = torch.ones_like(l), torch.zeros_like(l)
        return one, zero, one, zero

    def milp_rows(self, asm, name, x, y, L, U, ph) -> dict:
        return {}  # every neuron is stable: its row y = x is a stable row

    def hull_rows(self, asm, name, x, y, L, U, ph) -> None:
        return None
