r"""Clip ``min(max(x, a), b)`` (``a < b``, either may be negative) and clipped ReLU (``a = 0``, ``b = c``).

Three pieces: ``y = a`` below ``a``, ``y = x`` between, ``y = b`` above ``b``.

**Big-M encoding** with binaries ``z`` (``x >= a``) and ``zc`` (``x >= b``), ``zc <= z``, and column
bounds ``a <= y <= b``::

      y >= x - (U - b) zc,            y <= x + (a - L)(1 - z),
      y <= a + (min(U, b) - a) z,     y >= a + (b - a) zc.

Piece by piece: ``z = 0`` gives ``y = a``, ``x <= a``; ``zc = 1`` gives ``y = b``, ``x >= b``;
``z = 1, zc = 0`` gives ``y = x`` with ``a <= x <= b``. A binary exists only for a kink the bounds leave
reachable (``L < a < U`` for ``z``, ``L < b < U`` for ``zc``); a neuron crossing only ``b`` also gets
``y <= x``, one crossing only ``a`` gets ``y >= x``. This is the clipped-ReLU encoding translated by
``a`` (``x' = x - a``, ``y' = y - a``, cap ``b - a``), exact for the same reason.

**Convex hull** over ``[L, U]`` (LP relaxation; ``a <= y <= b`` are column bounds):

* crossing ``a`` only (``U <= b``): ``y >= x`` and the chord ``(L, a)``--``(U, U)`` above;
* crossing ``b`` only (``L >= a``): ``y <= x`` and the chord ``(L, L)``--``(U, b)`` below;
* crossing both: the chords ``(L, a)``--``(b, b)`` above and ``(a, a)``--``(U, b)`` below.

The two-binary big-M relaxation is not sharp; the hull is strictly tighter on some neurons.
"""

from __future__ import annotations

import math

import numpy as np

from ..errors import InvalidNetworkError
from .base import Activation, register


