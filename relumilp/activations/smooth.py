r"""Smooth activations (sigmoid, tanh, erf, softsign, SiLU, softplus, ELU, GELU, soft exponential, RePU, and the
piecewise-quadratic HardSwish), compiled through **certified piecewise-linear sandwiches**.

Design. :class:`~relumilp.activations.base.Activation` derives everything from a piece table, which a
smooth function does not have. Rather than split the base class (and disturb every piecewise-linear
kind and the code that asks them), :class:`SmoothActivation` is a subclass family that overrides the
table-derived hooks with their smooth counterparts, so the rest of relumilp keeps asking the same
object the same questions:

* no kinks (``breakpoints == ()``), and :meth:`~SmoothActivation.phases` marks every neuron as crossing
  one pseudo-kink: no neuron is ever "stable" (pruning, stable rows and the bound engine's
  ``refine="undecided"`` leave it alone) and each gets a band in the MILP;
* :meth:`~SmoothActivation.interval` / :meth:`~SmoothActivation.linear_relaxation` are sound for the
  exact function *and* its float64 evaluation (below);
* :meth:`~SmoothActivation.milp_rows` encodes ``lower(x) <= y <= upper(x)`` for the sandwich of
  :meth:`~SmoothActivation.sandwich` with the incremental encoding of :mod:`relumilp.formulation.pwl`;
  the MILP is then a *relaxation* of the network, so its bound is sound and the forward pass at its
  point gives the feasible side (see :mod:`relumilp.smooth` for the certified interval and refinement);
* :meth:`~SmoothActivation.forward_error` replaces the piece table's Lipschitz/rounding rule in
  :mod:`relumilp.bounds.rounding`.

A kind gives its float64 formula (``apply``), its first and second derivatives, a bound ``D3(a, b)`` on
``|f'''|`` over a segment that contains no split point, its curvature sign on an interval, and its
split points (where ``f''`` or ``f'`` jumps: ELU and RePU at 0, HardSwish at -3 and 3), which are always
breakpoints.

**Sandwich.** On a segment ``[a, b]`` (``h = b - a``) containing no split point, ``f''`` is Lipschitz
with constant ``D3``, so ``|f''| <= M2 = max(|f''(a)|, |f''(b)|) + D3 h / 2`` there, and the chord ``c``
through ``(a, f(a))``, ``(b, f(b))`` satisfies ``|f - c| <= M2 h^2 / 8`` (the linear interpolation error
bound). Where ``f`` is convex the chord is above ``f``, where concave below, so only one side needs
the curvature shift ``e = M2 h^2 / 8``; where the sign changes inside the segment both do. Each
breakpoint value is moved by the largest shift of its two segments (the interpolant of shifts is then at
least each segment's own shift). **Float64.** The forward pass evaluates ``f`` with numpy/scipy, which
are not correctly rounded; relumilp assumes (and ``tests/test_smooth_activations.py`` checks against
mpmath) that the computed value is within :data:`EVAL_ULPS` units of ``u = 2^-53`` times
``|f(x)| + floor`` of the exact value, with a per-kind ``floor`` (1 for every kind, plus the size of the
terms a formula cancels, e.g. soft exponential). Every sandwich value is moved by twice that (for
the breakpoint values and for the forward value) and rounded outward with ``np.nextafter``, so
``lower(x) <= fl(f(x))`` and ``f(x) <= upper(x)`` hold with no tolerance. The certified error ``eps``
of a neuron is the band's largest width ``max_j (hi_j - lo_j)``, which bounds both ``f - lower`` and
``upper - f``. :meth:`~SmoothActivation.segments_for` picks the number of segments per neuron for a
target ``eps`` from the same curvature bound.

**Interval.** Every kind here is non-decreasing, or (SiLU, GELU) decreasing then increasing with a
known minimum value, so the image of ``[l, u]`` is spanned by ``f(l)``, ``f(u)`` and that minimum;
the ends are widened by twice the evaluation error and rounded outward.

**Linear relaxation** (``a_l x + c_l <= f(x) <= a_u x + c_u`` on ``[l, u]``): where ``f`` is convex
on ``[l, u]`` the upper line is the chord (exact: ``f - a x`` is convex, maximal at an end) and the
lower line the tangent at the midpoint (exact: minimal where ``f' = a``); concave the other way round.
Otherwise each line's slope is the best (lowest, resp. highest at the midpoint) of a few candidates --
the chord, the tangent slopes at ``l``, ``u`` and the midpoint, and two averages -- with offsets
``max/min (f - a x)`` bounded on a grid of :data:`GRID` points plus the interpolation error ``M2 h^2 / 8``
of each grid segment (``f - a x`` has the same ``f''``): valid for any slope. All offsets are moved
outward by a float margin, computed in numpy float64 (the result is handed back as torch tensors: not
differentiable).
"""

from __future__ import annotations

import math
from typing import ClassVar

import numpy as np
from scipy import special

from ..errors import InvalidNetworkError, UnsupportedOperatorError
from .base import Activation, Phases, register

#: assumed accuracy of the float64 formulas, in units of u = 2^-53 of ``|f(x)| + floor`` (tested)
EVAL_ULPS = 16.0
UNIT = 2.0**-53
TINY = 5e-324
#: grid points of the mixed-curvature linear relaxation
GRID = 33
#: default sandwich tolerance of :meth:`SmoothActivation.milp_rows` (the band's largest width)
DEFAULT_TOLERANCE = 1e-3
#: most segments per neuron that :meth:`SmoothActivation.segments_for` chooses
MAX_SEGMENTS = 512


def _up(v):
    """``v`` made larger by a relative ``1e-12`` and rounded up (a bound computed in float64)."""
    return np.nextafter(np.asarray(v, dtype=np.float64) * (1.0 + 1e-12), np.inf)


