r"""Piecewise-linear kinds beyond the ReLU family: a user-defined table, hard sigmoid and ``|x|``.

All of them use the generic encodings of :class:`~relumilp.activations.base.Activation` (exact big-M
with one binary per crossable kink, convex-hull LP); their maths is in ``base.py``. Kinds that already
exist under another name are aliases, not copies: ``hardtanh(a, b)`` is :class:`~.clip.Clip` and
ReLU6 is :class:`~.clip.ClippedReLU` with cap 6.

**PiecewiseLinear** ``(breakpoints b_0 < ... < b_{n-1}, slopes s_0 .. s_n, offset = f(0))``::

    f(x) = f(0) + integral_0^x s(t) dt,    s(t) = s_p on piece p  (b_{p-1} <= t < b_p),

so the intercept of the piece holding 0 is ``f(0)`` and the others follow by continuity,
``o_{p+1} = o_p + (s_p - s_{p+1}) b_p`` (upwards) and ``o_p = o_{p+1} + (s_{p+1} - s_p) b_p``
(downwards). Consecutive slopes must differ (otherwise ``b_p`` is no kink). ``max(x, c)`` is
``((c,), (0, 1), max(0, c))``, ``min(x, c)`` is ``((c,), (1, 0), min(0, c))``, PReLU with ``alpha > 1``
(concave) is ``((0,), (alpha, 1), 0)``.

**HardSigmoid** ``(alpha != 0, beta)``: ``max(0, min(1, alpha x + beta))`` (ONNX ``HardSigmoid``; torch's
``Hardsigmoid`` is ``alpha = 1/6, beta = 1/2``). Pieces ``0 | alpha x + beta | 1`` for ``alpha > 0``
(``1 | alpha x + beta | 0`` for ``alpha < 0``), with kinks near ``-beta / alpha`` and
``(1 - beta) / alpha``. The kinks are the floats where ``fl(alpha x + beta)`` reaches 0 and 1, so the
piece table evaluates bitwise like the clip formula. Symbolic relaxation: the clipped-ReLU one of cap 1
in ``t = alpha x + beta``, mapped back (``a t + c = a alpha x + a beta + c``), much tighter than the
generic shifted chords on this S-shaped function.

**Abs**: ``|x|``, pieces ``-x | x``; convex, so its generic relaxation (the chord above, the parallel
line through ``(0, 0)`` below) is already a tight one; homogeneous, so per-neuron rescaling applies.
"""

from __future__ import annotations

import math

import numpy as np

from ..errors import InvalidNetworkError
from .base import Activation, register
from .clip import Clip, ClippedReLU, _clipped_relaxation
from .identity import Identity
from .relu import LeakyReLU, ReLU

#: ``hardtanh(a, b)`` is ``min(max(x, a), b)``: the clip kind (aliases, so there is one class per function)
Hardtanh = Clip


def ReLU6() -> ClippedReLU:
    """ReLU6 = ``min(max(x, 0), 6)``: the clipped ReLU of cap 6."""
    return ClippedReLU(6.0)


def _floats(values, what: str) -> tuple[float, ...]:
    try:
        out = tuple(float(v) for v in np.asarray(values, dtype=np.float64).reshape(-1))
    except (TypeError, ValueError):
        raise InvalidNetworkError(f"piecewise-linear {what} must be numbers, got {values!r}") from None
    if not all(map(math.isfinite, out)):
        raise InvalidNetworkError(f"piecewise-linear {what} must be finite, got {list(out)}")
    return out


@register
class PiecewiseLinear(Activation):
    """A continuous piecewise-linear function from its kinks, its slopes and its value at 0 (see module)."""

    kind = "pwl"
    LABEL = "piecewise-linear"
    PARAMS = ("breakpoints", "slopes", "offset")

    def __init__(self, breakpoints=(0.0,), slopes=(0.0, 1.0), offset: float = 0.0):
        b, s = _floats(breakpoints, "breakpoints"), _floats(slopes, "slopes")
        (offset,) = _floats([offset], "offset")
        if len(s) != len(b) + 1:
            raise InvalidNetworkError(f"piecewise-linear needs one slope more than breakpoints, got {len(b)} breakpoints and {len(s)} slopes")
        if any(not x < y for x, y in zip(b, b[1:])):
            raise InvalidNetworkError(f"piecewise-linear breakpoints must be strictly increasing, got {list(b)}")
        if any(x == y for x, y in zip(s, s[1:])):
            raise InvalidNetworkError(f"piecewise-linear slopes must change at every breakpoint, got {list(s)}")
        self.breakpoints, self.slopes, self.offset = b, s, offset
        offsets = [0.0] * len(s)
        home = sum(1 for x in b if x <= 0.0)  # the piece holding 0
        offsets[home] = offset
        for p in range(home, len(b)):
            offsets[p + 1] = offsets[p] + (s[p] - s[p + 1]) * b[p]
        for p in range(home - 1, -1, -1):
            offsets[p] = offsets[p + 1] + (s[p + 1] - s[p]) * b[p]
        self._set_pieces(b, s, offsets)

    @property
    def params(self) -> dict:
        # tuples (hashable, and equal after a round trip through a file's JSON lists)
        return {"breakpoints": tuple(self.breakpoints), "slopes": tuple(self.slopes.tolist()), "offset": self.offset}

    def rescaled(self, factor: float) -> "PiecewiseLinear":
        if self.homogeneous or factor == 1.0:
            return self
        factor = float(factor)
        return PiecewiseLinear([factor * b for b in self.breakpoints], self.slopes.tolist(), factor * self.offset)

    @classmethod
    def maximum(cls, c: float) -> "PiecewiseLinear":
        """``max(x, c)``, a ReLU shifted to ``(c, c)``."""
        c = float(c)
        return cls((c,), (0.0, 1.0), max(0.0, c))

    @classmethod
    def minimum(cls, c: float) -> "PiecewiseLinear":
        """``min(x, c)``."""
        c = float(c)
        return cls((c,), (1.0, 0.0), min(0.0, c))


