r"""The incremental (delta) MILP encoding of a piecewise-linear *band* ``lower(x) <= y <= upper(x)``.

Per neuron ``i``: breakpoints ``t_0 = L < t_1 < ... < t_k = U`` and values ``lo_j <= hi_j`` at them
define two continuous piecewise-linear functions on ``[L, U]`` (linear interpolation of ``lo`` and of
``hi``). The encoding (Dantzig's incremental or "filling" method, see Vielma, Ahmed & Nemhauser 2010,
*Mixed-integer models for nonseparable piecewise-linear optimization*, section 3) writes ``x`` as
``L`` plus filled fractions of the segments::

    x = t_0 + sum_{j=1..k} h_j d_j,                h_j = t_j - t_{j-1},   0 <= d_j <= 1,
    d_{j+1} <= z_j <= d_j      (j = 1 .. k-1),     z_j in {0, 1},
    lo_0 + sum_j (lo_j - lo_{j-1}) d_j  <=  y  <=  hi_0 + sum_j (hi_j - hi_{j-1}) d_j.

With the binaries integral, ``z_j = 1`` forces segments ``1..j`` full and ``z_j = 0`` segments
``j+1..k`` empty, so ``d`` is the unique filling of ``x`` and both sums are exactly the interpolants at
``x``: the feasible set of ``(x, y)`` is the band, with ``k - 1`` binaries per neuron, and ``y`` is
the piecewise-linear function itself when ``lo == hi`` (an exact encoding of any continuous PWL
function on ``[L, U]``). The binary ``z_j`` is 1 at or above ``t_j`` (:func:`start_values`), like the
per-kink binaries of :mod:`relumilp.activations`. The LP relaxation of the incremental encoding is
the convex hull of each neuron's set (it is locally ideal, ibid.).

Rows are assembled in matrix form: neurons with the same number of segments form one group and every
row family of a group is one :meth:`~relumilp.formulation.milp.MILPAssembler.add_rows` call (a loop
over segment positions ``j``, never over neurons).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..errors import RelumilpError
from .milp import MILPAssembler


@dataclass(frozen=True)
class BandGroup:
    """The columns of the neurons of one band encoding that have ``k`` segments.

    ``neurons`` (n,) index the node's outputs; ``t`` (n, k+1) their breakpoints; ``delta`` (n, k) and
    ``z`` (n, k-1) column indices of the fill fractions and the binaries.
    """

    neurons: np.ndarray
    t: np.ndarray
    delta: np.ndarray
    z: np.ndarray


def add_band(asm: MILPAssembler, owner: str, x: np.ndarray, y: np.ndarray, t, lo, hi,
             neurons: np.ndarray | None = None) -> list[BandGroup]:
    """Add the incremental encoding of ``lower(x) <= y <= upper(x)`` for neurons with columns ``x``, ``y``.

    ``t``, ``lo``, ``hi``: per neuron a 1-D array of ``k_i + 1`` values (a list of arrays, ragged
    allowed, or one 2-D array); ``t`` strictly increasing except that a single-segment neuron may have
    ``t_0 == t_1`` (a fixed input). ``neurons`` (default ``arange``) labels the groups' neurons.
    Returns one :class:`BandGroup` per segment count.
    """
    x, y = np.asarray(x), np.asarray(y)
    rows = [np.asarray(r, dtype=np.float64) for r in t]
    lows = [np.asarray(r, dtype=np.float64) for r in lo]
    highs = [np.asarray(r, dtype=np.float64) for r in hi]
    if not (len(rows) == len(lows) == len(highs) == x.size == y.size):
        raise RelumilpError("a band needs breakpoints and lower and upper values for every neuron")
    neurons = np.arange(x.size) if neurons is None else np.asarray(neurons)
    lengths = np.array([r.size for r in rows], dtype=np.intp)
    groups = []
    for m in np.unique(lengths):
        i = np.flatnonzero(lengths == m)
        T = np.stack([rows[j] for j in i]) if i.size else np.zeros((0, m))
        LO, HI = np.stack([lows[j] for j in i]), np.stack([highs[j] for j in i])
        _check(T, LO, HI)
        groups.append(_add_group(asm, owner, x[i], y[i], T, LO, HI, neurons[i]))
    return groups


def _check(T, LO, HI) -> None:
    if T.shape[1] < 2:
        raise RelumilpError("a band needs at least two breakpoints per neuron")
    h = np.diff(T, axis=1)
    if not np.all(np.isfinite(T)) or np.any(h < 0.0) or (T.shape[1] > 2 and np.any(h <= 0.0)):
        raise RelumilpError("band breakpoints must be finite and strictly increasing")
    if not (np.all(np.isfinite(LO)) and np.all(np.isfinite(HI))) or np.any(LO > HI):
        raise RelumilpError("band values must be finite with lower <= upper")


def _add_group(asm, owner, x, y, T, LO, HI, neurons) -> BandGroup:
    n, k = T.shape[0], T.shape[1] - 1
    delta = asm.add_columns(np.zeros(n * k), np.ones(n * k)).reshape(n, k)
    z = asm.add_columns(np.zeros(n * (k - 1)), np.ones(n * (k - 1)), integer=True).reshape(n, k - 1)
    h, dlo, dhi = np.diff(T, axis=1), np.diff(LO, axis=1), np.diff(HI, axis=1)
    inf = np.full(n, np.inf)
    # x - sum_j h_j d_j = t_0
    asm.add_rows(owner, [(1.0, x)] + [(-h[:, j], delta[:, j]) for j in range(k)], T[:, 0], T[:, 0])
    # y - sum_j (lo_j - lo_{j-1}) d_j >= lo_0  and  y - sum_j (hi_j - hi_{j-1}) d_j <= hi_0
    asm.add_rows(owner, [(1.0, y)] + [(-dlo[:, j], delta[:, j]) for j in range(k)], LO[:, 0], inf)
    asm.add_rows(owner, [(1.0, y)] + [(-dhi[:, j], delta[:, j]) for j in range(k)], -inf, HI[:, 0])
    if k > 1:  # filling order: d_{j+1} <= z_j <= d_j
        zeros = np.zeros(z.size)
        asm.add_rows(owner, [(1.0, delta[:, 1:].ravel()), (-1.0, z.ravel())], np.full(z.size, -np.inf), zeros)
        asm.add_rows(owner, [(1.0, z.ravel()), (-1.0, delta[:, :-1].ravel())], np.full(z.size, -np.inf), zeros)
    return BandGroup(neurons=neurons, t=T, delta=delta, z=z)


def start_values(group: BandGroup, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(d, z)`` of the group's neurons at input values ``x`` (the node's full pre-activation vector):
    the filling of ``x`` (clipped into ``[t_0, t_k]``) and ``z_j = [x >= t_j]`` -- a feasible MIP start
    whenever ``y`` lies in the band."""
    T = group.t
    v = np.clip(np.asarray(x, dtype=np.float64)[group.neurons], T[:, 0], T[:, -1])[:, None]
    h = np.diff(T, axis=1)
    d = np.clip((v - T[:, :-1]) / np.where(h > 0, h, 1.0), 0.0, 1.0)
    z = (v >= T[:, 1:-1]).astype(np.float64)
    # make the order constraints hold exactly: a full segment before every set binary
    d[:, :-1] = np.where(z == 1.0, 1.0, d[:, :-1])
    d[:, 1:] = np.where(z == 0.0, 0.0, d[:, 1:])
    return d, z


def interpolate(t: np.ndarray, values: np.ndarray, x: np.ndarray) -> np.ndarray:
    """The piecewise-linear interpolant of ``values`` at ``t`` (rows: neurons), evaluated at ``x`` (n,)."""
    t, values = np.atleast_2d(t), np.atleast_2d(values)
    x = np.clip(np.asarray(x, dtype=np.float64), t[:, 0], t[:, -1])
    j = np.clip((t[:, 1:-1] <= x[:, None]).sum(axis=1), 0, t.shape[1] - 2)
    rows = np.arange(t.shape[0])
    a, b = t[rows, j], t[rows, j + 1]
    w = np.where(b > a, (x - a) / np.where(b > a, b - a, 1.0), 0.0)
    return values[rows, j] + w * (values[rows, j + 1] - values[rows, j])