class SmoothActivation(Activation):
    """A smooth element-wise activation; subclasses give the formula and its derivatives (see module)."""

    breakpoints: tuple[float, ...] = ()
    #: points where f'' (or f') jumps, increasing: always breakpoints of sandwiches and grids
    SPLITS: ClassVar[tuple[float, ...]] = ()
    #: ``(x*, lower bound of f(x*))`` of the minimum of a kind that decreases then increases
    MINIMUM: ClassVar[tuple[float, float] | None] = None
    #: global bound on |f'''| on every split-free segment (kinds with unbounded f''' override _d3)
    D3: ClassVar[float] = math.inf
    #: the largest |f'| over the real line (inf when unbounded)
    LIPSCHITZ: ClassVar[float] = math.inf
    BINARY_NAMES = ("z",)

    smooth = True

    # -- the formula ------------------------------------------------------------------------------

    def apply(self, x):
        raise NotImplementedError

    def apply_torch(self, x):
        raise NotImplementedError

    def _d1(self, x):
        raise NotImplementedError

    def _d2(self, x):
        """``f''``; at the split point the larger one-sided ``|f''|``."""
        raise NotImplementedError

    def _d3(self, a, b):
        """A bound on ``|f'''|`` over ``[a, b]`` (a split-free segment)."""
        return np.full(np.broadcast(a, b).shape, self.D3)

    def _curvature_sign(self, l, u):
        """+1 where ``f`` is convex on ``[l, u]`` (linear counts as convex), -1 concave, 0 neither."""
        raise NotImplementedError

    def _floor(self, l, u):
        """The ``floor`` of the evaluation error model over ``[l, u]`` (module docstring)."""
        return np.ones(np.broadcast(l, u).shape)

    def check_domain(self, lower, upper, name: str = "") -> None:
        """Raise unless ``[lower, upper]`` lies in the domain where the sandwich is valid (finite here)."""
        if not (np.all(np.isfinite(lower)) and np.all(np.isfinite(upper))):
            where = f" of {name!r}" if name else ""
            raise InvalidNetworkError(f"the {self.LABEL} neurons{where} need finite pre-activation bounds "
                                      "(bound the input domain)")

    # -- what the piece table gave the piecewise-linear kinds -----------------------------------------

    @property
    def num_pieces(self) -> int:
        return 1

    @property
    def identity_pieces(self) -> np.ndarray:
        return np.array([False, False])

    def phases(self, lower, upper, name: str = "") -> Phases:
        """Every neuron "crosses" one pseudo-kink: none is stable, each is encoded by a band."""
        lower, upper = np.asarray(lower), np.asarray(upper)
        if np.any(lower > upper):
            where = f" of {name!r}" if name else ""
            raise InvalidNetworkError(f"bounds{where} are inconsistent (lower > upper)")
        zeros = np.zeros((1, *lower.shape), dtype=bool)
        return Phases(zeros, zeros.copy(), self.identity_pieces)

    def pattern(self, pre):
        raise UnsupportedOperatorError(f"linear regions of {self.LABEL}", ["piecewise-linear activations"])

    def start_binary(self, pre, kink):  # pragma: no cover - bands start through formulation.pwl
        raise NotImplementedError("smooth activations start their bands through relumilp.formulation.pwl")

    def stable_affine(self, ph):
        shape = ph.below.shape[1:]
        return np.zeros(shape), np.zeros(shape)

    def snapped(self, lower, upper, tol):
        return lower.copy(), upper.copy()

    @property
    def lipschitz(self) -> float:
        return self.LIPSCHITZ

    @property
    def homogeneous(self) -> bool:
        return False

    def rescaled(self, factor: float):
        if factor == 1.0:
            return self
        raise UnsupportedOperatorError(f"rescaling {self.LABEL} neurons", ["piecewise-linear activations"])

    def column_bounds(self, lower, upper, ph):
        return lower.copy(), upper.copy()

    def stable_rows(self, asm, name, x, y, ph) -> None:
        """No neuron is stable (see :meth:`phases`)."""

    # -- bounds ---------------------------------------------------------------------------------

    def eval_error(self, l, u):
        """Bound on ``|fl(f(x)) - f(x)|`` for ``x`` in ``[l, u]`` (the evaluation error model)."""
        f = np.maximum(np.abs(self.apply(l)), np.abs(self.apply(u)))
        if self.MINIMUM is not None:
            f = np.maximum(f, abs(self.MINIMUM[1]))
        return _up(EVAL_ULPS * UNIT * (f + self._floor(l, u)) + TINY)

    def interval(self, lo, hi):
        """Sound interval image of ``[lo, hi]`` that also contains every float64 forward value."""
        lo, hi = np.asarray(lo, dtype=np.float64), np.asarray(hi, dtype=np.float64)
        # only infinite ends are replaced (their limits are handled below): clipping a finite 1e305 to 1e300
        # would take the image of the wrong point for every unbounded kind
        finite_lo = np.where(np.isinf(lo), np.copysign(1e300, lo), lo)
        finite_hi = np.where(np.isinf(hi), np.copysign(1e300, hi), hi)
        with np.errstate(all="ignore"):
            fl, fu = self.apply(finite_lo), self.apply(finite_hi)
            low, high = np.minimum(fl, fu), np.maximum(fl, fu)
            if self.MINIMUM is not None:
                inside = (lo <= self.MINIMUM[0]) & (self.MINIMUM[0] <= hi)
                low = np.where(inside, np.minimum(low, self.MINIMUM[1]), low)
            err = 2.0 * self.eval_error(finite_lo, finite_hi)
        low = np.nextafter(low - err, -np.inf)
        high = np.nextafter(high + err, np.inf)
        range_low, range_high = self.range
        high = np.where(np.isposinf(hi) & (range_high == math.inf), np.inf, high)
        low = np.where(np.isneginf(lo) & (range_low == -math.inf), -np.inf, low)
        return np.maximum(low, range_low), np.minimum(high, range_high) if range_high < math.inf else high

    def interval_torch(self, l, u):
        import torch

        lo, hi = self.interval(l.detach().cpu().double().numpy(), u.detach().cpu().double().numpy())
        as_tensor = lambda a: torch.as_tensor(a, dtype=l.dtype, device=l.device)
        return as_tensor(lo), as_tensor(hi)

    def slope_bound(self, l, u):
        """``max |f'|`` over ``[l, u]``: ``f'`` is monotone between the points where ``f''`` changes sign
        (curvature-sign boundaries and the split), so its extremes are at the ends or such points."""
        l, u = np.asarray(l, dtype=np.float64), np.asarray(u, dtype=np.float64)
        with np.errstate(all="ignore"):
            best = np.maximum(np.abs(self._d1(l)), np.abs(self._d1(u)))
            for p in self._slope_points():
                inside = (l <= p) & (p <= u)
                best = np.where(inside, np.maximum(best, np.abs(self._d1(np.full_like(l, p)))), best)
        return _up(best)

    def _slope_points(self) -> tuple[float, ...]:
        """Points where ``f'`` may have a local extremum (inflections, the split's one-sided values)."""
        return ()

    def forward_error(self, error, lower, upper):
        """``|fl(f(x~)) - f(x)|`` for a computed input ``x~`` in ``[lower, upper]`` within ``error`` of ``x``:
        the slope over the widened interval times ``error``, plus the evaluation error."""
        slope = self.slope_bound(lower - error, upper + error)
        with np.errstate(invalid="ignore"):  # an exact input (no error) has none to amplify, whatever the slope
            return np.where(error > 0, slope * error, 0.0) + self.eval_error(lower, upper)

    def _m2(self, a, b):
        """Bound on ``|f''|`` over split-free segments ``[a, b]``."""
        with np.errstate(all="ignore"):
            m2 = np.maximum(np.abs(self._d2(a)), np.abs(self._d2(b))) + self._d3(a, b) * (b - a) / 2.0
        return _up(m2)

    def _grid(self, l, u, points: int):
        """``(n, points)`` grid on ``[l, u]`` (rows) with the split points forced in when inside.

        The splits inside a row are anchors at grid indices proportional to their positions (distinct, in
        ``1 .. points - 2``); between consecutive anchors the grid is uniform. A split outside ``(l, u)``
        is an anchor at the row's end (index 0 or ``points - 1``), which makes no segment.
        """
        l, u = np.asarray(l, dtype=np.float64), np.asarray(u, dtype=np.float64)
        k = points - 1
        j = np.arange(points, dtype=np.float64)
        grid = l[..., None] + (u - l)[..., None] * (j / k)
        inside = [(l < s) & (s < u) for s in self.SPLITS]
        if k >= 2 and any(m.any() for m in inside):
            count = sum(m.astype(np.int64) for m in inside)
            width = np.where(count > 0, u - l, 1.0)
            anchors = [(np.zeros(l.shape), l)]
            before, last = np.zeros(l.shape, dtype=np.int64), np.zeros(l.shape)
            for s, m in zip(self.SPLITS, inside):
                after = count - before - m
                at = np.clip(np.rint(k * (s - l) / width), 1 + before, k - 1 - after)
                at = np.where(m, np.maximum(at, last + 1), np.where(s <= l, 0.0, float(k)))
                anchors.append((at, np.where(m, s, np.where(s <= l, l, u))))
                last, before = np.where(m, at, last), before + m
            anchors.append((np.full(l.shape, float(k)), u))
            for (ja, va), (jb, vb) in zip(anchors[:-1], anchors[1:]):
                ja, jb, va, vb = ja[..., None], jb[..., None], va[..., None], vb[..., None]
                span = (j >= ja) & (j <= jb) & (jb > ja)
                with np.errstate(all="ignore"):
                    grid = np.where(span, va + (vb - va) * ((j - ja) / np.where(jb > ja, jb - ja, 1.0)), grid)
            for (at, value), m in zip(anchors[1:-1], inside):
                grid = np.where(m[..., None] & (j == at[..., None]), value[..., None], grid)
        grid[..., 0], grid[..., -1] = l, u
        return grid

    def _splits_inside(self, l, u):
        """How many split points lie strictly inside each ``[l, u]``."""
        return sum(((l < s) & (s < u)).astype(np.int64) for s in self.SPLITS) if self.SPLITS else 0

    def segments_for(self, l, u, tolerance: float, max_segments: int = MAX_SEGMENTS) -> np.ndarray:
        """Segments per neuron so that the sandwich's width is about ``tolerance`` (chosen from the
        curvature bound on a 16-segment grid; the certified width is what :meth:`sandwich` returns)."""
        l, u = np.asarray(l, dtype=np.float64), np.asarray(u, dtype=np.float64)
        grid = self._grid(l, u, 17)
        m2 = np.max(self._m2(grid[..., :-1], grid[..., 1:]), axis=-1)
        h = np.sqrt(8.0 * tolerance / np.maximum(m2, 1e-300))  # M2 h^2 / 8 = tolerance
        k = np.ceil((u - l) / h)
        k = np.where(u - l <= 1e-9 * (1.0 + np.abs(l)), 1, k)
        k = np.clip(k, 1, max_segments).astype(np.int64)
        return np.maximum(k, 1 + self._splits_inside(l, u))

    def sandwich(self, l, u, segments):
        """The certified band of each neuron over ``[l[i], u[i]]`` with ``segments[i]`` segments.

        Returns ``(t, lo, hi, eps)``: lists of per-neuron arrays of ``k_i + 1`` breakpoints and lower and
        upper values, and the certified width ``eps`` (n,) (module docstring).
        """
        l, u = np.atleast_1d(np.asarray(l, dtype=np.float64)), np.atleast_1d(np.asarray(u, dtype=np.float64))
        self.check_domain(l, u)
        k = np.broadcast_to(np.asarray(segments, dtype=np.int64), l.shape).copy()
        inside = self._splits_inside(l, u)
        # a degenerate interval is one segment, unless a split lies inside: a kink there (f' jumps) puts f
        # up to |jump| h / 4 off the chord, far beyond the float margins of so short a segment
        degenerate = (u - l <= 1e-9 * (1.0 + np.abs(l))) & (inside == 0)
        k = np.where(degenerate, 1, np.maximum(k, 1 + inside))
        t, lo, hi = [None] * l.size, [None] * l.size, [None] * l.size
        eps = np.zeros(l.size)
        for m in np.unique(k):
            i = np.flatnonzero(k == m)
            T, LO, HI = self._band(l[i], u[i], int(m))
            eps[i] = np.nextafter(np.max(HI - LO, axis=1), np.inf)
            for row, neuron in enumerate(i):
                t[neuron], lo[neuron], hi[neuron] = T[row], LO[row], HI[row]
        return t, lo, hi, eps

    def _chord_error(self, a, b):
        """Bound on ``|f - chord|`` over split-free segments ``[a, b]`` (module docstring)."""
        return _up(self._m2(a, b) * (b - a) ** 2 / 8.0)

    def _band(self, l, u, k: int):
        T = self._grid(l, u, k + 1)
        a, b = T[:, :-1], T[:, 1:]
        with np.errstate(all="ignore"):
            fT = self.apply(T)
            e = self._chord_error(a, b)
            fa, fb = fT[:, :-1], fT[:, 1:]
            E = _up(2.0 * EVAL_ULPS * UNIT * (np.maximum(np.abs(fa), np.abs(fb)) + e + self._floor(a, b)) + 2 * TINY)
        sign = self._curvature_sign(a, b)
        need_lo = E + np.where(sign == -1, 0.0, e)  # convex or mixed: the chord may be above f
        need_hi = E + np.where(sign == 1, 0.0, e)  # concave or mixed: the chord may be below f
        pad = lambda v: np.maximum(np.pad(v, ((0, 0), (1, 0)), mode="edge"), np.pad(v, ((0, 0), (0, 1)), mode="edge"))
        LO = np.nextafter(fT - pad(need_lo), -np.inf)
        HI = np.nextafter(fT + pad(need_hi), np.inf)
        return T, LO, HI

    def linear_relaxation(self, l, u):
        import torch

        ln, un = l.detach().cpu().double().numpy(), u.detach().cpu().double().numpy()
        out = self.linear_relaxation_numpy(ln, un)
        return tuple(torch.as_tensor(v, dtype=l.dtype, device=l.device) for v in out)

    def linear_relaxation_numpy(self, l, u):
        """``(a_l, c_l, a_u, c_u)`` (module docstring), in numpy float64."""
        l, u = np.asarray(l, dtype=np.float64), np.asarray(u, dtype=np.float64)
        finite = np.isfinite(l) & np.isfinite(u)
        l0, u0 = np.where(finite, l, 0.0), np.where(finite, u, 0.0)
        with np.errstate(all="ignore"):
            fl, fu = self.apply(l0), self.apply(u0)
            width = u0 - l0
            wide = width > 0
            mid = 0.5 * (l0 + u0)
            chord = np.where(wide, (fu - fl) / np.where(wide, width, 1.0), self._d1(l0))
            tangent = self._d1(mid)
            sign = self._curvature_sign(l0, u0)
            grid = self._grid(l0, u0, GRID)
            fg = self.apply(grid)
            e = np.max(self._m2(grid[..., :-1], grid[..., 1:]) * np.diff(grid, axis=-1) ** 2 / 8.0, axis=-1)
            # mixed curvature: of a few candidate slopes, the line lowest (highest) at the midpoint
            candidates = np.stack([chord, self._d1(l0), self._d1(u0), tangent, 0.5 * (chord + self._d1(l0)),
                                   0.5 * (chord + self._d1(u0))], axis=-1)
            offsets = fg[..., None, :] - candidates[..., None] * grid[..., None, :]
            high_all = np.max(offsets, axis=-1) + e[..., None]
            low_all = np.min(offsets, axis=-1) - e[..., None]
            pick_u = np.argmin(candidates * mid[..., None] + high_all, axis=-1)[..., None]
            pick_l = np.argmax(candidates * mid[..., None] + low_all, axis=-1)[..., None]
            a_l = np.where(sign == 1, tangent, np.take_along_axis(candidates, pick_l, -1)[..., 0])
            a_u = np.where(sign == -1, tangent, np.take_along_axis(candidates, pick_u, -1)[..., 0])
            low_grid = np.take_along_axis(low_all, pick_l, -1)[..., 0]
            high_grid = np.take_along_axis(high_all, pick_u, -1)[..., 0]
            c_l = np.where(sign == 1, self.apply(mid) - a_l * mid, low_grid)
            c_u = np.where(sign == 1, np.maximum(fl - a_u * l0, fu - a_u * u0),
                           np.where(sign == -1, self.apply(mid) - a_u * mid, high_grid))
            c_l = np.where(sign == -1, np.minimum(fl - a_l * l0, fu - a_l * u0), c_l)
            size = np.max(np.abs(fg), axis=-1) + self._floor(l0, u0)
            reach = np.maximum(np.abs(l0), np.abs(u0))
            margin_l = _up(4 * EVAL_ULPS * UNIT * (size + np.abs(a_l) * reach + np.abs(c_l)) + TINY)
            margin_u = _up(4 * EVAL_ULPS * UNIT * (size + np.abs(a_u) * reach + np.abs(c_u)) + TINY)
            c_l, c_u = np.nextafter(c_l - margin_l, -np.inf), np.nextafter(c_u + margin_u, np.inf)
        low, high = self.interval(l, u)
        zero = np.zeros_like(l)
        return (np.where(finite, a_l, zero), np.where(finite, c_l, low),
                np.where(finite, a_u, zero), np.where(finite, c_u, high))

    # -- formulations -----------------------------------------------------------------------------

    def band_rows(self, asm, name: str, x, y, L, U, segments) -> dict:
        """The incremental band of every neuron (:mod:`relumilp.formulation.pwl`) with ``segments`` each."""
        from ..formulation.milp import VariableGroup
        from ..formulation.pwl import add_band

        self.check_domain(L, U, name)
        t, lo, hi, _ = self.sandwich(L, U, segments)
        groups = add_band(asm, name, x, y, t, lo, hi)
        z = np.concatenate([g.z.ravel() for g in groups])
        neurons = np.concatenate([np.repeat(g.neurons, g.z.shape[1]) for g in groups])
        return {"z": VariableGroup(f"{name}.z", z, neurons, band=tuple(groups))}

    def milp_rows(self, asm, name, x, y, L, U, ph):
        """Every neuron's sandwich band, with :data:`DEFAULT_TOLERANCE` (:mod:`relumilp.smooth` refines)."""
        return self.band_rows(asm, name, x, y, L, U, self.segments_for(L, U, DEFAULT_TOLERANCE))

    def hull_rows(self, asm, name, x, y, L, U, ph):
        """The two lines of :meth:`linear_relaxation_numpy` (a valid LP relaxation, no binaries)."""
        a_l, c_l, a_u, c_u = self.linear_relaxation_numpy(L, U)
        n = np.asarray(L).size
        asm.add_rows(name, [(1.0, y), (-a_l, x)], c_l, np.full(n, np.inf))
        asm.add_rows(name, [(1.0, y), (-a_u, x)], np.full(n, -np.inf), c_u)


