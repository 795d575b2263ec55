r"""Ideal-formulation cuts for ReLU neurons: a root cut loop that strengthens the big-M MILP.

For one ReLU neuron ``y = max(0, w . x + b)`` whose inputs lie in a box ``L <= x <= U``, with binary
``z`` (``z = 1``: ``w . x + b >= 0``), Anderson, Huchette, Ma, Tjandraatmadja and Vielma, "Strong
mixed-integer programming formulations for trained neural networks", Math. Programming 183 (2020),
doi:10.1007/s10107-020-01474-5 (arXiv:1811.01988; the IPCO 2019 version is arXiv:1811.08359), show
that the convex hull of ``{(x, y, z)}`` is the big-M rows plus, for every subset ``I`` of the inputs::

    y <= sum_{i in I} w_i (x_i - Lb_i (1 - z)) + (b + sum_{i not in I} w_i Ub_i) z

with ``Lb_i = L_i, Ub_i = U_i`` where ``w_i >= 0`` and ``Lb_i = U_i, Ub_i = L_i`` otherwise (``Lb`` and
``Ub`` minimise and maximise ``w_i x_i`` over the box). The family is exponential, but the most violated
member at a point ``(x*, y*, z*)`` is found in linear time: put ``i`` in ``I`` iff
``w_i (x*_i - Lb_i (1 - z*)) < w_i Ub_i z*`` (each input contributes the smaller of its two terms).

Validity (why a cut never removes a point of the MILP): at ``z = 0`` the right-hand side is
``sum_I w_i (x_i - Lb_i) >= 0 = y``; at ``z = 1`` it is ``w . x + b + sum_{i not in I} w_i (Ub_i - x_i)
>= w . x + b = y``. Only the box on ``x`` is used, so any sound column bounds of the previous layer
will do: here ``L, U`` are the MILP's own column bounds of that layer's outputs.

Scope: ReLU neurons (kind ``relu``) with a binary, whose pre-activation is an affine node reading a
single activation or input node (a dense, sparse or lowered convolutional layer; only its nonzero weights are
read); every other neuron keeps its big-M rows only.

:func:`root_cuts` runs the loop: solve the LP relaxation of the (equilibrated) MILP with its
objective, separate the most violated cut of every eligible neuron at the LP point, append the
violated ones (violation above ``1e-6`` relative to the row's size) as rows, and repeat for a few
rounds or until the LP bound stops improving. The MILP with the cuts is then solved as usual and its
answer still goes through :func:`relumilp.optimization.certify`.

**Why a root loop and not a cut callback.** highspy (HiGHS 1.16) exposes ``cbMipGetCutPool`` (read
access to HiGHS's own cut pool) and declares ``cbMipDefineLazyConstraints``, but the callback input
(``HighsCallbackInput``) carries only ``user_interrupt`` and a user solution -- no way to hand rows
back -- and on a small knapsack MIP the lazy-constraint callback was never called (the cut-pool one
was, once). So user cuts can only enter as rows of the model, before the solve.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp

from ..bounds.rounding import gamma
from ..ir import ActivationNode, AffineNode, InputNode, Network
from .milp import MILP

#: cut rounds of :func:`root_cuts` (Anderson et al. report most of the gain within a few rounds)
ROUNDS = 8
#: a cut is added when it is violated by more than this, relative to the size of its terms
VIOLATION = 1e-6
#: the loop stops when a round improves the LP bound by less than this (relative to max(1, |bound|))
STALL = 1e-6


@dataclass
class _Layer:
    """The eligible neurons of one ReLU node: ``k`` neurons over ``n`` inputs, their weights kept as the
    ``nnz`` nonzero entries (a convolution's or a lowered max-pool's rows are sparse)."""

    x: np.ndarray  # (n,) columns of the previous layer's outputs
    y: np.ndarray  # (k,) columns of the neurons' outputs
    z: np.ndarray  # (k,) columns of their binaries
    b: np.ndarray  # (k,) biases
    row: np.ndarray  # (nnz,) the neuron of each weight entry
    col: np.ndarray  # (nnz,) its input, a position in x
    w: np.ndarray  # (nnz,) the weight
    lo: np.ndarray  # (nnz,) Lb: the bound minimising w_i x_i
    hi: np.ndarray  # (nnz,) Ub: the bound maximising w_i x_i

    def sums(self, values: np.ndarray) -> np.ndarray:
        """Per-neuron sums of per-entry ``values``."""
        return np.bincount(self.row, weights=values, minlength=self.y.size)


class IdealSeparator:
    """Separates the most violated ideal cut of every eligible ReLU neuron of a big-M ``milp``."""

    def __init__(self, net: Network, milp: MILP):
        self.num_columns = milp.num_columns
        self.layers: list[_Layer] = []
        for node in net.activations:
            group = milp.binaries.get(node.name, {}).get("z")
            affine = net[node.inputs[0]]
            if node.kind != "relu" or group is None or not isinstance(affine, AffineNode) or len(affine.inputs) != 1:
                continue
            source = net[affine.inputs[0]]
            if not isinstance(source, (ActivationNode, InputNode)):
                continue
            x = milp.node_columns[source.name]
            w = sp.coo_array(sp.csr_array(affine.weights[0][group.neurons]))
            nonzero = w.data != 0.0  # explicitly stored zeros take no part
            row, col, data = w.row[nonzero], w.col[nonzero], w.data[nonzero]
            L, U = milp.col_lower[x][col], milp.col_upper[x][col]
            positive = data > 0.0
            lo, hi = np.where(positive, L, U), np.where(positive, U, L)
            unbounded = np.zeros(group.neurons.size, dtype=bool)
            unbounded[row[~(np.isfinite(lo) & np.isfinite(hi))]] = True
            keep = np.flatnonzero(~unbounded)
            if not keep.size:
                continue
            renumber = np.full(group.neurons.size, -1, dtype=np.int64)
            renumber[keep] = np.arange(keep.size)
            kept = ~unbounded[row]  # the entries of the neurons kept
            self.layers.append(_Layer(
                x, milp.node_columns[node.name][group.neurons[keep]], group.columns[keep],
                np.asarray(affine.bias, dtype=np.float64)[group.neurons[keep]], renumber[row[kept]], col[kept],
                data[kept], lo[kept], hi[kept]))

    @property
    def num_neurons(self) -> int:
        return sum(layer.y.size for layer in self.layers)

    def separate(self, v: np.ndarray, tolerance: float = VIOLATION) -> tuple[sp.csr_array, np.ndarray]:
        """The most violated cut of each eligible neuron at column vector ``v``, when violated by more than
        ``tolerance`` (relative): ``(A, upper)`` with rows ``A v <= upper``."""
        blocks, uppers = [], []
        for layer in self.layers:
            ys, zk = v[layer.y], v[layer.z]
            xs, zs = v[layer.x][layer.col], zk[layer.row]
            in_set = layer.w * (xs - layer.lo * (1.0 - zs))  # term of i when i is in I
            out_set = layer.w * layer.hi * zs  # term of i when it is not
            chosen = in_set < out_set
            terms = np.where(chosen, in_set, out_set)
            rhs = layer.sums(terms) + layer.b * zk
            size = 1.0 + np.abs(ys) + layer.sums(np.abs(terms)) + np.abs(layer.b * zk)
            violated = ys - rhs > tolerance * size
            if not violated.any():
                continue
            # y - sum_I w_i x_i - (sum_I w_i Lb_i + b + sum_{not I} w_i Ub_i) z <= -sum_I w_i Lb_i
            index = np.full(layer.y.size, -1, dtype=np.int64)
            index[violated] = np.arange(int(violated.sum()))
            lo_part = layer.sums(np.where(chosen, layer.w * layer.lo, 0.0))[violated]
            hi_part = layer.sums(np.where(chosen, 0.0, layer.w * layer.hi))[violated]
            scale = layer.sums(np.abs(layer.w * layer.lo) + np.abs(layer.w * layer.hi))[violated]
            b = layer.b[violated]
            k = b.size
            in_cut = chosen & violated[layer.row]  # inputs outside I take no part
            rows = np.concatenate([np.arange(k), np.arange(k), index[layer.row[in_cut]]])
            cols = np.concatenate([layer.y[violated], layer.z[violated], layer.x[layer.col[in_cut]]])
            vals = np.concatenate([np.ones(k), -(lo_part + b + hi_part), -layer.w[in_cut]])
            blocks.append(sp.csr_array((vals, (rows, cols)), shape=(k, self.num_columns)))
            # rounded outward: the sums above carry at most n + 2 roundings of terms no larger than these,
            # so the row stays valid for every point of the MILP, not only up to float64 round-off
            uppers.append(-lo_part + 2.0 * gamma(layer.x.size + 2) * (scale + np.abs(b) + 1.0))
        if not blocks:
            return sp.csr_array((0, self.num_columns)), np.zeros(0)
        return sp.vstack(blocks).tocsr(), np.concatenate(uppers)


def add_cuts(milp: MILP, A: sp.csr_array, upper: np.ndarray) -> MILP:
    """``milp`` with the rows ``A v <= upper`` appended (owner ``ideal_cuts`` in the row names)."""
    out = MILP(**{
        **milp.__dict__,
        "A": sp.vstack([milp.A, A]).tocsr(),
        "row_lower": np.concatenate([milp.row_lower, np.full(A.shape[0], -np.inf)]),
        "row_upper": np.concatenate([milp.row_upper, upper]),
    })
    first = milp.row_ranges.get("ideal_cuts", (milp.num_rows, milp.num_rows))[0]
    out.row_ranges = {**milp.row_ranges, "ideal_cuts": (first, out.num_rows)}
    return out


def root_cuts(net: Network, milp: MILP, rounds: int = ROUNDS, deadline=None, threads: int | None = None,
              ) -> tuple[MILP, dict]:
    """Strengthen ``milp`` (with its objective) by rounds of ideal cuts at its LP-relaxation optimum.

    Returns the MILP with the cuts and stats: ``rounds`` (separation rounds run), ``added`` (cuts),
    ``neurons`` (eligible neurons), ``root_bound_before`` / ``root_bound_after`` (LP optimum of the
    big-M relaxation and of the relaxation with the cuts; None when an LP did not solve), ``seconds``
    and ``interrupted`` (Ctrl-C during an LP: the caller should stop too).
    """
    from ..backends.highs import solve_milp

    started = time.perf_counter()
    separator = IdealSeparator(net, milp)
    stats = {"rounds": 0, "added": 0, "neurons": separator.num_neurons, "root_bound_before": None,
             "root_bound_after": None, "seconds": 0.0, "interrupted": False}
    sign = 1.0 if milp.sense == "max" else -1.0
    previous = None
    for round_ in range(rounds + 1):
        if separator.num_neurons == 0:
            break
        lp = solve_milp(milp.relaxed(), deadline=deadline, threads=threads)
        if lp.status == "interrupted":
            stats["interrupted"] = True
        if lp.status != "optimal" or lp.x is None:
            break
        bound = lp.objective
        stats["root_bound_after"] = bound
        if stats["root_bound_before"] is None:
            stats["root_bound_before"] = bound
        # a maximisation's LP bound decreases as cuts bite, a minimisation's increases
        if previous is not None and sign * (previous - bound) <= STALL * max(1.0, abs(bound)):
            break
        previous = bound
        if round_ == rounds:
            break
        A, upper = separator.separate(lp.x)
        if A.shape[0] == 0:
            break
        milp = add_cuts(milp, A, upper)
        stats["rounds"] += 1
        stats["added"] += int(A.shape[0])
    stats["seconds"] = time.perf_counter() - started
    return milp, stats
