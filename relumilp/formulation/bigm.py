r"""The big-M MILP of a network, built in matrix form from the IR and its bounds.

Every node gets one column per output; activation neurons that can cross a breakpoint also get binaries.
For a neuron with pre-activation ``x`` in ``[L, U]`` and output ``y``:

**Affine node** ``y = sum_i W_i x_i + b``: equality rows ``y - sum_i W_i x_i = b``.

**ReLU / LeakyReLU** ``y = max(x, alpha x)`` with ``alpha < 1`` (ReLU: ``alpha = 0``):

* ``U <= 0`` (stably inactive): ``y = alpha x`` (for ReLU the column is fixed at 0), no binary;
* ``L >= 0`` (stably active): ``y = x``, no binary;
* otherwise, with ``z = 1`` meaning ``x >= 0``::

      y >= x,   y >= alpha x,
      y <= x - (1 - alpha) L (1 - z),
      y <= alpha x + (1 - alpha) U z,        z in {0, 1}.

  ``z = 1`` forces ``y = x`` and, through ``y >= alpha x``, ``x >= 0``; ``z = 0`` forces ``y = alpha x`` and,
  through ``y >= x``, ``x <= 0``. For ``alpha = 0`` these are the classic rows ``y >= x, y >= 0,
  y <= x - L (1 - z), y <= U z``.

**Clipped ReLU** ``y = min(max(x, 0), c)`` has three pieces. With binaries ``z`` (``x >= 0``) and ``zc``
(``x >= c``), ``zc <= z``, and ``0 <= y <= c``::

      y >= x - (U - c) zc,      y <= x - L (1 - z),
      y <= min(U, c) z,         y >= c zc.

  Piece by piece: ``z = 0`` gives ``y = 0, x <= 0``; ``zc = 1`` gives ``y = c, x >= c``; ``z = 1, zc = 0``
  gives ``y = x`` with ``0 <= x <= c``. A binary is created only for a kink the bounds leave reachable
  (``L < 0 < U`` for ``z``, ``L < c < U`` for ``zc``); neurons with no reachable kink are the affine piece
  they are on (``y = 0``, ``y = x`` or ``y = c``). For every activation, ``z = 1`` means "at or above 0"
  and ``zc = 1`` "at or above the cap", so a forward pass gives the binaries of a MIP start directly.

The big-M coefficients are therefore ``-L`` and ``U`` (``U - c`` at the cap): their size is what bound
tightening and scaling reduce.

**LP relaxation for OBBT** (:func:`build_lp_relaxation`). Each neuron that can cross a kink gets the
convex hull of its graph over ``[L, U]`` instead of binaries: the region between the lower convex and
the upper concave envelope of the points ``(L, f(L))``, the reachable kinks and ``(U, f(U))``:

* ReLU / LeakyReLU: ``y >= x``, ``y >= alpha x`` and the chord ``y <= alpha L + s (x - L)``,
  ``s = (U - alpha L) / (U - L)`` (for ReLU: the "triangle" ``y <= U (x - L) / (U - L)``);
* clipped ReLU crossing 0 only: the ReLU triangle; crossing the cap only (``0 <= L``): ``y <= x``,
  ``y <= c`` and ``y >= L + (c - L)(x - L) / (U - L)``; crossing both: ``0 <= y <= c``,
  ``y <= c (x - L) / (c - L)`` and ``y >= c x / U``.

Projecting the relaxed binaries out of the ReLU / LeakyReLU big-M rows above gives the same set
(by hand for ReLU: a ``z`` exists iff ``y <= U (x - L) / (U - L)``), so LP bounds are unchanged while
the LP loses the binary columns and a row per neuron. For clipped ReLU the two-binary big-M relaxation
is not sharp and the hull is strictly tighter on some neurons. Both facts are checked numerically in
``tests/test_formulation_oracle.py``.
"""

from __future__ import annotations

import networkx as nx
import numpy as np

from ..bounds.base import Bounds, phases
from ..domain import InputDomain
from ..ir import ActivationNode, AffineNode, InputNode, Network
from .milp import MILP, MILPAssembler, VariableGroup


def build_milp(
    net: Network,
    bounds: Bounds,
    domain: InputDomain | None = None,
    upto: str | None = None,
) -> MILP:
    """The big-M MILP of ``net`` (or of the sub-network computing node ``upto``) over ``bounds``.

    ``domain`` adds its linear rows ``A x <= b`` on the input columns (its box is already in
    ``bounds``). Column bounds come from ``bounds`` for every node.
    """
    return _assemble(net, bounds, domain, upto, _activation_rows)


def build_lp_relaxation(
    net: Network,
    bounds: Bounds,
    domain: InputDomain | None = None,
    upto: str | None = None,
    include_upto: bool = True,
) -> MILP:
    """The LP of ``net`` with each unstable neuron replaced by the convex hull of its graph (no binaries).

    Same columns and affine rows as :func:`build_milp`; see the module docstring for the hull rows.
    With ``include_upto=False`` the model stops before node ``upto`` (only its ancestors).
    It is never weaker than the LP relaxation of the big-M MILP (equal for ReLU and LeakyReLU, tighter
    for clipped ReLU) and smaller (no binary columns, fewer rows), so LP-OBBT solves it instead.
    """
    return _assemble(net, bounds, domain, upto, _hull_rows, include_upto)