def _sign_by_inflections(l, u, inflections, left_sign: int):
    """Curvature sign on ``[l, u]`` for a kind whose ``f''`` changes sign exactly at ``inflections``
    (given as enclosures ``(lo, hi)``) and has sign ``left_sign`` left of the first one."""
    l, u = np.asarray(l), np.asarray(u)
    sign = np.full(np.broadcast(l, u).shape, left_sign, dtype=np.int64)
    mixed = np.zeros(sign.shape, dtype=bool)
    for lo, hi in inflections:
        mixed |= (l < hi) & (u > lo)
        sign = np.where(l >= hi, -sign, sign)
    return np.where(mixed, 0, sign)


class _SShaped(SmoothActivation):
    """An increasing kind, convex for ``x < 0`` and concave for ``x > 0``, with values in ``(RANGE[0], 1)``:
    sigmoid, tanh, erf, softsign."""

    RANGE: ClassVar[tuple[float, float]] = (-1.0, 1.0)

    def _curvature_sign(self, l, u):
        return _sign_by_inflections(l, u, [(0.0, 0.0)], 1)

    def _slope_points(self):
        return (0.0,)

    @property
    def range(self):
        return self.RANGE


@register
class Sigmoid(_SShaped):
    """``1 / (1 + exp(-x))`` (scipy's ``expit``); convex for ``x < 0``, concave for ``x > 0``."""

    kind = "sigmoid"
    LABEL = "sigmoid"
    D3 = 0.125  # |s''' | = s(1-s)|1 - 6 s(1-s)| <= 1/8 (at x = 0)
    LIPSCHITZ = 0.25
    RANGE = (0.0, 1.0)

    def apply(self, x):
        return special.expit(np.asarray(x, dtype=np.float64))

    def apply_torch(self, x):
        import torch

        return torch.sigmoid(x)

    def _d1(self, x):
        s = special.expit(x)
        return s * (1.0 - s)

    def _d2(self, x):
        s = special.expit(x)
        return s * (1.0 - s) * (1.0 - 2.0 * s)


