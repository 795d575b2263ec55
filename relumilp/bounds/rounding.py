r"""Outward rounding: bounds that hold for the float64 forward pass itself, with no tolerance.

A bound method reasons about the network in exact arithmetic, but a certificate is checked against
:meth:`relumilp.Network.forward`, which rounds. Two errors must therefore be covered:

* **the bound computation's own rounding** -- interval arithmetic rounds its sums (each side widened by
  :func:`margin_of` of its own terms, :func:`relumilp.bounds.interval.affine_image`),
  back-substitution rounds its products (the symbolic margin of :mod:`.symbolic`), LP bounds are made
  safe by evaluating weak duality ourselves (:mod:`.obbt`);
* **the forward pass's rounding** -- an affine node ``t = W x + b`` computed in float64 from computed
  inputs ``x~`` differs from the exact value by at most ``γ_N (|W| |x~| + |b|)`` (Higham's bound for a
  sum of ``N`` products in any order, fused multiply-adds included; ``γ_N = N u / (1 - N u)``,
  ``u = 2^-53``), and errors already in ``x~`` pass through ``|W|``. Activations are 1-Lipschitz
  with Lipschitz constant ``max |slope|`` over their pieces, and a slope other than 0 or 1 is a product
  ``s x`` that adds one rounding (LeakyReLU's ``α x``), an offset on a sloped piece one more (hard
  sigmoid's ``α x + β``; :meth:`~relumilp.activations.Activation.rounding_error`); smooth kinds bound
  their slope on the interval and add their evaluation error
  (:meth:`relumilp.activations.Activation.forward_error`).

:func:`forward_error_step` propagates that envelope ``δ`` through the graph from the magnitudes the
bounds allow, and :func:`widen` moves every bound outward by ``2 δ`` (the forward pass's error and a
computation of the same structure in the bound method), then by one more unit in the last place.
Interval arithmetic needs no envelope: each side of an affine image is widened by both its own and the
forward pass's rounding of that side's terms (:func:`relumilp.bounds.interval.affine_image`), so its bounds
contain the computed values inductively. For networks with smooth kinds, whose envelopes can be unbounded
near a domain edge, :func:`widen` therefore also intersects each widened bound with that interval image.

All functions work on single bound vectors ``(size,)`` and on batches ``(B, size)``.
"""

from __future__ import annotations

import numpy as np

from ..ir import ActivationNode, AffineNode, Network
from ..matrices import max_row_terms, rmatmul

#: unit round-off of float64
UNIT = 2.0**-53
#: smallest positive subnormal: covers products that underflow
TINY = 5e-324


def gamma(n: int) -> float:
    """Higham's ``γ_n = n u / (1 - n u)``, padded a little for the rounding of this very formula."""
    nu = n * UNIT
    return nu / (1.0 - nu) * (1.0 + 1e-10)


def terms(node: AffineNode) -> int:
    """How many roundings one output of ``node`` accumulates: one per product and addition."""
    return sum_terms(node.weights)


def sum_terms(weights) -> int:
    """The roundings of ``sum_i W_i x_i + b`` per output: one per product and addition (a sparse
    weight's products are only its stored nonzeros: at most its longest row's count)."""
    return sum(max_row_terms(w) for w in weights) + len(weights) + 1


def margin_of(total, n: int, count: int = 2):
    """``count * γ_n * total + n * TINY``: the rounding of ``count`` sums of ``n`` terms whose magnitudes
    add up to ``total`` (numpy or torch), underflow included."""
    return count * gamma(n) * total + n * TINY


def sum_margin(node: AffineNode, magnitude: dict, count: int = 1) -> np.ndarray:
    """``count * γ_N * (|b| + Σ_i |W_i| m_i)`` for input magnitudes ``m_i`` (batched or not): the forward pass's
    rounding of the node's sum (``count = 1``)."""
    total = np.abs(node.bias) + sum(rmatmul(magnitude[s], abs(w)) for s, w in zip(node.inputs, node.weights))
    return margin_of(total, terms(node), count)


def magnitude(lower: np.ndarray, upper: np.ndarray) -> np.ndarray:
    """The largest absolute value a bound pair allows."""
    return np.maximum(np.abs(lower), np.abs(upper))


def forward_error_step(node, lower: dict, upper: dict, error: dict) -> np.ndarray:
    """How far the float64 forward value of ``node`` can be from its exact value (the envelope ``δ``).

    From the predecessors' bounds (which must contain their computed values) and their envelopes.
    """
    if isinstance(node, AffineNode):
        mags = {s: magnitude(lower[s], upper[s]) for s in node.inputs}
        with np.errstate(invalid="ignore"):  # inf * 0: made inf below
            propagated = sum(rmatmul(error[s], abs(w)) for s, w in zip(node.inputs, node.weights))
            step = sum_margin(node, mags) + propagated
    else:
        assert isinstance(node, ActivationNode)
        source = node.inputs[0]
        step = node.activation.forward_error(error[source], lower[source], upper[source])
    # an unbounded envelope (a smooth kind's slope near its domain edge) times a zero weight is NaN: unbounded
    return np.where(np.isnan(step), np.inf, step)


def widen(net: Network, lower: dict, upper: dict) -> tuple[dict, dict]:
    """Bounds on exact values made to hold for the float64 forward pass (see the module docstring).

    Processes the nodes in topological order so that each envelope is computed from predecessors'
    bounds that already contain their computed values. Returns new dicts; nodes missing from
    ``lower`` (e.g. those after a sub-network's last node) are skipped.
    """
    from .base import intersect
    from .interval import propagate_node

    # Smooth kinds' envelopes grow with their slopes, which blow up near a domain edge (1 / x, sqrt near 0)
    # or with huge values (exp): there the widened bound can be far looser than the interval image of the
    # widened predecessors, which also contains every computed value (its own margins cover the forward
    # pass), so the two are intersected. Piecewise-linear networks never need it.
    tighten = net.has_smooth
    new_lower = {net.input.name: lower[net.input.name]}
    new_upper = {net.input.name: upper[net.input.name]}
    error = {net.input.name: np.zeros_like(lower[net.input.name])}
    for node in net.order[1:]:
        if node.name not in lower:
            continue
        error[node.name] = step = forward_error_step(node, new_lower, new_upper, error)
        new_lower[node.name] = np.nextafter(lower[node.name] - 2.0 * step, -np.inf)
        new_upper[node.name] = np.nextafter(upper[node.name] + 2.0 * step, np.inf)
        if tighten:
            lo, hi = propagate_node(node, new_lower, new_upper)
            lo, hi = new_lower[node.name], new_upper[node.name] = intersect(new_lower[node.name], new_upper[node.name],
                                                                            lo, hi)
            # the exact and the computed value both lie in [lo, hi]: they differ by its width at most (an
            # infinite envelope after a kind's domain edge would otherwise leave later nodes interval bounds only)
            error[node.name] = np.minimum(step, np.nextafter((hi - lo) * (1.0 + 2.0**-51), np.inf))
    return new_lower, new_upper


def envelope(net: Network, lower: dict, upper: dict, target: str) -> np.ndarray:
    """``δ`` of node ``target``, from bounds that already contain the computed values of the nodes
    before it (only those are visited)."""
    error = {net.input.name: np.zeros_like(lower[net.input.name])}
    for node in net.order[1:]:
        error[node.name] = forward_error_step(node, lower, upper, error)
        if node.name == target:
            break
    return error[target]
