r"""Cones of influence: the part of a network one neuron depends on, as a network of its own.

A neuron of a convolutional layer reads a small window of the layer before, which reads a window of
the one before that: its *cone of influence* (receptive field) is a small part of the network. On
oval21 ``cifar_base`` a second-layer neuron reads 256 first-layer neurons, of which about 40 are
unstable, against 704 unstable in the whole first layer.

**Why the cone alone gives the neuron's bound.** Let ``K`` be the cone of neuron ``j`` of node ``t``:
for each node, the indices that ``t_j`` reads directly or through other nodes. The values of ``K``
are a function of the inputs in ``K`` alone, and the MILP (or LP) rows of a neuron outside ``K`` can
be satisfied for every input point (its bounds contain its value there). So the range of ``t_j`` over
the MILP of the whole network equals its range over the MILP of the network :func:`restrict`\ ed to
``K``, on a box domain. Rows ``A x <= b`` of the domain that read an input outside ``K`` are dropped
from the restricted domain: the restricted model is then a relaxation, and its bounds still hold.

MILP bound tightening over cones (:func:`relumilp.bounds.obbt.cone_bounds`) is therefore exact bound
tightening of convolutional layers at the cost of many small MILPs, as the "partial MILP" refinement
of the first layers in Singh et al., *Boosting Robustness Certification of Neural Networks*, ICLR 2019.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp

from .. import matrices
from ..domain import InputDomain
from ..ir import ActivationNode, AffineNode, InputNode, Network
from .base import Bounds, phases


@dataclass
class Cone:
    """The cone of neuron ``neuron`` of node ``node``: ``keep[name]`` are the (sorted) indices of each
    node it depends on (``node`` itself: ``[neuron]``); ``binaries`` counts its unstable neurons."""

    node: str
    neuron: int
    keep: dict[str, np.ndarray]
    binaries: int


def _reads(weight, rows: np.ndarray) -> np.ndarray:
    """The sorted columns that rows ``rows`` of ``weight`` read (a nonzero weight)."""
    if matrices.is_sparse(weight):
        return np.unique(sp.csr_array(weight)[rows].indices)
    return np.flatnonzero(np.any(np.asarray(weight)[rows] != 0.0, axis=0))


def cone(net: Network, node: str, neuron: int, bounds: Bounds | None = None, limit: int | None = None) -> Cone:
    """The cone of influence of neuron ``neuron`` of node ``node``; ``bounds`` (pre-activation bounds of
    the activations) give its count of unstable neurons (0 without). With ``limit``, the walk stops as
    soon as that count exceeds it: the returned cone is then incomplete, with ``binaries > limit``
    (a dense layer's cone is the whole network before it; no need to walk it all)."""
    keep: dict[str, np.ndarray] = {node: np.array([int(neuron)], dtype=np.int64)}

    def count(item) -> int:
        if bounds is None or not isinstance(item, ActivationNode):
            return 0
        lower, upper = bounds[item.inputs[0]]
        rows = keep[item.name]
        return phases(item, lower[rows], upper[rows]).num_binaries

    binaries = 0
    for item in reversed(net.order):  # every reader of a node comes later: its indices are final here
        rows = keep.get(item.name)
        if rows is None or isinstance(item, InputNode):
            continue
        binaries += count(item)
        if limit is not None and binaries > limit:
            return Cone(node, int(neuron), keep, binaries)
        for source, weight in zip(item.inputs, getattr(item, "weights", (None,))):
            read = rows if weight is None else _reads(weight, rows)
            if read.size:  # a source the rows give only zero weights is not read
                keep[source] = read if source not in keep else np.union1d(keep[source], read)
    # an activation keeps every index its input keeps (the input may also be read by another node,
    # e.g. a skip connection before the activation): its node in the restricted network has their size
    for item in net.activations:
        if item.name in keep:
            keep[item.name] = keep[item.inputs[0]]
    binaries = sum(count(item) for item in net.activations if item.name in keep)
    return Cone(node, int(neuron), keep, binaries)


def restrict(net: Network, cone: Cone, bounds: Bounds, domain: InputDomain):
    """``(network, bounds, domain)`` computing only the cone's neurons (node names kept; node ``cone.node``
    has one neuron), with the domain rows ``A x <= b`` that read only inputs of the cone; None when the
    neuron reads no input (a constant: its interval bounds are exact)."""
    keep = cone.keep
    if net.input.name not in keep:
        return None
    nodes = []
    for item in net.order:
        rows = keep.get(item.name)
        if rows is None:
            continue
        if isinstance(item, InputNode):
            nodes.append(InputNode(item.name, rows.size))
        elif isinstance(item, AffineNode):
            weights = tuple(
                matrices.tidy(sp.csr_array(w)[rows][:, keep[s]] if matrices.is_sparse(w)
                              else np.asarray(w)[np.ix_(rows, keep[s])])
                for s, w in zip(item.inputs, item.weights) if s in keep
            )
            inputs = tuple(s for s in item.inputs if s in keep)
            if not inputs:  # constant neurons in the cone: rare; the neuron keeps the bounds it has
                return None
            nodes.append(AffineNode(item.name, rows.size, inputs, weights, item.bias[rows]))
        else:
            assert isinstance(item, ActivationNode)
            nodes.append(ActivationNode(item.name, rows.size, item.inputs, item.activation))
    sub = Network(nodes, cone.node, name=f"{net.name}[{cone.node}:{cone.neuron}]")
    sub_bounds = Bounds({name: bounds.lower[name][keep[name]] for name in keep},
                        {name: bounds.upper[name][keep[name]] for name in keep}, bounds.method)
    inputs = keep[net.input.name]
    A = b = None
    if domain.A is not None:
        outside = np.ones(net.input_size, dtype=bool)
        outside[inputs] = False
        rows = ~np.any(domain.A[:, outside] != 0.0, axis=1)
        if rows.any():
            A, b = domain.A[rows][:, inputs], domain.b[rows]
    return sub, sub_bounds, InputDomain(domain.lower[inputs], domain.upper[inputs], A, b)