@register
class Tanh(_SShaped):
    """``tanh x``; convex for ``x < 0``, concave for ``x > 0``."""

    kind = "tanh"
    LABEL = "tanh"
    D3 = 2.0  # tanh''' = -2 (1 - t^2)(1 - 3 t^2), |.| <= 2
    LIPSCHITZ = 1.0

    def apply(self, x):
        return np.tanh(np.asarray(x, dtype=np.float64))

    def apply_torch(self, x):
        import torch

        return torch.tanh(x)

    def _d1(self, x):
        return 1.0 - np.tanh(x) ** 2

    def _d2(self, x):
        t = np.tanh(x)
        return -2.0 * t * (1.0 - t * t)


@register
class Erf(_SShaped):
    """``erf x = 2 / sqrt(pi) int_0^x exp(-t^2) dt`` (ONNX ``Erf``, torch ``erf``); odd, increasing, convex
    for ``x < 0`` and concave for ``x > 0``, with values in ``(-1, 1)``."""

    kind = "erf"
    LABEL = "erf"
    # the third derivative, 2 / sqrt(pi) (4 x^2 - 2) exp(-x^2): |.| <= 4 / sqrt(pi) = 2.2568 (at 0; 8 e^-1.5 / sqrt(pi) < 1.01
    # at the other extrema x^2 = 3/2)
    D3 = 4.0 / math.sqrt(math.pi) * (1 + 1e-9)
    LIPSCHITZ = 2.0 / math.sqrt(math.pi) * (1 + 1e-12)

    def apply(self, x):
        return special.erf(np.asarray(x, dtype=np.float64))

    def apply_torch(self, x):
        import torch

        return torch.erf(x)

    def _d1(self, x):
        return 2.0 / math.sqrt(math.pi) * np.exp(-np.square(x))

    def _d2(self, x):
        return -4.0 / math.sqrt(math.pi) * x * np.exp(-np.square(x))


@register
class Softsign(_SShaped):
    """``x / (1 + |x|)`` (torch ``Softsign``, ONNX ``Softsign``); odd and increasing, convex for ``x < 0``
    and concave for ``x > 0``; 0 is a split (``f''`` jumps from 2 to -2), values in ``(-1, 1)``.

    Derivatives off 0: ``f' = (1 + |x|)^-2``, ``f'' = -2 sign(x) (1 + |x|)^-3`` and a third derivative of magnitude ``6 (1 + |x|)^-4``,
    largest at the end of a split-free segment nearest to 0."""

    kind = "softsign"
    LABEL = "softsign"
    SPLITS = (0.0,)
    LIPSCHITZ = 1.0

    def _d3(self, a, b):
        a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
        nearest = np.where((a <= 0.0) & (b >= 0.0), 0.0, np.minimum(np.abs(a), np.abs(b)))
        return _up(6.0 / (1.0 + nearest) ** 4)

    def apply(self, x):
        x = np.asarray(x, dtype=np.float64)
        return x / (1.0 + np.abs(x))

    def apply_torch(self, x):
        return x / (1.0 + x.abs())

    def _d1(self, x):
        return 1.0 / np.square(1.0 + np.abs(x))

    def _d2(self, x):
        x = np.asarray(x, dtype=np.float64)
        return np.where(x < 0.0, 2.0, -2.0) / (1.0 + np.abs(x)) ** 3


