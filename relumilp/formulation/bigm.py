r"""The big-M MILP of a network, built in matrix form from the IR and its bounds.

Every node gets one column per output; activation neurons that can cross a breakpoint also get binaries.
For a neuron with pre-activation ``x`` in ``[L, U]`` and output ``y``:

**Affine node** ``y = sum_i W_i x_i + b``: equality rows ``y - sum_i W_i x_i = b``.

**Activation node**: each activation kind (:mod:`relumilp.activations`) classifies its neurons from
the pre-activation bounds ``L <= x <= U``. A neuron that cannot cross any kink is the affine piece it
is on: a constant piece is fixed through the column bounds, any other piece gets the row
``y = s x + o``. A neuron that can cross kinks gets one binary per reachable kink and the kind's
big-M rows (:meth:`~relumilp.activations.Activation.milp_rows`; the maths is in each kind's module:
ReLU / LeakyReLU in :mod:`relumilp.activations.relu`, clip and clipped ReLU in
:mod:`relumilp.activations.clip`). Output columns are also cut to the activation's range. For every
kind, a binary is 1 "at or above its kink", so a forward pass gives the binaries of a MIP start
directly. The big-M coefficients are distances from ``L`` and ``U`` to the kinks: their size is what
bound tightening and scaling reduce.

**LP relaxation for OBBT** (:func:`build_lp_relaxation`). Each neuron that can cross a kink gets the
convex hull of its graph over ``[L, U]`` instead of binaries
(:meth:`~relumilp.activations.Activation.hull_rows`): the region between the lower convex and the
upper concave envelope of the points ``(L, f(L))``, the reachable kinks and ``(U, f(U))``. For ReLU and
LeakyReLU this equals the projection of the big-M relaxation (same LP bounds, smaller LP); for clip
kinds the hull is strictly tighter on some neurons. Both facts are checked numerically in
``tests/test_formulation_oracle.py``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import networkx as nx
import numpy as np

from ..domain import InputDomain
from ..ir import ActivationNode, AffineNode, Network
from .milp import MILP, MILPAssembler, VariableGroup
from .pwl import start_values

if TYPE_CHECKING:  # formulation reads bounds but never imports the bound passes
    from ..bounds.base import Bounds


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
    for clip kinds) and smaller (no binary columns, fewer rows), so LP-OBBT solves it instead.
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
    ph = node.activation.phases(*bounds[node.inputs[0]], node.name)
    return node.activation.column_bounds(*bounds[node.name], ph)


def _affine_rows(asm: MILPAssembler, node: AffineNode, columns: dict) -> None:
    y = columns[node.name]
    terms = [(np.ones(node.size), y)]  # one coefficient per row: the identity, never built dense
    terms += [(-w, columns[source]) for source, w in zip(node.inputs, node.weights)]
    asm.add_rows(node.name, terms, node.bias, node.bias)


def _activation_rows(asm: MILPAssembler, node: ActivationNode, columns: dict, L: np.ndarray, U: np.ndarray):
    """Rows (and binaries) of one activation node; returns its binary groups."""
    x, y, ph = columns[node.inputs[0]], columns[node.name], node.activation.phases(L, U, node.name)
    node.activation.stable_rows(asm, node.name, x, y, ph)
    return node.activation.milp_rows(asm, node.name, x, y, L, U, ph)


def _hull_rows(asm: MILPAssembler, node: ActivationNode, columns: dict, L: np.ndarray, U: np.ndarray) -> dict:
    """Convex-hull rows of one activation node (LP relaxation, no binaries); see the module docstring."""
    x, y, ph = columns[node.inputs[0]], columns[node.name], node.activation.phases(L, U, node.name)
    node.activation.stable_rows(asm, node.name, x, y, ph)
    node.activation.hull_rows(asm, node.name, x, y, L, U, ph)
    return {}


def start_vector(net: Network, milp: MILP, x) -> np.ndarray:
    """The full column vector of ``milp`` at input ``x``: every node from the forward pass, every binary
    from the activation pattern (each binary is 1 at or above its kink).

    It satisfies every row of :func:`build_milp` whenever the forward values lie within the model's
    column bounds: a MIP start for any backend (highspy, Pyomo, MPS users).
    """
    values = net.forward_all(np.asarray(x, dtype=np.float64))
    vector = np.zeros(milp.num_columns)
    for name, columns in milp.node_columns.items():
        vector[columns] = values[name]
    for node in net.activations:
        pre = values[node.inputs[0]]
        names = node.activation.binary_names
        for key, group in milp.binaries.get(node.name, {}).items():
            if group.band:  # a band encoding: fill fractions and binaries from the input's filling
                for band in group.band:
                    vector[band.delta], vector[band.z] = start_values(band, pre)
                continue
            vector[group.columns] = node.activation.start_binary(pre[group.neurons], names.index(key))
    return np.clip(vector, milp.col_lower, milp.col_upper)
