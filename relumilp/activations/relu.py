r"""ReLU ``max(x, 0)`` and LeakyReLU ``max(x, alpha x)`` (``alpha < 1``): one kink at 0.

Big-M encoding of a neuron with ``L < 0 < U`` (``z = 1`` means ``x >= 0``)::

    y >= x,   y >= alpha x,
    y <= x - (1 - alpha) L (1 - z),
    y <= alpha x + (1 - alpha) U z,        z in {0, 1}.

``z = 1`` forces ``y = x`` and, through ``y >= alpha x``, ``x >= 0``; ``z = 0`` forces ``y = alpha x`` and,
through ``y >= x``, ``x <= 0``. For ``alpha = 0`` these are the classic rows ``y >= x, y >= 0,
y <= x - L (1 - z), y <= U z``. The convex hull over ``[L, U]`` is ``y >= x``, ``y >= alpha x`` and the
chord ``y <= alpha L + s (x - L)``, ``s = (U - alpha L) / (U - L)``; projecting ``z`` out of the LP
relaxation of the big-M rows gives the same set.
"""

from __future__ import annotations

import math

import numpy as np

from ..errors import UnsupportedOperatorError
from .base import Activation, register


@register
class LeakyReLU(Activation):
    """``max(x, alpha x)`` with a finite ``alpha < 1`` (``alpha`` may be negative: ``f`` is still convex)."""

    kind = "leaky_relu"
    LABEL = "LeakyReLU"
    PARAMS = ("alpha",)
    BINARY_NAMES = ("z",)

    def __init__(self, alpha: float = 0.01):
        alpha = float(alpha)
        if not (math.isfinite(alpha) and alpha < 1.0):
            raise UnsupportedOperatorError(f"LeakyReLU slope {alpha}", ["negative slopes below 1"])
        self.alpha = alpha
        self._set_pieces((0.0,), (alpha, 1.0), (0.0, 0.0))

    def apply(self, x):
        return np.where(x >= 0.0, x, self.alpha * x)

    def apply_torch(self, x):
        import torch

        return torch.where(x >= 0, x, self.alpha * x)

    @property
    def _slope(self) -> float:
        return self.alpha

    def linear_relaxation(self, l, u):
        """``l >= 0`` identity, ``u <= 0`` ``alpha x``; otherwise the upper line is the chord through
        ``(l, alpha l)`` and ``(u, u)`` and the lower line ``s x`` with ``s = 1`` when ``u >= -l`` else
        ``s = alpha`` (any ``s`` in ``[alpha, 1]`` is a subgradient at 0; this one minimises the area).
        Denominators are guarded so no NaN reaches the gradients of unselected branches."""
        import torch

        one, zero = torch.ones_like(l), torch.zeros_like(l)
        a = self._slope
        active = l >= 0
        inactive = (u <= 0) & ~active
        cross = ~(active | inactive)
        width = torch.where(cross, u - l, one)
        chord = torch.where(cross, (u - a * l) / width, one)
        au = torch.where(active, one, torch.where(inactive, a * one, chord))
        cu = torch.where(cross, u - chord * u, zero)
        al = torch.where(active | (cross & (u >= -l)), one, a * one)
        return al, zero, au, cu

    def lower_family(self, l, u, t):
        """Unstable neurons (``l < 0 < u``): the line ``s x`` through the kink with ``s = alpha + t (1 - alpha)``,
        ``t`` in ``[0, 1]``. ``f`` is convex and ``s`` lies between its two slopes, so ``s x <= f(x)``
        for every ``x``."""
        import torch

        a = self._slope
        return (l < 0) & (u > 0), a + t * (1.0 - a), torch.zeros_like(t)

    def lower_family_start(self, l, u):
        return (u >= -l).to(l.dtype)  # linear_relaxation's area-minimising choice: s = 1 or s = alpha

    def milp_rows(self, asm, name, x_all, y_all, L, U, ph):
        alpha = self._slope
        idx = np.flatnonzero(ph.crosses[0])
        x, y, l, u = x_all[idx], y_all[idx], L[idx], U[idx]
        z = asm.add_columns(np.zeros(idx.size), np.ones(idx.size), integer=True)
        zeros, inf = np.zeros(idx.size), np.full(idx.size, np.inf)
        asm.add_rows(name, [(1.0, y), (-1.0, x)], zeros, inf)  # y >= x
        if alpha != 0.0:
            asm.add_rows(name, [(1.0, y), (-alpha, x)], zeros, inf)  # y >= alpha x
        gap = 1.0 - alpha
        # y <= x - (1 - alpha) L (1 - z)   <=>   y - x - (1 - alpha) L z <= -(1 - alpha) L
        asm.add_rows(name, [(1.0, y), (-1.0, x), (-gap * l, z)], -inf, -gap * l)
        # y <= alpha x + (1 - alpha) U z
        asm.add_rows(name, [(1.0, y), (-alpha, x), (-gap * u, z)], -inf, zeros)
        from ..formulation.milp import VariableGroup

        return {"z": VariableGroup(f"{name}.z", z, idx)}

    def hull_rows(self, asm, name, x_all, y_all, L, U, ph):
        alpha = self._slope
        i = np.flatnonzero(ph.crosses[0])
        x, y, l, u = x_all[i], y_all[i], L[i], U[i]
        asm.add_rows(name, [(1.0, y), (-1.0, x)], np.zeros(i.size), np.inf)  # y >= x
        if alpha != 0.0:  # y >= alpha x (for ReLU: the column bound y >= 0)
            asm.add_rows(name, [(1.0, y), (-alpha, x)], np.zeros(i.size), np.inf)
        slope = (u - alpha * l) / (u - l)  # the chord from (L, alpha L) to (U, U)
        asm.add_rows(name, [(1.0, y), (-slope, x)], np.full(i.size, -np.inf), (alpha - slope) * l)


@register
class ReLU(LeakyReLU):
    """``max(x, 0)``: LeakyReLU with ``alpha = 0``, evaluated as ``max``."""

    kind = "relu"
    LABEL = "ReLU"
    PARAMS = ()

    def __init__(self):
        self._set_pieces((0.0,), (0.0, 1.0), (0.0, 0.0))

    @property
    def _slope(self) -> float:
        return 0.0

    def apply(self, x):
        return np.maximum(x, 0.0)

    def apply_torch(self, x):
        import torch

        return torch.clamp(x, min=0.0)