@register
class Softplus(SmoothActivation):
    """``log(1 + exp(x))`` (``x + log1p(exp(-x))`` for ``x > 0``); convex."""

    kind = "softplus"
    LABEL = "softplus"
    D3 = 0.0962250448649377 * (1 + 1e-9)  # f''' = s'' , |s''| <= 1/(6 sqrt 3)
    LIPSCHITZ = 1.0

    def apply(self, x):
        x = np.asarray(x, dtype=np.float64)
        with np.errstate(over="ignore"):
            return np.where(x > 0, x + np.log1p(np.exp(-np.abs(x))), np.log1p(np.exp(np.minimum(x, 0.0))))

    def apply_torch(self, x):
        import torch

        return torch.where(x > 0, x + torch.log1p(torch.exp(-x.abs())), torch.log1p(torch.exp(x.clamp(max=0.0))))

    def _d1(self, x):
        return special.expit(x)

    def _d2(self, x):
        s = special.expit(x)
        return s * (1.0 - s)

    def _curvature_sign(self, l, u):
        return np.ones(np.broadcast(l, u).shape, dtype=np.int64)

    @property
    def range(self):
        return 0.0, math.inf


_SILU_INFLECTION = 2.3993572805154676  # x tanh(x/2) = 2


@register
class SiLU(SmoothActivation):
    """``x sigmoid(x)`` (SiLU / Swish-1); convex on ``|x| < 2.3994``, concave outside; minimum ``1 + x*``."""

    kind = "silu"
    LABEL = "SiLU"
    # f''' = 3 s'' + x s''' with |s''| <= 1/(6 sqrt 3) and |x s'''| <= |x| s' <= |x| e^-|x| <= 1/e
    D3 = 3 * 0.0962250448649377 + 1 / math.e + 1e-9
    LIPSCHITZ = 1.0999
    # x* = -1.27846454276107... solves 1 + x (1 - s(x)) = 0, where f(x*) = 1 + x*
    MINIMUM = (-1.2784645427610738, -0.27846454276107385 - 1e-12)
    _INFLECTIONS = ((-_SILU_INFLECTION - 1e-9, -_SILU_INFLECTION + 1e-9),
                    (_SILU_INFLECTION - 1e-9, _SILU_INFLECTION + 1e-9))

    def apply(self, x):
        x = np.asarray(x, dtype=np.float64)
        return x * special.expit(x)

    def apply_torch(self, x):
        import torch

        return x * torch.sigmoid(x)

    def _d1(self, x):
        s = special.expit(x)
        return s + x * s * (1.0 - s)

    def _d2(self, x):
        s = special.expit(x)
        return s * (1.0 - s) * (2.0 + x * (1.0 - 2.0 * s))

    def _curvature_sign(self, l, u):
        return _sign_by_inflections(l, u, self._INFLECTIONS, -1)

    def _slope_points(self):
        return (-_SILU_INFLECTION - 1e-9, -_SILU_INFLECTION, -_SILU_INFLECTION + 1e-9,
                _SILU_INFLECTION - 1e-9, _SILU_INFLECTION, _SILU_INFLECTION + 1e-9)

    @property
    def range(self):
        return self.MINIMUM[1], math.inf


@register
class GELU(SmoothActivation):
    """``x Phi(x)`` (exact GELU, as ``0.5 x erfc(-x / sqrt 2)``); convex on ``|x| < sqrt 2``."""

    kind = "gelu"
    LABEL = "GELU"
    # f''' = x phi(x) (x^2 - 4): |x| <= 2 gives 16/(3 sqrt 3) * phi(0) < 1.2285; |x| > 2: x^3 phi < 0.47
    D3 = 1.2285
    LIPSCHITZ = 1.1290
    # x* = -0.7517915246935..., f(x*) = -0.1699712074799... (mpmath)
    MINIMUM = (-0.7517915246935645, -0.16997120749)
    _INFLECTIONS = ((-math.sqrt(2) - 1e-12, -math.sqrt(2) + 1e-12), (math.sqrt(2) - 1e-12, math.sqrt(2) + 1e-12))

    def apply(self, x):
        x = np.asarray(x, dtype=np.float64)
        return 0.5 * x * special.erfc(-x / math.sqrt(2.0))

    def apply_torch(self, x):
        import torch

        return 0.5 * x * torch.special.erfc(-x / math.sqrt(2.0))

    def _d1(self, x):
        return 0.5 * special.erfc(-x / math.sqrt(2.0)) + x * np.exp(-0.5 * x * x) / math.sqrt(2 * math.pi)

    def _d2(self, x):
        return np.exp(-0.5 * x * x) / math.sqrt(2 * math.pi) * (2.0 - x * x)

    def _curvature_sign(self, l, u):
        return _sign_by_inflections(l, u, self._INFLECTIONS, -1)

    def _slope_points(self):
        r = math.sqrt(2.0)
        return (-r - 1e-12, -r, -r + 1e-12, r - 1e-12, r, r + 1e-12)

    @property
    def range(self):
        return self.MINIMUM[1], math.inf


@register
class HardSwish(SmoothActivation):
    """``x relu6(x + 3) / 6`` (torch ``Hardswish``, ONNX ``HardSwish``): 0 below -3, ``x`` above 3 and the
    convex quadratic ``x (x + 3) / 6`` between (minimum -3/8 at -3/2).

    Not piecewise-linear, so it is compiled as a certified sandwich like the smooth kinds: ``f'`` jumps
    at -3 (from 0 to -1/2) and at 3 (from 3/2 to 1), both concave kinks, so both are split points and
    an interval with a kink inside has mixed curvature. On split-free segments ``|f''| <= 1/3`` and the
    third derivative is 0, so a segment's chord is within ``h^2 / 24`` of ``f``.
    """

    kind = "hard_swish"
    LABEL = "HardSwish"
    SPLITS = (-3.0, 3.0)
    D3 = 0.0
    LIPSCHITZ = 1.5
    MINIMUM = (-1.5, -0.375)  # exact: -1.5 (1.5) / 6

    def apply(self, x):
        x = np.asarray(x, dtype=np.float64)
        return x * np.clip(x + 3.0, 0.0, 6.0) / 6.0  # torch's formula, operation for operation

    def apply_torch(self, x):
        return x * (x + 3.0).clamp(0.0, 6.0) / 6.0

    def _d1(self, x):
        """``f'``; at the kinks the one-sided value of the quadratic (the larger in magnitude)."""
        x = np.asarray(x, dtype=np.float64)
        return np.where(x < -3.0, 0.0, np.where(x > 3.0, 1.0, (2.0 * x + 3.0) / 6.0))

    def _d2(self, x):
        x = np.asarray(x, dtype=np.float64)
        return np.where(np.abs(x) <= 3.0, 1.0 / 3.0, 0.0)

    def _curvature_sign(self, l, u):
        """Convex (or linear) unless a kink lies strictly inside ``[l, u]``."""
        l, u = np.asarray(l), np.asarray(u)
        kink = ((l < -3.0) & (-3.0 < u)) | ((l < 3.0) & (3.0 < u))
        return np.where(kink, 0, 1).astype(np.int64)

    def _slope_points(self):
        return (-3.0, 3.0)

    @property
    def range(self):
        return self.MINIMUM[1], math.inf