@register
class Clip(Activation):
    """``min(max(x, low), high)`` with finite ``low < high`` (ONNX ``Clip(a, b)``, torch ``Hardtanh(a, b)``)."""

    kind = "clip"
    LABEL = "clip"
    PARAMS = ("low", "high")
    BINARY_NAMES = ("z", "z_cap")

    def __init__(self, low: float = -1.0, high: float = 1.0):
        low, high = float(low), float(high)
        if not (math.isfinite(low) and math.isfinite(high) and low < high):
            raise InvalidNetworkError(f"clip needs finite low < high, got [{low}, {high}]")
        self.low, self.high = low, high
        self._set_pieces((low, high), (0.0, 1.0, 0.0), (low, 0.0, high))

    def apply(self, x):
        return np.clip(x, self.low, self.high)

    def apply_torch(self, x):
        import torch

        return torch.clamp(x, min=self.low, max=self.high)

    def rescaled(self, factor: float) -> "Clip":
        return type(self)(**{k: float(factor * v) for k, v in self.params.items()})

    def linear_relaxation(self, l, u):
        """The clipped-ReLU relaxation of cap ``b - a`` applied to ``x - a`` (see :class:`ClippedReLU`)."""
        a = self.low
        if a == 0.0:
            return _clipped_relaxation(self.high, l, u)
        al, cl, au, cu = _clipped_relaxation(self.high - a, l - a, u - a)
        return al, cl + a - al * a, au, cu + a - au * a

    def lower_family(self, l, u, t):
        """Neurons crossing the lower kink only (``l < a < u <= b``): the line ``a + t (x - a)``,
        ``t`` in ``[0, 1]``; below ``a`` it is at most ``a = f(x)``, on ``[a, u]`` at most ``x = f(x)``.
        (Neurons crossing the top keep :meth:`linear_relaxation`'s lower line.)"""
        a = self.low
        return (l < a) & (u > a) & (u <= self.high), t, a - t * a

    def lower_family_start(self, l, u):
        a = self.low
        return (u - a >= a - l).to(l.dtype)  # as linear_relaxation (the ReLU case of _clipped_relaxation)

    def milp_rows(self, asm, name, x_all, y_all, L, U, ph):
        from ..formulation.milp import VariableGroup

        a, c = self.low, self.high
        size = x_all.size
        kink_a, kink_c = ph.crosses[0], ph.crosses[1]
        groups = {}
        z = np.full(size, -1)
        zc = np.full(size, -1)
        i0 = np.flatnonzero(kink_a)
        ic = np.flatnonzero(kink_c)
        z[i0] = asm.add_columns(np.zeros(i0.size), np.ones(i0.size), integer=True)
        zc[ic] = asm.add_columns(np.zeros(ic.size), np.ones(ic.size), integer=True)
        if i0.size:
            groups["z"] = VariableGroup(f"{name}.z", z[i0], i0)
        if ic.size:
            groups["z_cap"] = VariableGroup(f"{name}.z_cap", zc[ic], ic)

        inf = np.inf
        # Neurons that cross the top: y >= x - (U - b) zc, y >= a + (b - a) zc.
        x, y, u = x_all[ic], y_all[ic], U[ic]
        asm.add_rows(name, [(1.0, y), (-1.0, x), (u - c, zc[ic])], np.zeros(ic.size), inf)
        asm.add_rows(name, [(1.0, y), (-(c - a), zc[ic])], np.full(ic.size, a), inf)
        # ... and those among them that cannot cross the bottom also satisfy y <= x.
        only_cap = ic[~kink_a[ic]]
        asm.add_rows(name, [(1.0, y_all[only_cap]), (-1.0, x_all[only_cap])], np.full(only_cap.size, -inf), 0.0)
        # Neurons that cross the bottom: y <= x + (a - L)(1 - z), y <= a + (min(U, b) - a) z.
        x, y, l, u = x_all[i0], y_all[i0], L[i0], U[i0]
        asm.add_rows(name, [(1.0, y), (-1.0, x), (-(l - a), z[i0])], np.full(i0.size, -inf), a - l)
        asm.add_rows(name, [(1.0, y), (-(np.minimum(u, c) - a), z[i0])], np.full(i0.size, -inf), a)
        # ... and those that cannot cross the top also satisfy y >= x.
        only_zero = i0[~kink_c[i0]]
        asm.add_rows(name, [(1.0, y_all[only_zero]), (-1.0, x_all[only_zero])], np.zeros(only_zero.size), inf)
        both = i0[kink_c[i0]]
        asm.add_rows(name, [(1.0, zc[both]), (-1.0, z[both])], np.full(both.size, -inf), 0.0)  # zc <= z
        return groups

    def hull_rows(self, asm, name, x_all, y_all, L, U, ph):
        a, c = self.low, self.high

        def lower_rows(mask, slope, intercept):  # y >= slope x + intercept
            i = np.flatnonzero(mask)
            asm.add_rows(name, [(1.0, y_all[i]), (-slope[i], x_all[i])], intercept[i], np.inf)

        def upper_rows(mask, slope, intercept):  # y <= slope x + intercept
            i = np.flatnonzero(mask)
            asm.add_rows(name, [(1.0, y_all[i]), (-slope[i], x_all[i])], np.full(i.size, -np.inf), intercept[i])

        kink_a, kink_c = ph.crosses[0], ph.crosses[1]
        ones, zeros = np.ones_like(L), np.zeros_like(L)
        only_a, only_c, both = kink_a & ~kink_c, kink_c & ~kink_a, kink_a & kink_c
        with np.errstate(divide="ignore", invalid="ignore"):  # slopes are used only where L < kink < U
            # crosses a only (U <= b): y >= x; the chord (L, a)-(U, U) above; y >= a is the column bound
            lower_rows(only_a, ones, zeros)
            slope = (U - a) / (U - L)
            upper_rows(only_a, slope, a - slope * L)
            # crosses b only (L >= a): y = min(x, b); y <= b is the column bound
            upper_rows(only_c, ones, zeros)
            slope = (c - L) / (U - L)  # the chord from (L, L) to (U, b)
            lower_rows(only_c, slope, L - slope * L)
            # crosses both: chords (L, a)-(b, b) above and (a, a)-(U, b) below
            slope = (c - a) / (c - L)
            upper_rows(both, slope, a - slope * L)
            slope = (c - a) / (U - a)
            lower_rows(both, slope, a - slope * a)


