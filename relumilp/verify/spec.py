r"""The property as part of the network: stacked unsafe rows appended as a margin layer.

All rows of a region's unsafe conjunctions ``C_j y <= d_j`` are stacked (duplicates once) into
``G y - h`` (:func:`stack_rows`), and this affine map is appended to the network as one more affine
node (:func:`spec_network`), so the network's outputs become the *margins* ``g = G y - h``
(``g_r <= 0`` for every row of conjunction ``j``: ``y`` is in unsafe set ``j``). Bounds are then
computed on the margins directly, which is much tighter than bounding ``y`` and combining. A
conjunction with ``max_r lower(g_r) > 0`` is unreachable and is dropped; when none is left the region
holds. The MILP encoding of the unsafe sets on these margins is
:func:`relumilp.formulation.spec.unsafe_milp`.
"""

from __future__ import annotations

import numpy as np

from ..ir import AffineNode, Network


def spec_network(net: Network, G: np.ndarray, h: np.ndarray) -> Network:
    """The network ``x -> G net(x) - h``: the spec rows appended as one more affine node.

    Appended, not folded into the last layer: the margins must be computed from the very outputs the
    float64 forward pass produces, so that bounds on them (which hold for this network's forward
    pass, rounding included) also decide the property's own check ``C y <= d`` at exact equality.
    Back-substitution composes ``G`` with the last layer, so symbolic bounds lose nothing.
    """
    G = np.asarray(G, dtype=np.float64)
    h = np.asarray(h, dtype=np.float64)
    spec = AffineNode("spec_margin", G.shape[0], (net.output,), (G,), -h)
    return Network([*net.order, spec], spec.name, input_shape=net.input_shape, name=f"{net.name}+spec",
                   valid_domain=net.valid_domain)


def stack_rows(outputs) -> tuple[np.ndarray, np.ndarray, list[list[int]]]:
    """Unique rows ``G, h`` over all conjunctions and each conjunction's row indices.

    A conjunction without rows (every output is unsafe) gets the always-true row ``0 <= 0``.
    """
    index: dict[bytes, int] = {}
    rows, rhs, members = [], [], []
    m = outputs[0].C.shape[1]
    for out in outputs:
        C, d = out.C, out.d
        if out.num_rows == 0:
            C, d = np.zeros((1, m)), np.zeros(1)
        mine = []
        for c, v in zip(C, d):
            key = np.append(c, v).tobytes()
            if key not in index:
                index[key] = len(rows)
                rows.append(c)
                rhs.append(v)
            mine.append(index[key])
        members.append(sorted(set(mine)))
    return np.array(rows), np.array(rhs), members
