r"""A-posteriori ReLU scaling: rescale hidden neurons so the big-M coefficients are well conditioned.

ReLU, LeakyReLU and identity are positively homogeneous: ``f(a x) = a f(x)`` for ``a > 0``. Multiplying
the incoming weights and bias of a hidden neuron by ``a`` and dividing its outgoing weights by ``a``
therefore leaves the network function unchanged, while its pre-activation bounds become ``a L`` and
``a U`` -- the big-M coefficients of the compiled MILP scale with them. An activation with a kink or
offset away from 0 (a clip) needs its kinks scaled too (``min(max(a x, a lo), a hi) = a clip(x, lo, hi)``,
:meth:`~relumilp.activations.Activation.rescaled`); the IR has one activation object per node, so such
layers get **one common factor per layer**.

Every factor is rounded to a power of two. Multiplying by a power of two is exact in binary floating
point (barring overflow/underflow), so the scaled network computes *bitwise* the same values as the
original times the factors, the bounds scale exactly (no recomputation, no loss of soundness), and
the output is bitwise unchanged. The rounding costs at most a factor ``sqrt(2)`` against the ideal
factor, which is irrelevant for conditioning.

Rules (``M_j = max(|L_j|, |U_j|)`` of the pre-activation bounds):

* ``"unit"`` -- ``a_j = 1 / M_j``: every neuron's bounds fit ``[-1, 1]`` with one end at +-1;
* ``"geomean"`` -- ``a_j = 1 / sqrt(|L_j| U_j)`` for unstable neurons (the two big-M coefficients
  ``-a L`` and ``a U`` become reciprocal, centred on 1 in log scale), ``1 / M_j`` for stable ones;
* ``"layer"`` -- one factor per node, ``1 / geometric mean of M_j`` (coefficients between neurons of
  one layer keep their ratios);
* ``"none"`` -- no scaling at all (for comparisons).

Layers of non-homogeneous activations always use the ``"layer"`` factor. Whether any of this speeds up HiGHS is an
empirical question: see ``benchmarks/bounds_benchmark.py``.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np

from . import matrices
from .bounds.base import Bounds, big_m_values, phases
from .errors import RelumilpError
from .formulation.numerics import power_of_two
from .ir import ActivationNode, AffineNode, InputNode, Network

#: scale factors are powers of two between 2^-60 and 2^60
FACTOR_EXPONENT_LIMIT = 60

RULES = ("unit", "geomean", "layer", "none")


def scale_factors(net: Network, bounds: Bounds, rule: str = "unit") -> dict[str, np.ndarray]:
    """``{affine node: factors}`` for the affine nodes that feed a ReLU-type activation (powers of two)."""
    if rule not in RULES:
        raise RelumilpError(f"unknown scaling rule {rule!r}; choose one of {', '.join(RULES)}")
    factors: dict[str, np.ndarray] = {}
    if rule == "none":
        return factors
    for node in net.affines:
        if node.name == net.output:
            continue
        consumers = [net[name] for name in net.graph.successors(node.name)]
        acts = [c for c in consumers if isinstance(c, ActivationNode) and c.activation.breakpoints]
        if not acts:
            continue
        # the factor travels through every chain of activation nodes after this one (act -> act): all of
        # them must accept it (no smooth kind: it has no rescaled form), and none may be the network output
        chain = _activation_chain(net, node.name)
        if any(a.name == net.output or getattr(a.activation, "smooth", False) for a in chain):
            continue
        lower, upper = bounds[node.name]
        M = np.maximum(np.abs(lower), np.abs(upper))
        if rule == "unit":
            a = 1.0 / M
        elif rule == "geomean":
            a = 1.0 / M
            unstable = np.zeros(node.size, dtype=bool)
            for act in acts:
                unstable |= phases(act, lower, upper).unstable
            a[unstable] = 1.0 / np.sqrt(np.abs(lower[unstable]) * np.abs(upper[unstable]))
        else:
            a = np.full(node.size, _layer_factor(M))
        if not all(act.activation.homogeneous for act in chain):
            a = np.full(node.size, _layer_factor(M))
        factors[node.name] = power_of_two(a, FACTOR_EXPONENT_LIMIT)
    return factors


def _activation_chain(net: Network, name: str) -> list[ActivationNode]:
    """The activation nodes that carry node ``name``'s scale: its activation consumers, theirs, and so on."""
    chain, stack, seen = [], [name], set()
    while stack:
        for successor in net.graph.successors(stack.pop()):
            node = net[successor]
            if isinstance(node, ActivationNode) and successor not in seen:
                seen.add(successor)
                chain.append(node)
                stack.append(successor)
    return chain


