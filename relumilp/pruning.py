"""Lossless pruning of stable neurons (Serra et al. 2020, "Lossless compression of deep neural networks").

Given bounds on every pre-activation over the input domain, a neuron whose pre-activation never crosses
a kink computes an *affine* function of its layer's input on the whole domain: the piece ``s x + o``
of its activation's piece table that it stays on (:meth:`~relumilp.activations.Activation.stable_affine`;
e.g. 0 or ``alpha x`` below a ReLU's kink, ``x`` above it, the saturation level of a clip). Identity
activations are always stable.

:func:`prune` substitutes these affine expressions into every consumer. Constants fold into the next
layer's bias; affine pieces fold into the next affine layer, which then also reads the earlier nodes
directly (the IR's :class:`~relumilp.ir.AffineNode` accepts several inputs), so the function is exactly
the same on the domain. Only the unstable neurons -- the ones that need binary variables in the MILP --
remain as activation neurons. Neurons whose outgoing weights are all exactly zero after the
substitution are removed as well (repeatedly, from the output backwards). A network whose neurons are
all stable becomes a single affine map of the input.

The bounds must be valid for the domain the pruned network will be used on; tighter bounds (symbolic,
LP) prune more. Interval bounds of the pruned network are never looser than those of the original
(composed affine maps have tighter interval images), so re-computing them may expose more stable
neurons: prune again until nothing changes if you like.
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp

from . import matrices

from .bounds.base import Bounds, phases
from .domain import InputDomain
from .errors import InvalidNetworkError, RelumilpError
from .ir import ActivationNode, AffineNode, InputNode, Network

__all__ = ["prune", "prune_module"]


def _classify(node: ActivationNode, lower: np.ndarray, upper: np.ndarray, tol: float):
    """Phases of ``node``; with ``tol > 0`` bounds within ``tol`` of a kink are snapped onto it."""
    lower = np.asarray(lower, dtype=np.float64)
    upper = np.asarray(upper, dtype=np.float64)
    if tol > 0.0:
        lower, upper = node.activation.snapped(lower, upper, tol)
    return phases(node, lower, upper)


class _Kept:
    """An activation node that keeps some (unstable) neurons, with its pre-activation as an affine rep."""

    def __init__(self, node: ActivationNode, index: np.ndarray, coef: dict, const: np.ndarray):
        self.node = node
        self.index = index  # neuron indices of the original node
        self.coef = coef  # {kept node name: (len(index), kept size)}
        self.const = const


def prune(net: Network, bounds: Bounds, tol: float = 0.0) -> Network:
    """A smaller network equal to ``net`` wherever the pre-activations satisfy ``bounds``.

    Parameters
    ----------
    net:
        The network (any DAG of the IR).
    bounds:
        Bounds with (at least) the input bounds of every activation node, e.g. from
        :func:`relumilp.bounds.interval.interval_bounds` over the input domain.
    tol:
        0 (default) is exact. With ``tol > 0`` a neuron whose bound lies within ``tol`` of a kink is
        treated as stable: each such neuron then changes by at most ``tol`` (lossy pruning).

    Returns
    -------
    Network
        A network with the same input/output shapes whose activation nodes hold only unstable neurons
        with a nonzero outgoing weight. Affine nodes may read several earlier nodes.
    """
    if not (np.isfinite(tol) and tol >= 0.0):
        raise RelumilpError(f"tol must be finite and >= 0, got {tol}")
    input_name = net.input.name
    n_in = net.input_size
    # rep[name] = (coef, const): node value = sum_k coef[k] @ value(kept k) + const
    # (coefficient matrices are dense or sparse, as the weights they come from: relumilp.matrices)
    reps: dict[str, tuple[dict[str, np.ndarray], np.ndarray]] = {
        input_name: ({input_name: matrices.identity(n_in)}, np.zeros(n_in))}
    kept: dict[str, _Kept] = {}
    for node in net.order[1:]:
        if isinstance(node, AffineNode):
            coef: dict[str, np.ndarray] = {}
            const = np.array(node.bias, dtype=np.float64)
            for source, w in zip(node.inputs, node.weights):
                src_coef, src_const = reps[source]
                const = const + w @ src_const
                for k, a in src_coef.items():
                    coef[k] = matrices.tidy(coef[k] + w @ a if k in coef else w @ a)
            reps[node.name] = (coef, const)
            continue
        source = node.inputs[0]
        if source not in bounds.lower or source not in bounds.upper:
            raise InvalidNetworkError(f"the bounds have no entry for {source!r}, the input of activation {node.name!r}")
        lower, upper = bounds[source]
        if np.shape(lower) != (node.size,) or np.shape(upper) != (node.size,):
            raise InvalidNetworkError(f"bounds of {source!r} do not have {node.size} entries")
        ph = _classify(node, lower, upper, tol)
        unstable = ph.unstable
        pre_coef, pre_const = reps[source]
        # slope and offset of the affine piece of each stable neuron (unstable rows get 0, then a unit)
        slope, offset = node.activation.stable_affine(ph)
        coef = {k: matrices.scale(a, rows=slope) for k, a in pre_coef.items()}
        const = slope * pre_const + offset
        index = np.flatnonzero(unstable)
        if index.size:
            kept[node.name] = _Kept(node, index, {k: a[index] for k, a in pre_coef.items()}, pre_const[index])
            coef[node.name] = sp.csr_array((np.ones(index.size), (index, np.arange(index.size))),
                                           shape=(node.size, index.size))
        reps[node.name] = (coef, const)

    out_coef, out_const = reps[net.output]
    out_node = net[net.output]

    # Backward pass: keep only components of kept nodes that some consumer reads with a nonzero weight.
    used = {input_name: np.ones(n_in, dtype=bool)}
    used.update({name: np.zeros(k.index.size, dtype=bool) for name, k in kept.items()})

    def mark(coef: dict[str, np.ndarray], rows=slice(None)) -> None:
        for k, a in coef.items():
            if k != input_name:
                used[k] |= matrices.nonzero_columns(a[rows])

    mark(out_coef)
    output_is_activation = out_node.name in kept and np.array_equal(kept[out_node.name].index, np.arange(out_node.size))
    output_is_activation = output_is_activation and _is_identity(out_coef, out_const, out_node.name)
    if output_is_activation:
        used[out_node.name][:] = True
    for name in reversed(list(kept)):
        mark(kept[name].coef, used[name])

    # Materialise the new nodes in topological order.
    consumers = {name: list(net.graph.successors(name)) for name in net.graph}
    taken: set[str] = {input_name}
    new_name = {input_name: input_name}

    def fresh(preferred: str) -> str:
        name, i = preferred, 1
        while name in taken:
            name, i = f"{preferred}_{i}", i + 1
        taken.add(name)
        return name

    def affine(name: str, coef: dict[str, np.ndarray], const: np.ndarray, rows=slice(None)) -> AffineNode:
        inputs, weights = [], []
        for k in [input_name, *kept]:
            if k not in coef or not used[k].any():
                continue
            a = coef[k][rows][:, np.flatnonzero(used[k])]
            if matrices.nonzeros(a):
                inputs.append(new_name[k])
                weights.append(matrices.tidy(a))
        bias = np.array(const[rows], dtype=np.float64)
        if not inputs:  # a constant: the IR needs the output to read the input
            inputs, weights = [input_name], [matrices.zeros(bias.size, n_in)]
        return AffineNode(name, bias.size, tuple(inputs), tuple(weights), bias)

    nodes: list = [InputNode(input_name, n_in)]
    for name, k in kept.items():
        keep = used[name]
        if not keep.any():
            continue
        source = net[k.node.inputs[0]]
        own = isinstance(source, AffineNode) and consumers[source.name] == [name] and source.name != net.output
        pre_name = fresh(source.name if own else f"{name}_pre")
        nodes.append(affine(pre_name, k.coef, k.const, keep))
        act_name = name if (output_is_activation or name != net.output) else f"{name}_unstable"
        new_name[name] = fresh(act_name)
        node = k.node
        nodes.append(ActivationNode(new_name[name], int(keep.sum()), (pre_name,), node.activation))
    if output_is_activation:
        output = new_name[net.output]
    else:
        output = fresh(net.output)
        nodes.append(affine(output, out_coef, out_const))
    # the pruned network equals net only where the bounds hold: on the domain they were computed over (its
    # box and rows), within the domain net itself was valid on
    lower, upper = (np.asarray(v, dtype=np.float64) for v in bounds[input_name])
    rows = [(d.A, d.b) for d in (net.valid_domain, bounds.domain) if d is not None and d.A is not None]
    if net.valid_domain is not None:
        lower, upper = np.maximum(lower, net.valid_domain.lower), np.minimum(upper, net.valid_domain.upper)
    valid = InputDomain(lower, upper, *((np.vstack([A for A, _ in rows]), np.concatenate([b for _, b in rows]))
                                        if rows else (None, None)))
    return Network(nodes, output, input_shape=net.input_shape, output_shape=net.output_shape, name=net.name,
                   valid_domain=valid)


def _is_identity(coef: dict[str, np.ndarray], const: np.ndarray, name: str) -> bool:
    """True when the rep is exactly the value of kept node ``name`` (no other term, no constant)."""
    if set(coef) - {name} and any(matrices.nonzeros(a) for k, a in coef.items() if k != name):
        return False
    a = coef.get(name)
    return a is not None and matrices.is_identity(a) and not np.any(const != 0.0)


def prune_module(model, lower, upper=None, tol: float = 0.0, repeat: bool = True) -> Network:
    """Convert a torch ``nn.Sequential`` with :func:`relumilp.frontends.load_network`, bound it with
    interval arithmetic over the box ``[lower, upper]`` (or an :class:`~relumilp.domain.InputDomain`
    passed as ``lower``), and :func:`prune` it.

    With ``repeat`` (default) the pruned network is bounded and pruned again until no neuron is removed
    (its folded layers have tighter interval bounds, see the module docstring); with ``tol > 0`` each
    round may add its own (bounded) error.
    """
    from .bounds.interval import interval_bounds
    from .frontends import load_network

    net = load_network(model)
    if isinstance(lower, InputDomain):
        domain = lower
    else:
        if upper is None:
            raise RelumilpError("prune_module needs both lower and upper input bounds (or an InputDomain)")
        domain = InputDomain.box(lower, upper, size=net.input_size)
    pruned = prune(net, interval_bounds(net, domain), tol)
    while repeat and sum(pruned.hidden_sizes) < sum(net.hidden_sizes):
        net, pruned = pruned, prune(pruned, interval_bounds(pruned, domain), tol)
    return pruned