@register
class ELU(SmoothActivation):
    """``x`` for ``x > 0``, ``alpha (exp(x) - 1)`` otherwise, ``0 < alpha <= 1`` (convex; 0 is a split)."""

    kind = "elu"
    LABEL = "ELU"
    PARAMS = ("alpha",)
    SPLITS = (0.0,)

    def __init__(self, alpha: float = 1.0):
        alpha = float(alpha)
        if not (0.0 < alpha <= 1.0):
            raise UnsupportedOperatorError(f"ELU alpha {alpha}", ["0 < alpha <= 1 (a convex ELU)"])
        self.alpha = alpha

    def _d3(self, a, b):  # f''' = alpha e^x on x < 0 (increasing), 0 on x > 0
        return np.where(np.asarray(a) >= 0.0, 0.0, self.alpha * np.exp(np.minimum(np.asarray(b), 0.0)))

    @property
    def LIPSCHITZ(self):  # noqa: N802
        return 1.0

    def apply(self, x):
        x = np.asarray(x, dtype=np.float64)
        return np.where(x > 0, x, self.alpha * np.expm1(np.minimum(x, 0.0)))

    def apply_torch(self, x):
        import torch

        return torch.where(x > 0, x, self.alpha * torch.expm1(x.clamp(max=0.0)))

    def _d1(self, x):
        return np.where(x > 0, 1.0, self.alpha * np.exp(np.minimum(x, 0.0)))

    def _d2(self, x):
        return np.where(x > 0, 0.0, self.alpha * np.exp(np.minimum(x, 0.0)))

    def _curvature_sign(self, l, u):
        return np.ones(np.broadcast(l, u).shape, dtype=np.int64)

    def _slope_points(self):
        return (0.0, 1e-300)

    @property
    def range(self):
        return -self.alpha, math.inf


@register
class SoftExponential(SmoothActivation):
    """Soft exponential with a fixed ``alpha`` (Godfrey & Gashler 2016), as in :mod:`relumilp.train`:
    ``-ln(1 - alpha (x + alpha)) / alpha`` (alpha < 0, concave), ``x`` (alpha = 0),
    ``expm1(alpha x) / alpha + alpha`` (alpha > 0, convex). For alpha < 0 the bounds must stay inside the
    log's domain: ``1 - alpha (x + alpha) > 1e-12``."""

    kind = "soft_exponential"
    LABEL = "SoftExponential"
    PARAMS = ("alpha",)
    MIN_ARG = 1e-12

    def __init__(self, alpha: float = 0.0):
        alpha = float(alpha)
        if not math.isfinite(alpha):
            raise UnsupportedOperatorError(f"SoftExponential alpha {alpha}", ["finite alpha"])
        self.alpha = alpha

    @property
    def LIPSCHITZ(self):  # noqa: N802
        return 1.0 if self.alpha == 0.0 else math.inf

    def _w(self, x):
        return 1.0 - self.alpha * (x + self.alpha)

    def apply(self, x):
        x = np.asarray(x, dtype=np.float64)
        a = self.alpha
        if a == 0.0:
            return x.copy()
        if a > 0.0:
            with np.errstate(over="ignore"):
                return np.expm1(a * x) / a + a
        v = -a * (x + a)
        past = v <= self.MIN_ARG - 1.0  # the train module's clamp (a constant past the domain edge)
        return np.where(past, -math.log(self.MIN_ARG) / a, -np.log1p(np.where(past, 0.0, v)) / a)

    def apply_torch(self, x):
        import torch

        a = self.alpha
        if a == 0.0:
            return x.clone()
        if a > 0.0:
            return torch.expm1(a * x) / a + a
        v = -a * (x + a)
        past = v <= self.MIN_ARG - 1.0
        return torch.where(past, torch.full_like(x, -math.log(self.MIN_ARG) / a),
                           -torch.log1p(torch.where(past, torch.zeros_like(v), v)) / a)

    def check_domain(self, lower, upper, name: str = "") -> None:
        super().check_domain(lower, upper, name)
        self._check_edge(lower, name)

    def _check_edge(self, lower, name: str = "") -> None:
        """Refuse bounds that reach the log's domain edge (alpha < 0): there the forward pass is the
        train module's clamp, a constant, and the error model and curvature of the formula no longer hold
        (they gave bounds 1e-13 inside the value; found by sampling). Called wherever bounds first meet
        the kind, as :meth:`_Elementary.check_values` is."""
        if self.alpha < 0.0:
            with np.errstate(invalid="ignore"):
                reached = ~(self._w(np.asarray(lower, dtype=np.float64)) > self.MIN_ARG)  # NaN reaches it too
            if np.any(reached):
                edge = 1.0 / self.alpha - self.alpha
                where = f" of {name!r}" if name else ""
                raise InvalidNetworkError(
                    f"SoftExponential(alpha={self.alpha}) neurons{where}: their input's bounds reach the domain "
                    f"edge x = {edge:.6g} (bound the input domain more tightly, or use a tighter bound method)")

    def interval(self, lo, hi):
        self._check_edge(lo)
        return super().interval(lo, hi)

    def linear_relaxation_numpy(self, l, u):
        self._check_edge(l)
        return super().linear_relaxation_numpy(l, u)

    def _d1(self, x):
        a = self.alpha
        if a == 0.0:
            return np.ones_like(x)
        if a > 0.0:
            return np.exp(a * x)
        return 1.0 / self._w(x)

    def _d2(self, x):
        a = self.alpha
        if a == 0.0:
            return np.zeros_like(x)
        if a > 0.0:
            return a * np.exp(a * x)
        return a / self._w(x) ** 2

    def _d3(self, a, b):
        al = self.alpha
        if al == 0.0:
            return np.zeros(np.broadcast(a, b).shape)
        if al > 0.0:  # alpha^2 e^{alpha x}, increasing
            return al * al * np.exp(al * np.asarray(b))
        return 2.0 * al * al / self._w(np.asarray(a)) ** 3  # decreasing in x

    def _curvature_sign(self, l, u):
        return np.full(np.broadcast(l, u).shape, -1 if self.alpha < 0.0 else 1, dtype=np.int64)

    def _floor(self, l, u):
        a = self.alpha
        if a > 0.0:  # expm1(a x)/a + a cancels terms of size |expm1(a x)/a| + a
            with np.errstate(over="ignore"):
                terms = np.maximum(np.abs(np.expm1(a * np.asarray(l))), np.abs(np.expm1(a * np.asarray(u)))) / a
            return 1.0 + terms + 2.0 * a
        if a < 0.0:  # v = -a (x + a) rounds twice; log1p amplifies by |v| / (1 + v)
            w = np.minimum(self._w(np.asarray(l)), self._w(np.asarray(u)))
            v = np.maximum(np.abs(1.0 - self._w(np.asarray(l))), np.abs(1.0 - self._w(np.asarray(u))))
            return 1.0 + 2.0 * v / (w * abs(a))
        return np.ones(np.broadcast(l, u).shape)

    @property
    def range(self):
        if self.alpha > 0.0:
            return self.alpha - 1.0 / self.alpha, math.inf
        return -math.inf, math.inf