def prelu(alpha: float) -> Activation:
    """The kind computing PReLU ``x if x >= 0 else alpha x`` for one slope ``alpha``: ReLU, LeakyReLU
    (``alpha < 1``), the identity (``alpha = 1``) or, concave for ``alpha > 1``, a :class:`PiecewiseLinear`."""
    alpha = float(alpha)
    if not math.isfinite(alpha):
        raise InvalidNetworkError(f"PReLU slope must be finite, got {alpha}")
    if alpha == 0.0:
        return ReLU()
    if alpha < 1.0:
        return LeakyReLU(alpha)
    if alpha == 1.0:
        return Identity()
    return PiecewiseLinear((0.0,), (alpha, 1.0), 0.0)


def _first_float(holds, guess: float) -> float:
    """The smallest float ``x`` with ``holds(x)``, for a predicate false below and true above a point near
    ``guess`` (``-inf``/``inf`` when it holds for every finite float / for none): steps from ``guess`` that
    double until the predicate changes, then bisection, so that a guess on the wrong side of a wide run
    of floats (e.g. at 0 for a threshold of -1e-17) costs about 2,000 evaluations at most, never one per float."""
    x = float(guess)
    step = max(abs(x) * 2.0**-52, 5e-324)
    inside = holds(x)
    lo, hi = (x - step, x) if inside else (x, x + step)
    while holds(lo) if inside else not holds(hi):  # widen the bracket until not holds(lo) and holds(hi)
        step *= 2.0
        if inside:
            lo, hi = x - step, lo
        else:
            lo, hi = hi, x + step
        if not (math.isfinite(lo) and math.isfinite(hi)):
            return -math.inf if inside else math.inf
    while True:
        mid = lo / 2.0 + hi / 2.0  # no overflow; strictly between two floats that are not neighbours
        if not lo < mid < hi:
            mid = float(np.nextafter(lo, np.inf))
            if mid >= hi:
                return float(hi)
        if holds(mid):
            hi = mid
        else:
            lo = mid


@register
class HardSigmoid(Activation):
    """``max(0, min(1, alpha x + beta))`` with finite ``alpha != 0`` and ``beta`` (see module)."""

    kind = "hard_sigmoid"
    LABEL = "hard sigmoid"
    PARAMS = ("alpha", "beta")

    def __init__(self, alpha: float = 0.2, beta: float = 0.5):
        alpha, beta = float(alpha), float(beta)
        if not (math.isfinite(alpha) and math.isfinite(beta) and alpha != 0.0):
            raise InvalidNetworkError(f"hard sigmoid needs a finite alpha != 0 and a finite beta, got {alpha}, {beta}")
        self.alpha, self.beta = alpha, beta
        line = lambda x: alpha * np.float64(x) + beta  # the float64 formula of apply
        if alpha > 0:
            b0 = _first_float(lambda x: line(x) >= 0.0, -beta / alpha)
            b1 = _first_float(lambda x: line(x) >= 1.0, (1.0 - beta) / alpha)
            values = ((0.0, 0.0), (alpha, beta), (0.0, 1.0))
        else:
            b0 = _first_float(lambda x: line(x) <= 1.0, (1.0 - beta) / alpha)
            b1 = _first_float(lambda x: line(x) <= 0.0, -beta / alpha)
            values = ((0.0, 1.0), (alpha, beta), (0.0, 0.0))
        if not (math.isfinite(b0) and math.isfinite(b1) and b0 < b1):
            raise InvalidNetworkError(f"hard sigmoid with alpha={alpha}, beta={beta} has no finite ramp in float64")
        self._set_pieces((b0, b1), [v[0] for v in values], [v[1] for v in values])

    def apply(self, x):
        return np.clip(self.alpha * np.asarray(x, dtype=np.float64) + self.beta, 0.0, 1.0)

    def apply_torch(self, x):
        import torch

        return torch.clamp(self.alpha * x + self.beta, min=0.0, max=1.0)

    def linear_relaxation(self, l, u):
        """The clipped-ReLU relaxation (cap 1) of ``t = alpha x + beta`` on ``[t(l), t(u)]`` sorted, mapped back."""
        import torch

        a, c = self.alpha, self.beta
        tl, tu = a * l + c, a * u + c
        al, cl, au, cu = _clipped_relaxation(1.0, torch.minimum(tl, tu), torch.maximum(tl, tu))
        return al * a, al * c + cl, au * a, au * c + cu


@register
class Abs(Activation):
    """``|x|``."""

    kind = "abs"
    LABEL = "abs"

    def __init__(self):
        self._set_pieces((0.0,), (-1.0, 1.0), (0.0, 0.0))

    def apply(self, x):
        return np.abs(np.asarray(x, dtype=np.float64))

    def apply_torch(self, x):
        import torch

        return torch.abs(x)
