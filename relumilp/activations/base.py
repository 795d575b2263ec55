r"""The :class:`Activation` base class, the :class:`Phases` of neurons, and the kind registry.

An activation is a continuous piecewise-linear function given by its **piece table**: breakpoints
``b_0 < ... < b_{n-1}`` and, on piece ``p`` (``b_{p-1} <= x < b_p``; a point on a breakpoint belongs
to the piece above), the map ``slopes[p] x + offsets[p]``. Everything generic is derived here from
that table, for any number of kinks:

* evaluation in numpy and torch (subclasses override :meth:`apply` / :meth:`apply_torch` with the
  exact float operations of their formula, so forward passes stay bitwise stable);
* the exact interval image (on each piece the float64 value ``fl(fl(s x) + o)`` is monotone in ``x``,
  rounding being monotone, so its extremes over ``[l, u]`` lie at ``l``, ``u``, a breakpoint inside or
  the float just below one: evaluating there bounds the float64 forward value exactly, even where the
  offsets of a table leave a jump of a few ulps at a kink);
* the :class:`Phases` of neurons given pre-activation bounds ``L <= x <= U``: per kink, whether the
  neuron stays at or below it (``U <= b``), at or above it (``L >= b``) or can cross it (one binary);
* the affine piece of a stable neuron (pruning), the pattern index (region counting), MIP-start
  binaries, the range of ``f`` (column bounds), the rows fixing a stable neuron to its piece;
* the Lipschitz constant and the forward pass's rounding (:meth:`Activation.rounding_error`);
* an exact MILP (incremental or per-kink big-M) and the convex hull LP for any number of kinks
  (:meth:`Activation.milp_rows`, :meth:`Activation.hull_rows`; the maths is in their docstrings), and
  rescaling of any kind into a :class:`~relumilp.activations.pwl.PiecewiseLinear` with the table scaled;
* a generic sound linear relaxation (chords shifted to cover the kinks).

Kinds override hooks only where they know better: :meth:`Activation.milp_rows` (fewer or sharper
big-M rows, e.g. ReLU's two), :meth:`Activation.hull_rows`, :meth:`Activation.linear_relaxation`
(tighter symbolic relaxations) and :meth:`Activation.rescaled` (to keep their own kind).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import ClassVar

import numpy as np

from ..errors import InvalidNetworkError, UnsupportedOperatorError

_REGISTRY: dict[str, type["Activation"]] = {}
#: fields every node of the format-1 ``.npz`` files carries, whatever its kind (ignored when unused)
_LEGACY_FIELDS = ("alpha", "cap")


def register(cls: type["Activation"]) -> type["Activation"]:
    """Class decorator: make ``cls`` available under ``cls.kind`` (for :func:`get` and files)."""
    if cls.kind in _REGISTRY and _REGISTRY[cls.kind] is not cls:
        raise ValueError(f"activation kind {cls.kind!r} is already registered")
    _REGISTRY[cls.kind] = cls
    return cls


def kinds() -> tuple[str, ...]:
    """The registered kind names, in registration order."""
    return tuple(_REGISTRY)


def label(kind: str) -> str:
    """A human-readable name of kind ``kind`` (for reports); the kind itself when unknown."""
    cls = _REGISTRY.get(kind)
    return cls.LABEL if cls is not None and cls.LABEL else kind


def get(kind: str, **params) -> "Activation":
    """The activation of kind ``kind`` with its parameters ``params`` (the class's ``PARAMS``)."""
    cls = _REGISTRY.get(kind)
    if cls is None:
        raise UnsupportedOperatorError(f"activation {kind!r}", kinds())
    unknown = set(params) - set(cls.PARAMS)
    if unknown:
        raise InvalidNetworkError(f"activation {kind!r} takes no parameter {', '.join(sorted(unknown))}")
    return cls(**params)


def from_spec(spec: dict) -> "Activation":
    """The activation described by ``spec`` (``{"kind": ..., **params}``, as :meth:`Activation.to_spec`).

    Also reads the format-1 fields ``alpha`` and ``cap`` that old files (and old call sites) give for
    every kind: they are dropped where the kind has no such parameter; ``cap = None`` means infinite.
    """
    spec = dict(spec)
    kind = spec.pop("kind", "relu")
    cls = _REGISTRY.get(kind)
    for name in _LEGACY_FIELDS:
        if name in spec and (cls is None or name not in cls.PARAMS):
            del spec[name]
    if spec.get("cap", 0.0) is None:
        spec["cap"] = math.inf
    return get(kind, **spec)


@dataclass(frozen=True)
class Phases:
    """Which pieces each neuron can be on, given its pre-activation bounds (arrays of any shape ``S``).

    ``below[k]`` / ``above[k]`` (shape ``(kinks, *S)``): the neuron stays at or below / at or above
    kink ``k`` on the whole interval (a degenerate interval on the kink counts as below); otherwise it
    can cross kink ``k`` and needs one binary for it.
    """

    below: np.ndarray
    above: np.ndarray
    identity_piece: np.ndarray  # per piece: is it y = x

    @property
    def crosses(self) -> np.ndarray:
        """``(kinks, *S)``: the neuron can cross kink ``k``."""
        return ~(self.below | self.above)

    @property
    def unstable(self) -> np.ndarray:
        """Neurons that need at least one binary variable."""
        return self.crosses.any(axis=0) if self.below.shape[0] else np.zeros(self.below.shape[1:], dtype=bool)

    @property
    def stable(self) -> np.ndarray:
        return ~self.unstable

    @property
    def num_binaries(self) -> int:
        return int(self.crosses.sum())

    @property
    def piece(self) -> np.ndarray:
        """The lowest piece each neuron can be on (its only piece when stable)."""
        return self.above.sum(axis=0).astype(np.intp) if self.above.shape[0] else np.zeros(self.above.shape[1:], np.intp)

    @property
    def stable_active(self) -> np.ndarray:
        """Stable neurons on an identity piece ``y = x``."""
        return self.stable & self.identity_piece[self.piece]

    @property
    def stable_inactive(self) -> np.ndarray:
        """Stable neurons on any other piece (0, ``alpha x``, a saturation level)."""
        return self.stable & ~self.identity_piece[self.piece]


class Activation:
    """An element-wise continuous piecewise-linear activation, described by its piece table.

    Subclasses set ``kind`` (the registry key), ``PARAMS`` (constructor parameters, saved in files)
    and call :meth:`_set_pieces` in ``__init__``.
    """

    kind: ClassVar[str] = ""
    LABEL: ClassVar[str] = ""  # for reports
    PARAMS: ClassVar[tuple[str, ...]] = ()
    #: names of the binary groups, one per kink (``z = 1`` means "at or above the kink")
    BINARY_NAMES: ClassVar[tuple[str, ...] | None] = None
    #: the generic exact encoding of :meth:`milp_rows`: ``"incremental"`` (the default, faster on the
    #: benchmark of ``docs/benchmarks.md``) or ``"bigm"`` (per kink, no extra columns)
    PWL_ENCODING: ClassVar[str] = "incremental"

    breakpoints: tuple[float, ...]
    slopes: np.ndarray
    offsets: np.ndarray

    def _set_pieces(self, breakpoints, slopes, offsets) -> None:
        breakpoints = tuple(float(b) for b in breakpoints)
        slopes, offsets = tuple(float(s) for s in slopes), tuple(float(o) for o in offsets)
        if not (len(slopes) == len(offsets) == len(breakpoints) + 1):
            raise ValueError("a piece table needs one slope and one offset per piece")
        if any(not b < c for b, c in zip(breakpoints, breakpoints[1:])) or not all(map(math.isfinite, breakpoints)):
            raise ValueError("breakpoints must be finite and strictly increasing")
        for k, b in enumerate(breakpoints):  # continuity, up to the rounding of the two formulas
            left, right = slopes[k] * b + offsets[k], slopes[k + 1] * b + offsets[k + 1]
            if abs(left - right) > 1e-12 * (1.0 + abs(left)):
                raise ValueError(f"{self.kind} is discontinuous at {b}")
        self.breakpoints = breakpoints
        self.slopes, self.offsets = np.array(slopes), np.array(offsets)  # arrays: indexable by piece
        self.slopes.setflags(write=False)
        self.offsets.setflags(write=False)

    # -- identity ----------------------------------------------------------------------------------

    @property
    def params(self) -> dict:
        return {name: getattr(self, name) for name in self.PARAMS}

    def to_spec(self) -> dict:
        """``{"kind": ..., **params}``: what the ``.npz`` format stores (read back by :func:`from_spec`)."""
        return {"kind": self.kind, **self.params}

    def __eq__(self, other) -> bool:
        return isinstance(other, Activation) and self.to_spec() == other.to_spec()

    def __hash__(self) -> int:
        return hash((self.kind, tuple(self.params.items())))

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.params.items())
        return f"{type(self).__name__}({args})"

    @property
    def num_pieces(self) -> int:
        return len(self.breakpoints) + 1

    @property
    def binary_names(self) -> tuple[str, ...]:
        return self.BINARY_NAMES or tuple(f"z{k}" for k in range(len(self.breakpoints)))

    @property
    def identity_pieces(self) -> np.ndarray:
        return np.array([s == 1.0 and o == 0.0 for s, o in zip(self.slopes, self.offsets)])

    def piece_interval(self, p: int) -> tuple[float, float]:
        """``(b_{p-1}, b_p)``, with infinite ends for the outer pieces."""
        bps = (-math.inf, *self.breakpoints, math.inf)
        return bps[p], bps[p + 1]

    # -- evaluation -----------------------------------------------------------------------------

    def _evaluate(self, x, where, zeros_like):
        def piece(p):
            s, o = float(self.slopes[p]), float(self.offsets[p])
            value = x if s == 1.0 else (s * x if s != 0.0 else zeros_like(x))
            return value + o if o != 0.0 else value

        out = piece(0)
        for k, b in enumerate(self.breakpoints):
            out = where(x >= b, piece(k + 1), out)
        return out

    def apply(self, x: np.ndarray) -> np.ndarray:
        """Evaluate element-wise (numpy, float64)."""
        return self._evaluate(np.asarray(x, dtype=np.float64), np.where, np.zeros_like)

    def apply_torch(self, x):
        """Evaluate element-wise on a torch tensor (differentiable)."""
        import torch

        return self._evaluate(x, torch.where, torch.zeros_like)

    def pattern(self, pre: np.ndarray) -> np.ndarray:
        """Piece index of every pre-activation value (any shape), as uint8."""
        pre = np.asarray(pre)
        out = np.zeros(pre.shape, dtype=np.uint8)
        for b in self.breakpoints:
            out += pre >= b
        return out

    def start_binary(self, pre: np.ndarray, kink: int) -> np.ndarray:
        """The binary of kink ``kink`` at pre-activation values ``pre`` (1.0 at or above the kink)."""
        return (np.asarray(pre) >= self.breakpoints[kink]).astype(np.float64)

    # -- bounds ---------------------------------------------------------------------------------

    def interval(self, lo: np.ndarray, hi: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Exact interval image over ``[lo, hi]`` (numpy)."""
        candidates = [self.apply(lo), self.apply(hi)]
        for point in self.breakpoints:  # both ends of the two pieces meeting at the kink
            candidates.append(self.apply(np.clip(point, lo, hi)))
            candidates.append(self.apply(np.clip(np.nextafter(point, -np.inf), lo, hi)))
        stacked = np.stack(candidates)
        return stacked.min(axis=0), stacked.max(axis=0)

    def interval_torch(self, l, u):
        """Exact interval image over ``[l, u]`` (torch, differentiable)."""
        import torch

        candidates = [self.apply_torch(l), self.apply_torch(u)]
        for p in self.breakpoints:
            for point in (p, math.nextafter(p, -math.inf)):
                candidates.append(self.apply_torch(torch.clamp(torch.full_like(l, point), min=l, max=u)))
        stacked = torch.stack(candidates)
        return stacked.min(dim=0).values, stacked.max(dim=0).values

    @property
    def range(self) -> tuple[float, float]:
        """``(min f, max f)`` over the real line (infinite where ``f`` is unbounded)."""
        slopes, offsets = self.slopes.tolist(), self.offsets.tolist()
        values = [slopes[k + 1] * b + offsets[k + 1] for k, b in enumerate(self.breakpoints)]
        for s, o, side in ((slopes[0], offsets[0], -1.0), (slopes[-1], offsets[-1], 1.0)):
            values.append(o if s == 0.0 else math.copysign(math.inf, s * side))
        return min(values), max(values)

    def phases(self, lower, upper, name: str = "") -> Phases:
        """Classify neurons from their pre-activation bounds ``lower <= x <= upper`` (any shape)."""
        lower, upper = np.asarray(lower), np.asarray(upper)
        if np.any(lower > upper):
            where = f" of {name!r}" if name else ""
            raise InvalidNetworkError(f"bounds{where} are inconsistent (lower > upper)")
        shape = (len(self.breakpoints), *lower.shape)
        below, above = np.zeros(shape, dtype=bool), np.zeros(shape, dtype=bool)
        for k, b in enumerate(self.breakpoints):
            below[k] = upper <= b
            above[k] = (lower >= b) & ~below[k]
        return Phases(below, above, self.identity_pieces)

    def stable_affine(self, ph: Phases) -> tuple[np.ndarray, np.ndarray]:
        """``(slope, offset)`` of the piece of each stable neuron (0, 0 for unstable ones)."""
        piece, unstable = ph.piece, ph.unstable
        slope = np.where(unstable, 0.0, self.slopes[piece])
        offset = np.where(unstable, 0.0, self.offsets[piece])
        return slope, offset

    def snapped(self, lower: np.ndarray, upper: np.ndarray, tol: float) -> tuple[np.ndarray, np.ndarray]:
        """Bounds close enough to a kink moved onto it (lossy pruning): within ``tol / |slope change|`` of
        kink ``b``, so that the neuron's value changes by at most ``tol`` (``tol`` itself for ReLU)."""
        lower, upper = lower.copy(), upper.copy()
        for k, b in enumerate(self.breakpoints):
            change = abs(float(self.slopes[k + 1] - self.slopes[k]))
            reach = tol / change if change > 0.0 else np.inf  # no slope change: the same line on both sides
            lower[(lower < b) & (lower >= b - reach)] = b
            upper[(upper > b) & (upper <= b + reach)] = b
        return lower, np.maximum(upper, lower)

    # -- rounding and scaling -------------------------------------------------------------------

    @property
    def lipschitz(self) -> float:
        return float(np.max(np.abs(self.slopes)))

    def rounding_error(self, magnitude):
        r"""A bound on ``|forward(x) - f(x)|`` for exact inputs ``|x| <= magnitude`` (array, float64).

        On piece ``p`` the forward pass computes ``fl(fl(s x) + o)`` (:meth:`_evaluate`; kinds' own
        formulas do the same operations): the product rounds unless ``s`` is 0 or 1, the sum unless
        ``o = 0`` or ``s = 0``, so with ``u = 2^-53``::

            |error| <= u |s| m  [s not in {0, 1}]  +  u (1 + u) (|s| m + |o|)  [o != 0, s != 0].

        Where float offsets leave the table discontinuous at a kink (a jump ``J`` of a few ulps), the
        forward value may come from either side: ``max J`` is added.
        """
        unit = 2.0**-53
        m = np.asarray(magnitude, dtype=np.float64)
        error = np.zeros_like(m)
        for s, o in zip(np.abs(self.slopes).tolist(), np.abs(self.offsets).tolist()):
            piece = unit * s * m if s not in (0.0, 1.0) else np.zeros_like(m)
            if o != 0.0 and s != 0.0:
                piece = piece + unit * (1.0 + unit) * (s * m + o)
            error = np.maximum(error, piece)
        return error * (1.0 + 1e-10) + self.jump

    @property
    def jump(self) -> float:
        """Largest ``|s_k b + o_k - s_{k+1} b - o_{k+1}|`` over the kinks ``b`` (exact: ``math.fsum``)."""
        unit, jumps = 2.0**-53, [0.0]
        for k, b in enumerate(self.breakpoints):
            sl, sr = float(self.slopes[k]), float(self.slopes[k + 1])
            left, right = sl * b, sr * b
            gap = abs(math.fsum((left, float(self.offsets[k]), -right, -float(self.offsets[k + 1]))))
            for s, product in ((sl, left), (sr, right)):  # a product by 0 or +-1 is exact; others round
                gap += 0.0 if s in (0.0, 1.0, -1.0) else 2.0 * unit * abs(product)
            jumps.append(gap)
        return max(jumps)

    def forward_error(self, error, lower, upper):
        """How far the float64 output can be from the exact one, for computed inputs in ``[lower, upper]``
        within ``error`` of the exact inputs: Lipschitz propagation plus the table's own rounding
        (:meth:`rounding_error`). Used by :func:`relumilp.bounds.rounding.forward_error_step`."""
        return self.lipschitz * error + self.rounding_error(np.maximum(np.abs(lower), np.abs(upper)))

    @property
    def homogeneous(self) -> bool:
        """``f(a x) = a f(x)`` for ``a > 0``: every kink and offset at 0 (per-neuron rescaling allowed)."""
        return all(b == 0.0 for b in self.breakpoints) and all(o == 0.0 for o in self.offsets)

    def rescaled(self, factor: float) -> "Activation":
        """The activation ``g`` with ``g(a x) = a f(x)`` for ``a = factor > 0``.

        ``g`` has the kinks ``a b_k``, the same slopes and ``g(0) = a f(0)``: a
        :class:`~relumilp.activations.pwl.PiecewiseLinear` (kinds override this to keep their kind).
        Scaling uses powers of two, which make the new table exact.
        """
        if self.homogeneous or factor == 1.0:
            return self
        from .pwl import PiecewiseLinear

        factor = float(factor)
        table = PiecewiseLinear([factor * b for b in self.breakpoints], self.slopes.tolist(),
                                factor * float(self.apply(np.float64(0.0))))
        # the offsets PiecewiseLinear derives by continuity round differently from this kind's own (a
        # hard sigmoid's saturation levels 0 and 1 came out as 1e-17 and 1 - 1e-16): take the exact table
        # scaled by the power of two, so that g(a x) = a f(x) holds bitwise
        table._set_pieces(table.breakpoints, self.slopes.tolist(), [factor * float(o) for o in self.offsets])
        return table

    # -- formulations -----------------------------------------------------------------------------

    def column_bounds(self, lower: np.ndarray, upper: np.ndarray, ph: Phases) -> tuple[np.ndarray, np.ndarray]:
        """Output bounds made exact on constant pieces (so those neurons need no row) and cut at saturation."""
        lower, upper = lower.copy(), upper.copy()
        slope, offset = self.stable_affine(ph)
        flat = ph.stable & (slope == 0.0)
        lower[flat] = upper[flat] = offset[flat]
        low, high = self.range
        # cut only on a side where f saturates (a flat outer piece): elsewhere the rows already imply it
        if self.slopes[0] == 0.0 and math.isfinite(low):
            lower = np.maximum(lower, low)
        if self.slopes[-1] == 0.0 and math.isfinite(high):
            upper = np.minimum(upper, high)
        return lower, upper

    def stable_rows(self, asm, name: str, x: np.ndarray, y: np.ndarray, ph: Phases) -> None:
        """``y = s x + o`` for stable neurons on a non-constant piece (constant ones are column bounds)."""
        stable, piece = ph.stable, ph.piece
        identity = self.identity_pieces
        for p in sorted(range(self.num_pieces), key=lambda p: not identity[p]):  # identity rows first
            s, o = float(self.slopes[p]), float(self.offsets[p])
            if s == 0.0:
                continue
            i = np.flatnonzero(stable & (piece == p))
            asm.add_rows(name, [(1.0, y[i]), (-s, x[i])], np.full(i.size, o), o)

    def milp_rows(self, asm, name: str, x, y, L, U, ph: Phases) -> dict:
        r"""Exact MILP rows of the neurons that can cross a kink, for any number of kinks: the
        incremental encoding (:meth:`incremental_rows`) unless ``PWL_ENCODING == "bigm"``, then these
        per-kink big-M rows.

        ``x``, ``y`` are the column indices of the node's input and output, ``L``, ``U`` the
        pre-activation bounds; stable neurons are already handled (:meth:`stable_rows`). Returns the
        binary groups ``{binary_names[k]: VariableGroup}``.

        A neuron crossing kinks ``b_j < ... < b_m`` (those with ``L < b_k < U``) can be on pieces
        ``j .. m + 1``. It gets one binary ``z_k`` per crossable kink, ``z_k = 1`` meaning ``x >= b_k``::

            x >= L + (b_k - L) z_k,   x <= b_k + (U - b_k) z_k,   z_{k+1} <= z_k.

        Write ``z_{j-1} = 1`` and ``z_{m+1} = 0``; piece ``p`` is on when ``a_p = z_{p-1} - z_p = 1``.
        Its line ``g_p(x) = s_p x + o_p`` must hold then, and be relaxed by the exact gap otherwise::

            g_p(x) - M-_p (1 - a_p) <= y <= g_p(x) + M+_p (1 - a_p),
            M+_p = max_[L,U] (f - g_p)^+,   M-_p = max_[L,U] (g_p - f)^+,

        both maxima of a piecewise-linear difference, attained at ``L``, ``U`` or a kink inside.

        Exactness: ordered integer ``z`` is ``1 .. 1 0 .. 0``, so exactly one ``a_p`` is 1; the ``x`` rows
        put ``x`` in ``[b_{p-1}, b_p]``, where ``f = g_p = y``; every other piece's rows hold at
        ``y = f(x)`` by the choice of ``M``. Conversely a forward pass with ``z_k = [x >= b_k]``
        satisfies every row (the MIP start). A piece line that bounds ``f`` on ``[L, U]`` from one side
        (``M = 0``) is a plain row: for a convex ``f`` every ``y >= g_p(x)``. No column is added but the
        binaries, so every emitter (matrix, Pyomo, MPS) and the MIP start handle any kind.
        """
        from ..formulation.milp import VariableGroup

        if self.PWL_ENCODING == "incremental":
            return self.incremental_rows(asm, name, x, y, L, U, ph)
        crosses = ph.crosses
        unstable = np.flatnonzero(ph.unstable)
        if unstable.size == 0:
            return {}
        names = self.binary_names
        nk = len(self.breakpoints)
        z = np.full((nk, x.size), -1, dtype=np.int64)
        groups = {}
        inf = np.inf
        for k, b in enumerate(self.breakpoints):
            i = np.flatnonzero(crosses[k])
            if not i.size:
                continue
            z[k, i] = asm.add_columns(np.zeros(i.size), np.ones(i.size), integer=True)
            groups[names[k]] = VariableGroup(f"{name}.{names[k]}", z[k, i], i)
            # x >= L + (b - L) z   and   x <= b + (U - b) z
            asm.add_rows(name, [(1.0, x[i]), (-(b - L[i]), z[k, i])], L[i], inf)
            asm.add_rows(name, [(1.0, x[i]), (-(U[i] - b), z[k, i])], np.full(i.size, -inf), np.full(i.size, b))
            if k > 0:  # z_k <= z_{k-1} where both kinks are crossable
                j = np.flatnonzero(crosses[k] & crosses[k - 1])
                asm.add_rows(name, [(1.0, z[k, j]), (-1.0, z[k - 1, j])], np.full(j.size, -inf), 0.0)
        first, last = ph.piece, nk - ph.below.sum(axis=0)  # reachable pieces: first .. last
        lo, hi = L[unstable], U[unstable]
        for p in range(self.num_pieces):
            on = unstable[(first[unstable] <= p) & (p <= last[unstable])]
            if not on.size:
                continue
            s, o = float(self.slopes[p]), float(self.offsets[p])
            sel = np.isin(unstable, on)
            diff = self._gap_extremes(lo[sel], hi[sel], s, o)  # (max of f - g_p, max of g_p - f)
            m_plus, m_minus = np.maximum(diff[0], 0.0), np.maximum(diff[1], 0.0)
            has_prev, has_next = first[on] < p, p < last[on]
            prev = np.where(has_prev, z[max(p - 1, 0), on], -1)
            nxt = np.where(has_next, z[min(p, nk - 1), on], -1)
            # y - s x - M- z_prev + M- z_next >= o - M- (with z_prev = 1 moved to the right: o)
            coef_prev, coef_next = np.where(has_prev, -m_minus, 0.0), np.where(has_next, m_minus, 0.0)
            rhs = o - np.where(has_prev, m_minus, 0.0)
            asm.add_rows(name, [(1.0, y[on]), (-s, x[on]), (coef_prev, prev), (coef_next, nxt)], rhs, inf)
            # y - s x + M+ z_prev - M+ z_next <= o + M+
            coef_prev, coef_next = np.where(has_prev, m_plus, 0.0), np.where(has_next, -m_plus, 0.0)
            rhs = o + np.where(has_prev, m_plus, 0.0)
            asm.add_rows(name, [(1.0, y[on]), (-s, x[on]), (coef_prev, prev), (coef_next, nxt)], np.full(on.size, -inf), rhs)
        return groups

    def incremental_rows(self, asm, name: str, x, y, L, U, ph: Phases) -> dict:
        """The other exact encoding: the incremental (filling) band of :mod:`relumilp.formulation.pwl` with
        lower = upper = ``f`` through :meth:`hull_points` -- also one binary per crossable kink (``z_j``
        is 1 at or above kink ``j``), plus one fill column per segment; its LP relaxation is each
        neuron's convex hull (locally ideal). The default (``Activation.PWL_ENCODING``): faster than the
        per-kink big-M on the benchmark of ``docs/benchmarks.md``."""
        from ..formulation.milp import VariableGroup
        from ..formulation.pwl import add_band

        i = np.flatnonzero(ph.unstable)
        if not i.size:
            return {}
        t = [self.hull_points(float(L[j]), float(U[j]))[0] for j in i]
        values = [Activation.apply(self, row) for row in t]
        groups = add_band(asm, name, x[i], y[i], t, values, values, neurons=i)
        z = np.concatenate([g.z.ravel() for g in groups])
        neurons = np.concatenate([np.repeat(g.neurons, g.z.shape[1]) for g in groups])
        return {"z": VariableGroup(f"{name}.z", z, neurons, band=tuple(groups))}

    def _gap_extremes(self, lo: np.ndarray, hi: np.ndarray, s: float, o: float) -> np.ndarray:
        """``(max (f - g), max (g - f))`` over ``[lo, hi]`` for the line ``g = s x + o`` (shape ``(2, n)``)."""
        points = [lo, hi] + [np.clip(b, lo, hi) for b in self.breakpoints]
        gaps = np.stack([Activation.apply(self, t) - (s * t + o) for t in points])
        return np.stack([gaps.max(axis=0), (-gaps).max(axis=0)])

    def hull_points(self, lo: float, hi: float) -> tuple[np.ndarray, np.ndarray]:
        """The points ``(t, f(t))`` at ``lo``, the kinks inside ``(lo, hi)`` and ``hi``: ``f`` on ``[lo, hi]``
        is the polyline through them."""
        t = np.array([lo, *(b for b in self.breakpoints if lo < b < hi), hi])
        return t, Activation.apply(self, t)

    def hull_rows(self, asm, name: str, x, y, L, U, ph: Phases) -> None:
        r"""Rows of the convex hull of the graph of ``f`` over ``[L, U]``, for neurons that cross a kink.

        ``f`` on ``[L, U]`` is the polyline through ``P = (L, f(L)), (b_k, f(b_k)) [L < b_k < U],
        (U, f(U))``, so its graph's convex hull is the convex hull of ``P``: the set between the lower
        convex envelope of ``P`` (rows ``y >= chord``, one per edge) and the upper concave envelope
        (rows ``y <= chord``), with ``L <= x <= U`` from the column bounds. Both envelopes come from
        one monotone-chain scan over ``P``, already sorted by ``x``.
        """
        rows = {+1: ([], [], [], []), -1: ([], [], [], [])}  # side: (x cols, y cols, slopes, intercepts)
        for i in np.flatnonzero(ph.unstable):
            t, v = self.hull_points(float(L[i]), float(U[i]))
            for side in (+1, -1):  # +1: lower convex envelope, -1: upper concave envelope
                chain = _envelope(t, side * v)
                for a, b in zip(chain, chain[1:]):
                    slope = (v[b] - v[a]) / (t[b] - t[a])
                    out = rows[side]
                    out[0].append(x[i]); out[1].append(y[i]); out[2].append(slope); out[3].append(v[a] - slope * t[a])
        for side, (xs, ys, slopes, intercepts) in rows.items():
            if not xs:
                continue
            c = np.array(intercepts)
            lower, upper = (c, np.full(c.size, np.inf)) if side == 1 else (np.full(c.size, -np.inf), c)
            asm.add_rows(name, [(1.0, np.array(ys)), (-np.array(slopes), np.array(xs))], lower, upper)

    def lower_family(self, l, u, t):
        r"""Optional hook for optimised relaxations (alpha-CROWN): a family of valid lower lines.

        ``t`` in ``[0, 1]`` (torch, any shape broadcasting with ``l`` and ``u``) selects, for each neuron
        where the family applies, a line ``a_l(t) x + c_l(t) <= f(x)`` on ``[l, u]`` -- *every* ``t`` in
        ``[0, 1]`` must give a valid line, since the engine optimises ``t`` by projected gradient and
        then evaluates the bound at whatever ``t`` it found. Returns ``(mask, a_l, c_l)`` (the neurons
        where the family applies; elsewhere the engine keeps :meth:`linear_relaxation`'s lower line), or
        None when the kind has no such family (the default).
        """
        return None

    def lower_family_start(self, l, u):
        """The ``t`` of :meth:`lower_family` that reproduces :meth:`linear_relaxation`'s lower line
        (the starting point of the optimisation); only called when :meth:`lower_family` is not None."""
        raise NotImplementedError

    def linear_relaxation(self, l, u):
        r"""``(a_l, c_l, a_u, c_u)`` with ``a_l x + c_l <= f(x) <= a_u x + c_u`` on ``[l, u]`` (torch).

        Generic: the chord through ``(l, f(l))`` and ``(u, f(u))``, shifted up (upper line) and down
        (lower line) by the largest gap between ``f`` and the chord at the kinks inside ``[l, u]``.
        ``f`` is linear between kinks, so the gap is extreme at a kink or an end, where it is covered.
        Kinds override this with tighter, area-minimising choices.
        """
        import torch

        fl, fu = self.apply_torch(l), self.apply_torch(u)
        width = u - l
        wide = width > 0
        slope = torch.where(wide, (fu - fl) / torch.where(wide, width, torch.ones_like(width)), torch.zeros_like(l))
        const = fl - slope * l
        above, below = torch.zeros_like(l), torch.zeros_like(l)
        for b in self.breakpoints:
            p = torch.clamp(torch.full_like(l, b), min=l, max=u)
            gap = self.apply_torch(p) - (slope * p + const)
            above, below = torch.maximum(above, gap), torch.maximum(below, -gap)
        return slope, const - below, slope, const + above


def _envelope(t: np.ndarray, v: np.ndarray) -> list[int]:
    """Indices of the lower convex envelope of the points ``(t_i, v_i)`` (``t`` strictly increasing)."""
    chain: list[int] = []
    for i in range(t.size):
        # drop the last point while it lies on or above the segment from the one before it to point i
        while len(chain) >= 2:
            a, b = chain[-2], chain[-1]
            if (v[b] - v[a]) * (t[i] - t[a]) >= (v[i] - v[a]) * (t[b] - t[a]):
                chain.pop()
            else:
                break
        chain.append(i)
    return chain
