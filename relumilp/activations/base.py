r"""The :class:`Activation` base class, the :class:`Phases` of neurons, and the kind registry.

An activation is a continuous piecewise-linear function given by its **piece table**: breakpoints
``b_0 < ... < b_{n-1}`` and, on piece ``p`` (``b_{p-1} <= x < b_p``; a point on a breakpoint belongs
to the piece above), the map ``slopes[p] x + offsets[p]``. Everything generic is derived here from
that table, for any number of kinks:

* evaluation in numpy and torch (subclasses override :meth:`apply` / :meth:`apply_torch` with the
  exact float operations of their formula, so forward passes stay bitwise stable);
* the exact interval image (extremes of a piecewise-linear ``f`` on ``[l, u]`` lie at ``l``, ``u`` or
  a breakpoint inside, and float rounding is monotone, so evaluating ``f`` there in float64 bounds
  the float64 forward value exactly);
* the :class:`Phases` of neurons given pre-activation bounds ``L <= x <= U``: per kink, whether the
  neuron stays at or below it (``U <= b``), at or above it (``L >= b``) or can cross it (one binary);
* the affine piece of a stable neuron (pruning), the pattern index (region counting), MIP-start
  binaries, the range of ``f`` (column bounds), the rows fixing a stable neuron to its piece;
* the Lipschitz constant and whether the forward pass rounds (a slope other than 0 or 1 is a product);
* a generic sound linear relaxation (chords shifted to cover the kinks).

Kind-specific hooks are only where encodings really differ: :meth:`Activation.milp_rows` (big-M
rows), :meth:`Activation.hull_rows` (LP relaxation), :meth:`Activation.linear_relaxation` (tighter
symbolic relaxations) and :meth:`Activation.rescaled` for kinks away from 0.
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
        for point in self.breakpoints:
            candidates.append(self.apply(np.clip(point, lo, hi)))
        stacked = np.stack(candidates)
        return stacked.min(axis=0), stacked.max(axis=0)

    def interval_torch(self, l, u):
        """Exact interval image over ``[l, u]`` (torch, differentiable)."""
        import torch

        candidates = [self.apply_torch(l), self.apply_torch(u)]
        for p in self.breakpoints:
            candidates.append(self.apply_torch(torch.clamp(torch.full_like(l, p), min=l, max=u)))
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
        """Bounds within ``tol`` of a kink moved onto it (lossy pruning)."""
        lower, upper = lower.copy(), upper.copy()
        for b in self.breakpoints:
            lower[(lower < b) & (lower >= b - tol)] = b
            upper[(upper > b) & (upper <= b + tol)] = b
        return lower, np.maximum(upper, lower)

    # -- rounding and scaling -------------------------------------------------------------------

    @property
    def lipschitz(self) -> float:
        return float(np.max(np.abs(self.slopes)))

    @property
    def rounding_slope(self) -> float:
        """Largest ``|s|`` over slopes whose product ``s x`` rounds (not 0 or 1); 0 when none does."""
        return max((abs(float(s)) for s in self.slopes if s not in (0.0, 1.0)), default=0.0)

    @property
    def homogeneous(self) -> bool:
        """``f(a x) = a f(x)`` for ``a > 0``: every kink and offset at 0 (per-neuron rescaling allowed)."""
        return all(b == 0.0 for b in self.breakpoints) and all(o == 0.0 for o in self.offsets)

    def rescaled(self, factor: float) -> "Activation":
        """The activation ``g`` with ``g(a x) = a f(x)`` for ``a = factor > 0``."""
        if self.homogeneous or factor == 1.0:
            return self
        raise NotImplementedError(f"{self.kind} cannot be rescaled")  # pragma: no cover

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
        """Big-M rows (and binaries) of the neurons that can cross a kink; returns the binary groups.

        ``x``, ``y`` are the column indices of the node's input and output, ``L``, ``U`` the
        pre-activation bounds; stable neurons are already handled (:meth:`stable_rows`).
        """
        raise NotImplementedError(f"no MILP encoding for activation {self.kind!r}")

    def hull_rows(self, asm, name: str, x, y, L, U, ph: Phases) -> None:
        """Convex-hull rows of the neurons that can cross a kink (LP relaxation, no binaries)."""
        raise NotImplementedError(f"no LP relaxation for activation {self.kind!r}")

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