@register
class RePU(SmoothActivation):
    """``max(0, x)^p`` for an integer ``p >= 2`` (convex; 0 is a split)."""

    kind = "repu"
    LABEL = "RePU"
    PARAMS = ("p",)
    SPLITS = (0.0,)

    def __init__(self, p: int = 2):
        if isinstance(p, bool) or int(p) != p or int(p) < 2:
            raise UnsupportedOperatorError(f"RePU power {p}", ["integers p >= 2"])
        self.p = int(p)

    def apply(self, x):
        return np.maximum(np.asarray(x, dtype=np.float64), 0.0) ** self.p

    def apply_torch(self, x):
        import torch

        return torch.relu(x).pow(self.p)

    def _d1(self, x):
        return self.p * np.maximum(x, 0.0) ** (self.p - 1)

    def _d2(self, x):
        """At 0 the right-hand value (``2`` for p = 2): the larger one-sided ``|f''|``."""
        x = np.asarray(x, dtype=np.float64)
        return np.where(x >= 0.0, self.p * (self.p - 1) * np.maximum(x, 0.0) ** (self.p - 2), 0.0)

    def _d3(self, a, b):
        p = self.p
        if p == 2:
            return np.zeros(np.broadcast(a, b).shape)
        b = np.asarray(b, dtype=np.float64)
        return np.where(b > 0.0, p * (p - 1) * (p - 2) * np.maximum(b, 0.0) ** (p - 3), 0.0)

    def _curvature_sign(self, l, u):
        return np.ones(np.broadcast(l, u).shape, dtype=np.int64)

    @property
    def range(self):
        return 0.0, math.inf


# -- the elementary functions that products, quotients, softmax and normalisation are compiled into ------
#
# A frontend spells ``a * b`` of two network values as ``((a + b)^2 - (a - b)^2) / 4``, ``a / b`` as
# ``a * (1 / b)``, softmax as ``1 / (1 + sum_j exp(z_j - z_i))`` and a layer normalisation through
# ``sqrt`` and ``1 / x`` (:mod:`relumilp.frontends._builder`): every nonlinearity stays a function of one
# neuron, so the bound engine, the MILP bands and the certified intervals need nothing new.


class _Elementary(SmoothActivation):
    """A smooth kind whose formula is defined (or finite in float64) on part of the real line only:
    :meth:`check_values` refuses bounds outside it in one line, wherever bounds first meet the kind (its
    interval image, linear relaxation and sandwich)."""

    #: the bounds must satisfy ``lower > LOWEST`` (strict) ...
    LOWEST: ClassVar[float] = -math.inf
    #: ... and ``upper <= HIGHEST``
    HIGHEST: ClassVar[float] = math.inf
    #: what the user should hear when the lower bound reaches LOWEST
    NEEDS: ClassVar[str] = ""
    #: +1 convex, -1 concave on the whole domain (f'' keeps its sign)
    CURVATURE: ClassVar[int] = 1
    #: the range of values
    RANGE: ClassVar[tuple[float, float]] = (0.0, math.inf)

    def _curvature_sign(self, l, u):
        return np.full(np.broadcast(l, u).shape, self.CURVATURE, dtype=np.int64)

    @property
    def range(self):
        return self.RANGE

    def check_values(self, lower, upper, name: str = "") -> None:
        lower, upper = np.asarray(lower, dtype=np.float64), np.asarray(upper, dtype=np.float64)
        where = f" of {name!r}" if name else ""
        if self.LOWEST > -math.inf and lower.size and not np.all(lower > self.LOWEST):
            raise InvalidNetworkError(
                f"the {self.LABEL} neurons{where} need {self.NEEDS}, but their input's bounds reach "
                f"{float(np.min(lower)):.6g} over the input domain (if the input cannot get there, its bounds "
                "are too loose to show it: bound the input domain more tightly, or use a tighter bound method)")
        reach = self._reach(lower, upper)
        if self.HIGHEST < math.inf and reach.size and not np.all(reach <= self.HIGHEST):
            raise InvalidNetworkError(
                f"the {self.LABEL} neurons{where} overflow float64: their input's bounds reach "
                f"{float(np.max(reach)):.6g} (at most {self.HIGHEST:g}; bound the input domain more tightly)")
        with np.errstate(all="ignore"):
            ends = np.concatenate([lower.ravel(), upper.ravel()])
            finite = np.isfinite(self.apply(ends)) & np.isfinite(self._d1(ends)) & np.isfinite(self._d2(ends))
        if not finite.all():  # e.g. 1 / x at 1e-200: its certificate's curvature terms overflow float64
            worst = float(ends[~finite][0])
            raise InvalidNetworkError(
                f"the {self.LABEL} neurons{where} cannot be bounded in float64: their input's bounds reach "
                f"{worst:.6g}, where {self.LABEL} or its derivatives overflow (bound the input domain more tightly)")

    def _reach(self, lower, upper):
        """What :data:`HIGHEST` limits: the upper bound (the magnitude for kinds that grow both ways)."""
        return upper

    def check_domain(self, lower, upper, name: str = "") -> None:
        super().check_domain(lower, upper, name)
        self.check_values(lower, upper, name)

    def interval(self, lo, hi):
        self.check_values(lo, hi)
        return super().interval(lo, hi)

    def linear_relaxation_numpy(self, l, u):
        self.check_values(l, u)
        return super().linear_relaxation_numpy(l, u)

    def _m2(self, a, b):
        """``f''`` is monotone on every segment of these kinds (``f'''`` keeps its sign), so its largest
        magnitude is at an end."""
        with np.errstate(all="ignore"):
            return _up(np.maximum(np.abs(self._d2(a)), np.abs(self._d2(b))))

    def _chord_error(self, a, b):
        """Also ``|f - chord| <= |f'(b) - f'(a)| h / 4`` where ``f`` is convex or concave on the segment
        (``f - chord`` lies under both tangent lines at the ends; they meet at most that high), which is far
        smaller where ``f''`` changes by orders of magnitude within a segment."""
        with np.errstate(all="ignore"):
            turn = _up(np.abs(self._d1(b) - self._d1(a)) * (b - a) / 4.0)
        turn = np.where(self._curvature_sign(a, b) != 0, turn, np.inf)  # valid on one-curvature segments only
        return np.minimum(super()._chord_error(a, b), turn)

    # Their curvature varies by orders of magnitude over typical bounds (``1 / x`` on ``[1, 1e5]`` after a
    # softmax's sum), so a uniform grid wastes its segments. A grid uniform in ``g``, with ``g' ~ sqrt|f''|``,
    # spreads the interpolation error ``|f''| h^2 / 8`` evenly. Any increasing breakpoints make a valid
    # band (the certificate is per segment), so ``g`` only has to be monotone, not exact.

    def _spacing(self, x):
        """``g(x)``, increasing, with ``g' ~ sqrt|f''|`` (identity: a uniform grid)."""
        return x

    def _spacing_inverse(self, v):
        return v

    def _grid(self, l, u, points: int):
        l, u = np.asarray(l, dtype=np.float64), np.asarray(u, dtype=np.float64)
        with np.errstate(all="ignore"):
            gl, gu = self._spacing(l), self._spacing(u)
            j = np.arange(points, dtype=np.float64) / max(points - 1, 1)
            grid = self._spacing_inverse(gl[..., None] + (gu - gl)[..., None] * j)
        grid = np.clip(np.maximum.accumulate(np.nan_to_num(grid, nan=-np.inf), axis=-1), l[..., None], u[..., None])
        grid[..., 0], grid[..., -1] = l, u
        # a grid that rounding left not strictly increasing (a hair-thin interval) falls back to the uniform one
        flat = (np.diff(grid, axis=-1) <= 0).any(axis=-1) & (u > l)
        if flat.any():
            grid[flat] = super()._grid(l[flat], u[flat], points)
        return grid

    def segments_for(self, l, u, tolerance: float, max_segments: int = MAX_SEGMENTS) -> np.ndarray:
        """Segments per neuron for a band of width about ``tolerance``: the worst segment of a 16-segment grid
        would need ``q = sqrt(worst / tolerance)`` pieces (the error falls as ``q^2``), so ``16 q`` in all."""
        l, u = np.asarray(l, dtype=np.float64), np.asarray(u, dtype=np.float64)
        grid = self._grid(l, u, 17)
        worst = np.max(self._chord_error(grid[..., :-1], grid[..., 1:]), axis=-1)
        k = np.ceil(16.0 * np.sqrt(np.maximum(worst, 0.0) / tolerance))  # q = sqrt(worst / tol) per segment
        k = np.where(u - l <= 1e-9 * (1.0 + np.abs(l)), 1, np.maximum(k, 1))
        return np.clip(np.nan_to_num(k, nan=max_segments), 1, max_segments).astype(np.int64)


