"""Interval arithmetic: the cheapest sound bounds, one rule per operator.

Affine ``y = W x + b``: ``lower_y = W+ l + W- u + b``, ``upper_y = W+ u + W- l + b`` (``W+ = max(W, 0)``,
``W- = min(W, 0)``), widened outward by the rounding of these sums and of the forward pass's
(:mod:`.rounding`). Element-wise piecewise-linear activation ``f``: the extremes of ``f`` over
``[l, u]`` lie at ``l``, ``u`` or a breakpoint inside, and rounding is monotone, so evaluating ``f``
there in float64 bounds the float64 forward value exactly. Every bound works on one box ``(size,)`` or
a batch of boxes ``(B, size)``.
"""

from __future__ import annotations

import numpy as np

from ..domain import InputDomain
from ..ir import AffineNode, Network
from .base import Bounds
from .rounding import magnitude, sum_margin


def affine_interval(node: AffineNode, lower: dict, upper: dict) -> tuple[np.ndarray, np.ndarray]:
    """Interval image of an affine node given the bounds of its inputs, rounded outward.

    The margin :func:`~relumilp.bounds.rounding.sum_margin` covers the rounding of these sums and of
    the forward pass's own, so the result contains every float64 forward value whenever the input
    bounds do.
    """
    lo = node.bias.copy()
    hi = node.bias.copy()
    for source, w in zip(node.inputs, node.weights):
        pos, neg = np.maximum(w, 0.0), np.minimum(w, 0.0)
        lo = lo + lower[source] @ pos.T + upper[source] @ neg.T
        hi = hi + upper[source] @ pos.T + lower[source] @ neg.T
    margin = sum_margin(node, {s: magnitude(lower[s], upper[s]) for s in node.inputs})
    return np.nextafter(lo - margin, -np.inf), np.nextafter(hi + margin, np.inf)


def propagate_node(node, lower: dict, upper: dict) -> tuple[np.ndarray, np.ndarray]:
    """Interval bounds of one non-input node from the bounds already known for its inputs."""
    if isinstance(node, AffineNode):
        return affine_interval(node, lower, upper)
    return node.activation.interval(lower[node.inputs[0]], upper[node.inputs[0]])


def interval_bounds(net: Network, domain: InputDomain, start: Bounds | None = None) -> Bounds:
    """Interval bounds of every node over the box of ``domain``.

    With ``start``, each node's interval is intersected with the bounds already there (so tighter
    bounds from another method are kept and propagated forward).
    """
    domain.check_size(net.input_size)
    lower = {net.input.name: domain.lower.copy()}
    upper = {net.input.name: domain.upper.copy()}
    if start is not None:
        lower[net.input.name] = np.maximum(lower[net.input.name], start.lower[net.input.name])
        upper[net.input.name] = np.minimum(upper[net.input.name], start.upper[net.input.name])
    for node in net.order[1:]:
        lo, hi = propagate_node(node, lower, upper)
        if start is not None and node.name in start.lower:
            lo = np.maximum(lo, start.lower[node.name])
            hi = np.minimum(hi, start.upper[node.name])
        lower[node.name], upper[node.name] = lo, hi
    return Bounds(lower, upper, "interval")
