"""The result of a bound pass: lower/upper bounds on every node's output, and neuron stability.

For an activation node, the bounds of its *input* node are the pre-activation bounds ``L <= x <= U``
that decide whether a neuron is stable (no binary variable) and give the big-M coefficients of the
unstable ones.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from ..activations import Phases
from ..choices import BOUND_METHODS as METHODS  # noqa: F401  (order of the methods; re-exported)
from ..domain import InputDomain
from ..ir import ActivationNode, Network


@dataclass
class Bounds:
    """Per-node output bounds of a network over an input domain.

    Attributes
    ----------
    lower, upper:
        ``{node name: array}`` for every node (input, affine and activation).
    method:
        The strongest method that produced them (``interval``, ``symbolic``, ``alpha``, ``lp`` or ``milp``).
    times:
        Seconds spent per method.
    complete:
        False when a time limit stopped the pass early: the bounds are sound, but some neurons kept
        the bounds of a cheaper method.
    domain:
        The input domain they hold on (set by :func:`relumilp.bounds.compute_bounds`; LP and MILP bounds
        rely on its rows ``A x <= b``), or None.
    """

    lower: dict[str, np.ndarray]
    upper: dict[str, np.ndarray]
    method: str = "interval"
    times: dict[str, float] = field(default_factory=dict)
    complete: bool = True
    domain: InputDomain | None = None

    def __getitem__(self, name: str) -> tuple[np.ndarray, np.ndarray]:
        return self.lower[name], self.upper[name]

    def pre_activation(self, net: Network, node: ActivationNode) -> tuple[np.ndarray, np.ndarray]:
        """Bounds of the input of activation ``node``."""
        return self[node.inputs[0]]

    def copy(self) -> "Bounds":
        return Bounds(
            {k: v.copy() for k, v in self.lower.items()},
            {k: v.copy() for k, v in self.upper.items()},
            self.method,
            dict(self.times),
            self.complete,
            self.domain,
        )

    def check_sound(self, net: Network, samples: np.ndarray, tol: float = 1e-9) -> None:
        """Raise if any node value of the sampled inputs falls outside its bounds (a test oracle)."""
        values = net.forward_all(samples)
        for name, value in values.items():
            lo, hi = self.lower[name], self.upper[name]
            excess = max(float(np.max(lo - value)), float(np.max(value - hi)))
            if excess > tol * (1.0 + float(np.max(np.abs(value)))):
                raise AssertionError(f"bounds of {name!r} ({self.method}) violated by {excess:.3g}")

    def to_json(self, net: Network) -> dict:
        """``{"method": ..., "layers": [{"name", "lower", "upper"}, ...]}`` over the affine nodes.

        For a sequential MLP, entry k holds the pre-activation bounds of the k-th affine layer and the
        last entry is the network output.
        """
        layers = [
            {"name": node.name, "lower": self.lower[node.name].tolist(), "upper": self.upper[node.name].tolist()}
            for node in net.affines
        ]
        return {"method": self.method, "complete": self.complete, "times": self.times, "layers": layers}


def intersect(lower, upper, new_lower, new_upper):
    """``[max(lower, new_lower), min(upper, new_upper)]``, keeping the looser bound where that would cross.

    Two sound bounds of the same values can only cross by round-off (or on an empty set); the union is
    then the safe choice. Works on numpy arrays and, element-wise and differentiably, on torch tensors
    (the bound engine); returns new arrays.
    """
    xp = np if isinstance(lower, np.ndarray) or isinstance(new_lower, np.ndarray) else _torch()
    lo, hi = xp.maximum(lower, new_lower), xp.minimum(upper, new_upper)
    crossed = lo > hi
    return (xp.where(crossed, xp.minimum(lower, new_lower), lo), xp.where(crossed, xp.maximum(upper, new_upper), hi))


def _torch():
    import torch  # only when torch tensors are passed: the CLI starts without torch

    return torch


def phases(node: ActivationNode, lower: np.ndarray, upper: np.ndarray) -> Phases:
    """Classify the neurons of ``node`` from its pre-activation bounds ``lower <= x <= upper``
    (:meth:`relumilp.activations.Activation.phases`)."""
    return node.activation.phases(lower, upper, node.name)


def big_m_values(net: Network, bounds: Bounds) -> dict[str, np.ndarray]:
    """Per activation layer, the big-M magnitude of each unstable neuron: ``max(b - L, U - b)`` over the
    kinks ``b`` it can cross, the pre-activation range on the far side of a kink. For ReLU these are the
    big-M coefficients ``-L`` and ``U`` themselves; the rows of other kinds carry them times the slope
    change at the kink (LeakyReLU: ``(1 - alpha) L``, ``(1 - alpha) U``) or cut at the next kink (clip:
    ``a - L``, ``U - b``, ``b - a``), so there this is a measure of the bounds, not a matrix entry.

    The one definition behind :meth:`relumilp.pipeline.CompiledNetwork.big_m`, the report's big-M
    statistics and :func:`relumilp.scaling.big_m_stats`.
    """
    out = {}
    for node in net.activations:
        lower, upper = bounds.pre_activation(net, node)
        ph = phases(node, lower, upper)
        size = np.zeros(node.size)
        for k, b in enumerate(node.activation.breakpoints):
            crossing = ph.crosses[k]
            size[crossing] = np.maximum(size[crossing], np.maximum(b - lower[crossing], upper[crossing] - b))
        out[node.name] = size[ph.unstable]
    return out


def stability_counts(net: Network, bounds: Bounds) -> list[dict]:
    """Per activation layer: ``name``, ``size``, ``stable_active``, ``stable_inactive``, ``unstable``."""
    rows = []
    for node in net.activations:
        ph = phases(node, *bounds.pre_activation(net, node))
        rows.append(
            {
                "name": node.name,
                "size": node.size,
                "stable_active": int(ph.stable_active.sum()),
                "stable_inactive": int(ph.stable_inactive.sum()),
                "unstable": int(ph.unstable.sum()),
                "binaries": ph.num_binaries,
            }
        )
    return rows