def _layer_factor(M: np.ndarray) -> float:
    positive = M[np.isfinite(M) & (M > 0)]
    return 1.0 if positive.size == 0 else float(np.exp(-np.mean(np.log(positive))))


def scale_network(net: Network, bounds: Bounds, rule: str = "unit") -> tuple[Network, Bounds]:
    """An equivalent network with rescaled hidden neurons, and its bounds (scaled exactly).

    Input and output are untouched, so solutions of the scaled MILP are solutions of the original.
    """
    if rule is True:
        rule = "unit"
    factors = scale_factors(net, bounds, rule)
    scale: dict[str, np.ndarray] = {}  # factor of every node's output relative to the original
    new_nodes = []
    for node in net.order:
        if isinstance(node, InputNode):
            scale[node.name] = np.ones(node.size)
            continue
        if isinstance(node, AffineNode):
            a = factors.get(node.name, np.ones(node.size))
            weights = tuple(matrices.scale(w, a, scale[src], divide_cols=True) for src, w in zip(node.inputs, node.weights))
            new_nodes.append(replace(node, weights=weights, bias=a * node.bias))
            scale[node.name] = a
        else:
            a = scale[node.inputs[0]]
            if not node.activation.homogeneous and np.any(a != 1.0):
                if np.any(a != a[0]):  # pragma: no cover - factors of such layers are uniform
                    raise RelumilpError(f"activation {node.name!r} needs one common scale factor")
                new_nodes.append(replace(node, activation=node.activation.rescaled(a[0])))
            scale[node.name] = a
    if np.any(scale[net.output] != 1.0):  # pragma: no cover - the output is never scaled
        raise RelumilpError("internal error: scaling changed the network output")
    scaled = net.replace(new_nodes)
    lower = {name: scale[name] * bounds.lower[name] for name in bounds.lower}
    upper = {name: scale[name] * bounds.upper[name] for name in bounds.upper}
    return scaled, Bounds(lower, upper, bounds.method, dict(bounds.times))


def big_m_stats(net: Network, bounds: Bounds) -> dict:
    """Summary of the big-M magnitudes of the unstable neurons (:func:`relumilp.bounds.base.big_m_values`)
    and the weight range.

    ``coef_range`` is ``max |w| / min |w|`` over nonzero weights and big-M values (the spread HiGHS sees).
    """
    ms = list(big_m_values(net, bounds).values())
    m = np.abs(np.concatenate(ms)) if ms else np.zeros(0)
    m = m[m > 0]
    weights = np.concatenate([matrices.abs_values(w) for node in net.affines for w in node.weights])
    weights = weights[weights > 0]
    values = np.concatenate([m, weights])
    return {
        "count": int(m.size),
        "mean": float(m.mean()) if m.size else 0.0,
        "median": float(np.median(m)) if m.size else 0.0,
        "max": float(m.max()) if m.size else 0.0,
        "min": float(m.min()) if m.size else 0.0,
        "coef_range": float(values.max() / values.min()) if values.size else 1.0,
    }


__all__ = ["RULES", "big_m_stats", "scale_factors", "scale_network"]