@register
class Square(_Elementary):
    """``x^2`` (convex; minimum 0 at 0); also what a product ``a b = ((a + b)^2 - (a - b)^2) / 4`` of two
    network values is compiled into. ``x * x`` is correctly rounded."""

    kind = "square"
    LABEL = "square"
    MINIMUM = (0.0, 0.0)
    HIGHEST = 1e150  # its square, 1e300, is still finite

    def _reach(self, lower, upper):
        return np.maximum(np.abs(lower), np.abs(upper))

    def apply(self, x):
        x = np.asarray(x, dtype=np.float64)
        return x * x

    def apply_torch(self, x):
        return x * x

    def _d1(self, x):
        return 2.0 * np.asarray(x, dtype=np.float64)

    def _d2(self, x):
        return np.full(np.shape(x), 2.0)


@register
class Exp(_Elementary):
    """``exp x`` (convex, increasing); refused beyond ``x = 700`` (float64 overflows at 709.8)."""

    kind = "exp"
    LABEL = "exp"
    HIGHEST = 700.0

    def apply(self, x):
        with np.errstate(over="ignore"):
            return np.exp(np.asarray(x, dtype=np.float64))

    def apply_torch(self, x):
        import torch

        return torch.exp(x)

    def _d1(self, x):
        return self.apply(x)

    def _d2(self, x):
        return self.apply(x)

    def _spacing(self, x):  # sqrt(e^x) = e^(x/2)
        return np.exp(x / 2.0)

    def _spacing_inverse(self, v):
        return 2.0 * np.log(v)


class _PositiveDomain(_Elementary):
    """A kind defined for ``x > 0`` only (its derivatives blow up at 0): bounds must stay positive."""

    LOWEST = 0.0
    NEEDS = "positive inputs"

    def _at(self, x):
        """``x`` kept inside the domain, so that probing the formula never warns (bounds were checked)."""
        return np.maximum(np.asarray(x, dtype=np.float64), 5e-324)


@register
class Log(_PositiveDomain):
    """``ln x`` for ``x > 0`` (concave, increasing); ``|f'''| = 2 / x^3`` is largest at the left end."""

    CURVATURE = -1
    RANGE = (-math.inf, math.inf)
    kind = "log"
    LABEL = "log"

    def apply(self, x):
        with np.errstate(divide="ignore", invalid="ignore"):
            return np.log(np.asarray(x, dtype=np.float64))

    def apply_torch(self, x):
        import torch

        return torch.log(x)

    def _d1(self, x):
        return 1.0 / self._at(x)

    def _d2(self, x):
        return -1.0 / self._at(x) ** 2

    def _spacing(self, x):  # sqrt(1 / x^2) = 1 / x
        return np.log(x)

    def _spacing_inverse(self, v):
        return np.exp(v)


@register
class Sqrt(_PositiveDomain):
    """``sqrt x`` for ``x > 0`` (concave, increasing; correctly rounded); ``|f'''| = 3 / (8 x^(5/2))``.
    At ``x = 0`` its slope is infinite, so no sandwich exists there: bounds must stay positive (a layer
    normalisation's ``var + eps`` does)."""

    CURVATURE = -1
    kind = "sqrt"
    LABEL = "sqrt"

    def apply(self, x):
        with np.errstate(invalid="ignore"):
            return np.sqrt(np.asarray(x, dtype=np.float64))

    def apply_torch(self, x):
        import torch

        return torch.sqrt(x)

    def _d1(self, x):
        return 0.5 / np.sqrt(self._at(x))

    def _d2(self, x):
        return -0.25 / self._at(x) ** 1.5

    def _spacing(self, x):  # sqrt(x^(-3/2)) = x^(-3/4), integrated: x^(1/4)
        return np.sqrt(np.sqrt(x))

    def _spacing_inverse(self, v):
        return v**4


@register
class Reciprocal(_PositiveDomain):
    """``1 / x`` for ``x > 0`` (convex, decreasing; correctly rounded); ``|f'''| = 6 / x^4``. A quotient
    ``a / b`` of network values is ``a * (1 / b)``: its divisor's bounds must be positive (a negative
    divisor ``b`` is ``-(a / -b)`` in the source)."""

    kind = "reciprocal"
    LABEL = "reciprocal"
    NEEDS = "positive inputs (a divisor that cannot reach 0 or below)"

    def apply(self, x):
        with np.errstate(divide="ignore"):
            return 1.0 / np.asarray(x, dtype=np.float64)

    def apply_torch(self, x):
        return 1.0 / x

    def _d1(self, x):
        return -1.0 / self._at(x) ** 2

    def _d2(self, x):
        return 2.0 / self._at(x) ** 3

    def _spacing(self, x):  # sqrt(x^-3) = x^(-3/2), integrated: -x^(-1/2)
        return -1.0 / np.sqrt(x)

    def _spacing_inverse(self, v):
        return 1.0 / (v * v)


@register
class Power(_PositiveDomain):
    """``x^p`` for ``x > 0`` and a real ``p`` other than 0 and 1 (what ``Pow`` with a non-integer exponent,
    ``1 / sqrt`` and a local response normalisation's ``(k + a sum x^2)^-beta`` are compiled into; integer
    exponents up to 64 are products of squares; ``1/2`` and ``-1`` have kinds of their own). ``f''' = p (p-1) (p-2)
    x^(p-3)`` keeps its sign on ``x > 0``, so ``|f''|`` is largest at a segment's end; convex where
    ``p (p - 1) > 0``, concave otherwise."""

    kind = "power"
    LABEL = "power"
    PARAMS = ("p",)

    def __init__(self, p: float = 2.0):
        p = float(p)
        if not math.isfinite(p) or p in (0.0, 1.0):
            raise UnsupportedOperatorError(f"power exponent {p:g}", ["finite exponents other than 0 and 1"])
        self.p = p

    def apply(self, x):
        with np.errstate(all="ignore"):
            return np.power(np.asarray(x, dtype=np.float64), self.p)

    def apply_torch(self, x):
        return x.pow(self.p)

    def _d1(self, x):
        return self.p * self._at(x) ** (self.p - 1.0)

    def _d2(self, x):
        return self.p * (self.p - 1.0) * self._at(x) ** (self.p - 2.0)

    def _curvature_sign(self, l, u):
        return np.full(np.broadcast(l, u).shape, 1 if self.p * (self.p - 1.0) > 0 else -1, dtype=np.int64)

    def _spacing(self, x):  # sqrt|f''| ~ x^((p - 2) / 2), integrated: x^(p / 2), increasing with the sign of p
        return math.copysign(1.0, self.p) * np.power(x, self.p / 2.0)

    def _spacing_inverse(self, v):
        return np.power(math.copysign(1.0, self.p) * v, 2.0 / self.p)