def _assemble(net, bounds, domain, upto, activation_rows, include_upto: bool = True) -> MILP:
    nodes = net.order
    if upto is not None:
        keep = nx.ancestors(net.graph, upto) | ({upto} if include_upto else set())
        nodes = tuple(node for node in net.order if node.name in keep)
    asm = MILPAssembler()
    columns: dict[str, np.ndarray] = {}
    binaries: dict[str, dict[str, VariableGroup]] = {}
    for node in nodes:
        lower, upper = bounds[node.name]
        if isinstance(node, ActivationNode):
            lower, upper = _activation_column_bounds(node, bounds)
        columns[node.name] = asm.add_columns(lower, upper)
        if isinstance(node, AffineNode):
            _affine_rows(asm, node, columns)
        elif isinstance(node, ActivationNode):
            binaries[node.name] = activation_rows(asm, node, columns, *bounds[node.inputs[0]])
    if domain is not None and domain.A is not None:
        x = columns[net.input.name]
        asm.add_rows("input_constraints", [(domain.A, x)], np.full(domain.b.size, -np.inf), domain.b)
    return asm.finish(
        node_columns=columns,
        binaries=binaries,
        input_name=net.input.name,
        output_name=net.output if upto is None else (upto if include_upto else nodes[-1].name),
    )


def _activation_column_bounds(node: ActivationNode, bounds: Bounds) -> tuple[np.ndarray, np.ndarray]:
    """Output bounds of an activation, made exact on fixed pieces (so stable neurons need no row)."""
    lower, upper = (v.copy() for v in bounds[node.name])
    pre_lower, pre_upper = bounds[node.inputs[0]]
    ph = phases(node, pre_lower, pre_upper)
    if node.kind in ("relu", "clipped_relu") or (node.kind == "leaky_relu" and node.alpha == 0.0):
        lower[ph.low] = upper[ph.low] = 0.0
        lower = np.maximum(lower, 0.0)
    if node.kind == "clipped_relu":
        lower[ph.high] = upper[ph.high] = node.cap
        upper = np.minimum(upper, node.cap)
    return lower, upper


def _affine_rows(asm: MILPAssembler, node: AffineNode, columns: dict) -> None:
    y = columns[node.name]
    terms = [(np.eye(node.size), y)]
    terms += [(-w, columns[source]) for source, w in zip(node.inputs, node.weights)]
    asm.add_rows(node.name, terms, node.bias, node.bias)


def _linear_piece_rows(asm: MILPAssembler, node: ActivationNode, columns: dict, ph) -> None:
    """``y = x`` on the identity piece and ``y = alpha x`` on LeakyReLU's low piece (constant pieces --
    0 or the cap -- are fixed through the column bounds)."""
    x_all, y_all = columns[node.inputs[0]], columns[node.name]
    linear = np.flatnonzero(ph.linear)
    asm.add_rows(node.name, [(1.0, y_all[linear]), (-1.0, x_all[linear])], np.zeros(linear.size), 0.0)
    if node.kind == "leaky_relu" and node.alpha != 0.0:
        low = np.flatnonzero(ph.low)
        asm.add_rows(node.name, [(1.0, y_all[low]), (-node.alpha, x_all[low])], np.zeros(low.size), 0.0)


def _activation_rows(asm: MILPAssembler, node: ActivationNode, columns: dict, L: np.ndarray, U: np.ndarray):
    """Rows (and binaries) of one activation node; returns its binary groups."""
    x_all, y_all = columns[node.inputs[0]], columns[node.name]
    ph = phases(node, L, U)
    name = node.name
    alpha = node.alpha if node.kind == "leaky_relu" else 0.0
    _linear_piece_rows(asm, node, columns, ph)
    if node.kind == "clipped_relu":
        return _clipped_rows(asm, node, x_all, y_all, ph, L, U)
    idx = np.flatnonzero(ph.kink0)
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
    return {"z": VariableGroup(f"{name}.z", z, idx)}


