"""The architecture's theoretical maximum number of linear regions over all of input space.

:func:`regions_upper_bound` is the worst case of the architecture, for comparison with the count on the
input domain (:func:`relumilp.analysis.regions.count_regions`), which is what matters for optimisation;
trained networks on a bounded domain are typically far below it.
"""

from __future__ import annotations

import math

from ...ir import Network
from . import piece_table


def serra_bound(n0: int, widths: list[int]) -> int:
    r"""Serra, Tjandraatmadja & Ramalingam (2018), Theorem 1, for a ReLU network.

    With input dimension :math:`n_0` and hidden widths :math:`n_1, \dots, n_L`, the number of linear
    regions over all of :math:`\mathbb{R}^{n_0}` is at most

    .. math::
        \sum_{(j_1, \dots, j_L) \in J} \prod_{l=1}^{L} \binom{n_l}{j_l},\qquad
        J = \{ j \in \mathbb{Z}^L : 0 \le j_l \le \min\{n_0, n_1 - j_1, \dots, n_{l-1} - j_{l-1}, n_l\} \}.

    Computed exactly (Python integers) by dynamic programming over the running minimum
    :math:`\min\{n_0, n_1 - j_1, \dots\}`.
    """
    states = {int(n0): 1}  # running minimum -> number of weighted paths
    for n in widths:
        nxt: dict[int, int] = {}
        for budget, weight in states.items():
            for j in range(min(budget, n) + 1):
                key = min(budget, n - j)
                nxt[key] = nxt.get(key, 0) + weight * math.comb(n, j)
        states = nxt
    return sum(states.values())


def arrangement_bound(n0: int, widths: list[int], hyperplanes: list[int]) -> int:
    r"""A product bound for networks whose layers need not be ReLU.

    Layer :math:`l` cuts each region of the layers before it by :math:`m_l` hyperplanes (one per
    breakpoint: :math:`m_l = n_l` for ReLU/LeakyReLU, :math:`2 n_l` for clipped ReLU, 0 for identity)
    in an image space of dimension at most :math:`d_l = \min(n_0, n_1, \dots, n_{l-1})`; an arrangement
    of :math:`m` hyperplanes in dimension :math:`d` has at most :math:`\sum_{j=0}^{d} \binom{m}{j}`
    regions (Zaslavsky), so the network has at most
    :math:`\prod_{l=1}^{L} \sum_{j=0}^{d_l} \binom{m_l}{j}` regions.
    """
    total, dim = 1, int(n0)
    for n, m in zip(widths, hyperplanes):
        total *= sum(math.comb(m, j) for j in range(min(dim, m) + 1))
        dim = min(dim, n)
    return total


def regions_upper_bound(net: Network) -> tuple[int | None, str]:
    """The architecture's maximum number of linear regions over all of input space, and how it was bounded.

    ReLU MLPs: :func:`serra_bound` (Serra et al. 2018, Theorem 1). MLPs with LeakyReLU, clipped ReLU or
    identity layers: :func:`arrangement_bound`. Non-sequential graphs: ``(None, reason)``. The count on
    the input domain (:func:`count_regions`) is what matters for optimisation; this bound is only the
    worst case of the architecture.
    """
    if net.has_smooth:
        return None, "a smooth activation: the network is not piecewise linear"
    if not net.is_sequential or len(net.activations) != len(net.affines) - 1:
        return None, "not a plain MLP (no architecture bound implemented)"
    widths = [node.size for node in net.activations]
    if all(node.kind == "relu" for node in net.activations):
        return serra_bound(net.input_size, widths), "Serra et al. 2018, Theorem 1"
    planes = [node.size * len(piece_table(node).breakpoints) for node in net.activations]
    return arrangement_bound(net.input_size, widths, planes), "per-layer hyperplane-arrangement product bound"
