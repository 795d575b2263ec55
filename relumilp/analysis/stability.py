"""Stable neurons: proven from bounds, and an empirical census from samples shown beside them.

A neuron is *stable* over the input domain when its pre-activation bounds keep it on one piece of its
activation: stably active (identity piece) or stably inactive (any other piece: 0, ``alpha x``, a
saturation level). Stable
neurons need no binary variable. How many are stable depends on the bound method (``interval`` <
``symbolic`` < ``lp`` < ``milp``).

The **empirical census** evaluates the network at random domain points and counts the neurons never
seen on more than one piece. It is only an *upper estimate* of stability -- a neuron that switches in a
region no sample hits is counted as stable -- never a proof. Every proven-stable neuron is also
empirically stable; the gap between the two columns is what tighter bounds could still win.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field

import numpy as np

from ..bounds import Bounds, compute_bounds, stability_counts
from ..domain import InputDomain
from ..ir import Network


@dataclass
class LayerStability:
    """Stability of one activation layer: proven counts (from bounds) and the empirical census."""

    name: str
    size: int
    kind: str
    stable_active: int
    stable_inactive: int
    unstable: int
    binaries: int
    #: EMPIRICAL: neurons seen on one piece only over the samples (an upper estimate, not a proof)
    empirical_stable: int | None = None
    empirical_always_active: int | None = None
    empirical_always_inactive: int | None = None

    @property
    def stable(self) -> int:
        return self.stable_active + self.stable_inactive

    @property
    def stable_fraction(self) -> float:
        return self.stable / self.size if self.size else 1.0

    @property
    def empirical_stable_fraction(self) -> float | None:
        return None if self.empirical_stable is None else (self.empirical_stable / self.size if self.size else 1.0)

    def to_json(self) -> dict:
        data = asdict(self)
        data["stable_fraction"] = round(self.stable_fraction, 6)
        frac = self.empirical_stable_fraction
        data["empirical_stable_fraction"] = None if frac is None else round(frac, 6)
        return data


@dataclass
class StabilityReport:
    """Per-layer stability over a domain, with the bound method and the census sample size."""

    layers: list[LayerStability]
    bound_method: str
    samples: int = 0
    times: dict[str, float] = field(default_factory=dict)

    @property
    def neurons(self) -> int:
        return sum(layer.size for layer in self.layers)

    @property
    def stable_fraction(self) -> float:
        """Fraction of all neurons proven stable (1.0 for a network without activations)."""
        n = self.neurons
        return sum(layer.stable for layer in self.layers) / n if n else 1.0

    @property
    def empirical_stable_fraction(self) -> float | None:
        """EMPIRICAL fraction of neurons never seen switching (an upper estimate of stability)."""
        if not self.samples:
            return None
        n = self.neurons
        return sum(layer.empirical_stable for layer in self.layers) / n if n else 1.0

    def to_json(self) -> dict:
        emp = self.empirical_stable_fraction
        return {
            "bound_method": self.bound_method,
            "stable_fraction": round(self.stable_fraction, 6),
            "empirical_stable_fraction": None if emp is None else round(emp, 6),
            "empirical_samples": self.samples,
            "layers": [layer.to_json() for layer in self.layers],
        }


def proven_stability(net: Network, bounds: Bounds) -> list[LayerStability]:
    """Per activation layer: stably active / stably inactive / unstable neurons and binaries, from ``bounds``
    (the counts of :func:`relumilp.bounds.base.stability_counts`, with each layer's kind)."""
    return [LayerStability(kind=node.kind, **row)
            for node, row in zip(net.activations, stability_counts(net, bounds))]


def pieces_seen(net: Network, x: np.ndarray, chunk: int = 8192) -> dict[str, np.ndarray]:
    """``{activation node: bool array (neurons, pieces)}``: which pieces each neuron was on over rows of ``x``
    (piecewise-linear nodes only: a smooth kind has no pieces)."""
    nodes = [node for node in net.activations if not getattr(node.activation, "smooth", False)]  # no pieces
    seen = {node.name: np.zeros((node.size, node.activation.num_pieces), dtype=bool) for node in nodes}
    for first in range(0, len(x), chunk):
        values = net.forward_all(x[first:first + chunk])
        for node in nodes:
            table = node.activation
            index = table.pattern(values[node.inputs[0]])
            for p in range(table.num_pieces):
                seen[node.name][:, p] |= (index == p).any(axis=0)
    return seen


def empirical_census(net: Network, x: np.ndarray, rows: list[LayerStability], deadline=None) -> int:
    """Fill the EMPIRICAL columns of ``rows`` from the sample points ``x`` (in place); returns how many
    points were used (fewer than ``len(x)`` when ``deadline`` passed: chunks of 512 points then)."""
    step = 512 if deadline is not None and deadline.limited else max(len(x), 1)
    seen, used = None, 0
    for first in range(0, len(x), step):
        if used and deadline.expired():  # at least one block, so the columns are never empty
            break
        part = pieces_seen(net, x[first:first + step])
        seen = part if seen is None else {name: seen[name] | part[name] for name in seen}
        used = min(first + step, len(x))
    if seen is None:
        seen = pieces_seen(net, x)
    for node, row in zip(net.activations, rows):
        if node.name not in seen:  # a smooth kind: no pieces to be stable on, as its phases say
            row.empirical_stable = row.empirical_always_active = row.empirical_always_inactive = 0
            continue
        table = node.activation
        flags = seen[node.name]
        one_piece = flags.sum(axis=1) == 1
        linear = flags[:, table.identity_pieces].any(axis=1)
        row.empirical_stable = int(one_piece.sum())
        row.empirical_always_active = int((one_piece & linear).sum())
        row.empirical_always_inactive = int((one_piece & ~linear).sum())
    return used


def stability_report(net: Network, domain: InputDomain, bounds: Bounds | None = None, method: str = "interval",
                     samples: int = 10000, seed: int | None = 0, deadline=None, **bound_options) -> StabilityReport:
    """Proven stability from ``bounds`` (computed with ``method`` when not given) and an empirical census
    over ``samples`` uniform domain points (0 skips the census; a :class:`~relumilp.limits.Deadline` cuts
    it short, and the report's ``samples`` says how many were used)."""
    times = {}
    start = time.perf_counter()
    if bounds is None:
        bounds = compute_bounds(net, domain, method, **bound_options)
        times["bounds"] = time.perf_counter() - start
    rows = proven_stability(net, bounds)
    n = 0
    if samples:
        start = time.perf_counter()
        x = domain.sample(int(samples), np.random.default_rng(seed))
        n = empirical_census(net, x, rows, deadline)
        times["census"] = time.perf_counter() - start
    return StabilityReport(rows, bounds.method, n, times)