@register
class ClippedReLU(Clip):
    """``min(max(x, 0), cap)`` with a finite ``cap > 0``: :class:`Clip` from 0, a kind of its own in files."""

    kind = "clipped_relu"
    LABEL = "clipped ReLU"
    PARAMS = ("cap",)

    def __init__(self, cap: float = 6.0):
        cap = float(cap)
        if not (0.0 < cap < math.inf):
            raise InvalidNetworkError(f"clipped ReLU needs a finite cap > 0, got {cap}")
        super().__init__(0.0, cap)

    @property
    def cap(self) -> float:
        return self.high


def _clipped_relaxation(c: float, l, u):
    r"""Lines ``a_l x + c_l <= min(max(x, 0), c) <= a_u x + c_u`` on ``[l, u]`` (torch, element-wise).

    ``u <= 0`` zero; ``l >= c`` the constant ``c``; ``0 <= l, u <= c`` identity; ``l < 0 < u <= c`` as
    ReLU; ``0 <= l < c < u`` (concave part) lower = chord through ``(l, l)`` and ``(u, c)``, upper = ``x``
    if ``u - c <= c - l`` else ``c``; ``l < 0``, ``u > c`` (both kinks) upper = line through ``(l, 0)``
    and ``(c, c)`` when ``u - l < 2 (c - l)`` else ``c``, lower = line through ``(0, 0)`` and ``(u, c)``
    when ``u >= -l`` else ``0`` (each choice is the one of smaller area between the line and ``f``).
    """
    import torch

    one, zero = torch.ones_like(l), torch.zeros_like(l)
    c = float(c)
    off = u <= 0
    sat = (l >= c) & ~off
    ident = (l >= 0) & (u <= c) & ~off & ~sat
    relu_part = (l < 0) & (u > 0) & (u <= c)
    concave = (l >= 0) & (l < c) & (u > c)
    both = (l < 0) & (u > c)
    # ReLU-like part: l < 0 < u <= c
    w0 = torch.where(relu_part, u - l, one)
    chord0 = torch.where(relu_part, u / w0, zero)
    # concave part: 0 <= l < c < u
    wc = torch.where(concave, u - l, one)
    chord_c = torch.where(concave, (c - l) / wc, zero)
    upper_is_x = (u - c) <= (c - l)
    # both kinks: l < 0, u > c
    wb = torch.where(both, c - l, one)
    up_slope_b = torch.where(both, c / wb, zero)
    use_up_line = (u - l) < 2.0 * (c - l)
    ub = torch.where(both, u, one)
    lo_slope_b = torch.where(both, c / ub, zero)
    use_lo_line = u >= -l

    al = torch.where(ident, one, zero)
    al = torch.where(relu_part & (u >= -l), one, al)
    al = torch.where(concave, chord_c, al)
    al = torch.where(both & use_lo_line, lo_slope_b, al)
    cl = torch.where(sat, c * one, zero)
    cl = torch.where(concave, l - chord_c * l, cl)

    au = torch.where(ident, one, zero)
    au = torch.where(relu_part, chord0, au)
    au = torch.where(concave & upper_is_x, one, au)
    au = torch.where(both & use_up_line, up_slope_b, au)
    cu = torch.where(sat, c * one, zero)
    cu = torch.where(relu_part, -chord0 * l, cu)
    cu = torch.where(concave & ~upper_is_x, c * one, cu)
    cu = torch.where(both & use_up_line, -up_slope_b * l, cu)
    cu = torch.where(both & ~use_up_line, c * one, cu)
    return al, cl, au, cu
