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
from ..matrices import rmatmul, signed_parts
from .base import Bounds, intersect
from .rounding import margin_of, sum_terms


def affine_image(inputs, weights, bias, lower: dict, upper: dict, outward: bool = True, parts=()):
    """The interval image of ``y = sum_i W_i x_i + b``, for numpy arrays or torch tensors (batched or not).

    ``W+ = (W + |W|) / 2`` and ``W- = (W - |W|) / 2`` are exact in floating point, so one expression
    serves both array libraries; weights may be dense, scipy CSR or :class:`~relumilp.matrices.TorchSparse`
    (the products go through :func:`~relumilp.matrices.rmatmul`, never densifying). With ``outward``, each
    side is widened by :func:`~relumilp.bounds.rounding.margin_of` of the magnitudes of *its own* terms
    (``W+ l`` and ``W- u`` for the lower bound), covering the rounding of that sum and of the forward pass's:
    the forward pass at a computed input ``x`` gives at least ``sum_i (t_i - γ |t_i|) + b - γ |b|`` with
    ``t_i = W_i x_i`` (Higham), and ``t - γ |t|`` increases with ``t``, so each term's worst case is at the
    end of the box that minimises ``t_i``. So the result contains every float64 forward value whenever the
    input bounds do, and a sum of nonnegative terms (a softmax's ``1 + sum exp``) keeps a lower bound near
    its true one however large its upper bound; the differentiable training bounds pass ``outward=False``.
    ``parts``: the weights' :func:`signed_parts`, when the caller keeps them (constant weights bounded many
    times: branch and bound's nodes).
    """
    lo = hi = bias
    size_lo = size_hi = abs(bias)
    for k, (source, w) in enumerate(zip(inputs, weights)):
        pos, neg = parts[k] if parts else signed_parts(w)
        l, u = lower[source], upper[source]
        lp, un, up, ln = rmatmul(l, pos), rmatmul(u, neg), rmatmul(u, pos), rmatmul(l, neg)
        lo, hi = lo + lp + un, hi + up + ln
        if not outward:
            continue
        # the magnitudes of the terms of each side's own sum (|W-| = -W-); for a nonnegative input (every
        # ReLU's output) they are the products above (rounded down by at most γ relative, which gamma's
        # padding covers)
        if not bool((l >= 0).all()):
            l, u = abs(l), abs(u)
            lp, un, up, ln = rmatmul(l, pos), rmatmul(u, neg), rmatmul(u, pos), rmatmul(l, neg)
        size_lo, size_hi = size_lo + lp - un, size_hi + up - ln
    if not outward:
        return lo, hi
    n = sum_terms(weights)
    return outward_pair(lo - margin_of(size_lo, n), hi + margin_of(size_hi, n))


def outward_pair(lo, hi):
    """``lo`` and ``hi`` moved one unit in the last place outward (numpy or torch)."""
    if isinstance(lo, np.ndarray) or np.isscalar(lo):
        return np.nextafter(lo, -np.inf), np.nextafter(hi, np.inf)
    return lo.nextafter(lo.new_tensor(-np.inf)), hi.nextafter(hi.new_tensor(np.inf))


def affine_interval(node: AffineNode, lower: dict, upper: dict) -> tuple[np.ndarray, np.ndarray]:
    """Interval image of an affine IR node given the bounds of its inputs, rounded outward."""
    return affine_image(node.inputs, node.weights, node.bias, lower, upper)


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
        lower[net.input.name], upper[net.input.name] = intersect(
            lower[net.input.name], upper[net.input.name], start.lower[net.input.name], start.upper[net.input.name])
    for node in net.order[1:]:
        lo, hi = propagate_node(node, lower, upper)
        if start is not None and node.name in start.lower:
            lo, hi = intersect(lo, hi, start.lower[node.name], start.upper[node.name])
        lower[node.name], upper[node.name] = lo, hi
    return Bounds(lower, upper, "interval")