def _clipped_rows(asm, node, x_all, y_all, ph, L, U):
    c = node.cap
    groups = {}
    z = np.full(node.size, -1)
    zc = np.full(node.size, -1)
    i0 = np.flatnonzero(ph.kink0)
    ic = np.flatnonzero(ph.kink_cap)
    z[i0] = asm.add_columns(np.zeros(i0.size), np.ones(i0.size), integer=True)
    zc[ic] = asm.add_columns(np.zeros(ic.size), np.ones(ic.size), integer=True)
    if i0.size:
        groups["z"] = VariableGroup(f"{node.name}.z", z[i0], i0)
    if ic.size:
        groups["z_cap"] = VariableGroup(f"{node.name}.z_cap", zc[ic], ic)
    name = node.name

    inf = np.inf
    # Neurons that cross the cap: y >= x - (U - c) zc, y >= c zc.
    x, y, u = x_all[ic], y_all[ic], U[ic]
    asm.add_rows(name, [(1.0, y), (-1.0, x), (u - c, zc[ic])], np.zeros(ic.size), inf)
    asm.add_rows(name, [(1.0, y), (-c, zc[ic])], np.zeros(ic.size), inf)
    # ... and those among them that cannot cross 0 also satisfy y <= x.
    only_cap = ic[~ph.kink0[ic]]
    asm.add_rows(name, [(1.0, y_all[only_cap]), (-1.0, x_all[only_cap])], np.full(only_cap.size, -inf), 0.0)
    # Neurons that cross 0: y <= x - L (1 - z), y <= min(U, c) z.
    x, y, l, u = x_all[i0], y_all[i0], L[i0], U[i0]
    asm.add_rows(name, [(1.0, y), (-1.0, x), (-l, z[i0])], np.full(i0.size, -inf), -l)
    asm.add_rows(name, [(1.0, y), (-np.minimum(u, c), z[i0])], np.full(i0.size, -inf), 0.0)
    # ... and those that cannot cross the cap also satisfy y >= x.
    only_zero = i0[~ph.kink_cap[i0]]
    asm.add_rows(name, [(1.0, y_all[only_zero]), (-1.0, x_all[only_zero])], np.zeros(only_zero.size), inf)
    both = i0[ph.kink_cap[i0]]
    asm.add_rows(name, [(1.0, zc[both]), (-1.0, z[both])], np.full(both.size, -inf), 0.0)  # zc <= z
    return groups


def _hull_rows(asm: MILPAssembler, node: ActivationNode, columns: dict, L: np.ndarray, U: np.ndarray) -> dict:
    """Convex-hull rows of one activation node (LP relaxation, no binaries); see the module docstring."""
    x_all, y_all = columns[node.inputs[0]], columns[node.name]
    ph = phases(node, L, U)
    _linear_piece_rows(asm, node, columns, ph)

    def lower_rows(mask, slope, intercept):  # y >= slope x + intercept
        i = np.flatnonzero(mask)
        asm.add_rows(node.name, [(1.0, y_all[i]), (-slope[i], x_all[i])], intercept[i], np.inf)

    def upper_rows(mask, slope, intercept):  # y <= slope x + intercept
        i = np.flatnonzero(mask)
        asm.add_rows(node.name, [(1.0, y_all[i]), (-slope[i], x_all[i])], np.full(i.size, -np.inf), intercept[i])

    ones, zeros = np.ones_like(L), np.zeros_like(L)
    with np.errstate(divide="ignore", invalid="ignore"):  # slopes are used only where L < kink < U
        if node.kind != "clipped_relu":
            alpha = node.alpha if node.kind == "leaky_relu" else 0.0
            lower_rows(ph.kink0, ones, zeros)  # y >= x (and y >= alpha x: the column bound when alpha = 0)
            if alpha != 0.0:
                lower_rows(ph.kink0, np.full_like(L, alpha), zeros)
            slope = (U - alpha * L) / (U - L)  # the chord from (L, alpha L) to (U, U)
            upper_rows(ph.kink0, slope, (alpha - slope) * L)
            return {}
        c = node.cap
        only_zero, only_cap, both = ph.kink0 & ~ph.kink_cap, ph.kink_cap & ~ph.kink0, ph.kink0 & ph.kink_cap
        # crosses 0 only (U <= c): a ReLU; y >= 0 is the column bound
        lower_rows(only_zero, ones, zeros)
        slope = U / (U - L)
        upper_rows(only_zero, slope, -slope * L)
        # crosses the cap only (L >= 0): y = min(x, c); y <= c is the column bound
        upper_rows(only_cap, ones, zeros)
        slope = (c - L) / (U - L)  # the chord from (L, L) to (U, c)
        lower_rows(only_cap, slope, L - slope * L)
        # crosses both: chords (L, 0)-(c, c) above and (0, 0)-(U, c) below; 0 <= y <= c are column bounds
        slope = c / (c - L)
        upper_rows(both, slope, -slope * L)
        lower_rows(both, c / U, zeros)
    return {}


def start_vector(net: Network, milp: MILP, x) -> np.ndarray:
    """The full column vector of ``milp`` at input ``x``: every node from the forward pass, every binary
    from the activation pattern (``z = 1`` at or above 0, ``z_cap = 1`` at or above the cap).

    It satisfies every row of :func:`build_milp` whenever the forward values lie within the model's
    column bounds: a MIP start for any backend (highspy, Pyomo, MPS users).
    """
    values = net.forward_all(np.asarray(x, dtype=np.float64))
    vector = np.zeros(milp.num_columns)
    for name, columns in milp.node_columns.items():
        vector[columns] = values[name]
    for node in net.activations:
        pre = values[node.inputs[0]]
        for key, group in milp.binaries.get(node.name, {}).items():
            threshold = node.cap if key == "z_cap" else 0.0
            vector[group.columns] = (pre[group.neurons] >= threshold).astype(np.float64)
    return np.clip(vector, milp.col_lower, milp.col_upper)
