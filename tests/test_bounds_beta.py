"""Split multipliers (beta-CROWN) in the bound engine: sound on every node's region, and tighter than
clamping alone."""

from __future__ import annotations

import numpy as np
import pytest

from relumilp.bounds.engine import BETA, BoundEngine
from relumilp.ir import Network

from conftest import random_mlp


def _in_region(values, net, splits, i):
    """Rows of sampled forward values whose pre-activations satisfy node ``i``'s splits."""
    keep = np.ones(next(iter(values.values())).shape[0], dtype=bool)
    for act in net.activations:
        s = splits.get(act.name)
        if s is None:
            continue
        x = values[act.inputs[0]]
        keep &= np.all((s[i] <= 0) | (x >= 0), axis=1) & np.all((s[i] >= 0) | (x <= 0), axis=1)
    return keep


def assert_bounds_hold_on_regions(net, result, L, U, splits, rng, nodes=None, samples=3000):
    """Every sampled float64 forward value of each node in ``nodes`` (default: the output), at points
    of box ``i`` that satisfy its splits, lies within ``result``'s bounds of box ``i`` (boxes flagged
    empty, or where no sample satisfies the splits, are skipped)."""
    for i in range(L.shape[0]):
        values = net.forward_all(rng.uniform(L[i], U[i], size=(samples, L.shape[1])))
        keep = _in_region(values, net, splits, i)
        if result.empty[i] or not keep.any():
            continue
        for name in nodes or [net.output]:
            v = values[name][keep]
            assert np.all(v >= result.lower[name][i]) and np.all(v <= result.upper[name][i]), (i, name)


@pytest.mark.parametrize("seed", range(6))
def test_split_multiplier_bounds_hold_on_each_node(seed):
    rng = np.random.default_rng(seed)
    net = random_mlp(rng, [3, 8, 8, 8, 2])
    engine = BoundEngine.for_network(net)
    batch = 6
    L = rng.uniform(-1, 0.2, size=(batch, 3))
    U = np.minimum(L + rng.uniform(0.3, 1.2, size=(batch, 3)), 1.0)
    splits = {act.name: rng.choice([-1, 0, 0, 1], size=(batch, act.size)) for act in net.activations[:2]}
    result = engine.bounds(L, U, splits=splits, optimise={"steps": 12, "sense": "both"})
    assert set(splits) <= {key[1] for key in result.slopes if isinstance(key, tuple) and key[0] == BETA}
    assert_bounds_hold_on_regions(net, result, L, U, splits, rng, samples=4000)


def test_the_multiplier_carries_a_split_to_the_other_neurons():
    """``y = relu(-x)`` on ``x in [-1, 1]``, with the neuron ``relu(x)`` split active (``x >= 0``): then
    ``y = 0``. Clamping only fixes the split neuron, so the bound stays at the relaxation's 1; the
    multiplier of ``x >= 0`` brings it to 1/2 (the triangle relaxation's best over the half box)."""
    net = Network.sequential([(np.array([[1.0], [-1.0]]), np.zeros(2)), (np.array([[0.0, 1.0]]), np.zeros(1))],
                             "relu")
    engine = BoundEngine.for_network(net)
    act = net.activations[0]
    L, U = np.array([[-1.0]]), np.array([[1.0]])
    splits = {act.name: np.array([[1, 0]])}
    options = {"steps": 40, "sense": "upper"}
    clamped = engine.bounds(L, U, splits=splits, optimise={**options, "beta_lr": 0.0})
    carried = engine.bounds(L, U, splits=splits, optimise=options)
    out = net.output
    assert clamped.upper[out][0, 0] == pytest.approx(1.0, abs=1e-9)
    assert carried.upper[out][0, 0] == pytest.approx(0.5, abs=1e-3)
    assert carried.upper[out][0, 0] >= 0.5 - 1e-12  # never below the best any multiplier can give
    # warm-started from its own parameters, the bound is no looser
    again = engine.bounds(L, U, splits=splits, optimise={**options, "steps": 0, "slopes": carried.slopes})
    assert again.upper[out][0, 0] <= carried.upper[out][0, 0] + 1e-12


def test_multipliers_tighten_node_bounds_on_random_networks():
    rng = np.random.default_rng(11)
    tighter = looser = 0
    for _ in range(8):
        net = random_mlp(rng, [4, 12, 12, 1])
        engine = BoundEngine.for_network(net)
        L = np.full((16, 4), -1.0)
        U = np.ones((16, 4))
        splits = {act.name: rng.choice([-1, 0, 0, 1], size=(16, act.size)) for act in net.activations}
        options = {"steps": 10, "sense": "lower"}
        plain = engine.bounds(L, U, splits=splits, optimise={**options, "beta_lr": 0.0})
        beta = engine.bounds(L, U, splits=splits, optimise=options)
        live = ~plain.empty & ~beta.empty
        a, b = plain.lower[net.output][live, 0], beta.lower[net.output][live, 0]
        tighter += int(np.sum(b > a + 1e-9))
        looser += int(np.sum(b < a - 1e-9))
    assert tighter > 4 * max(looser, 1)


def test_multipliers_prove_contradictory_splits_empty():
    """``x >= 0`` and ``-x - 0.5 >= 0`` on ``x in [-1, 1]``: each split alone is possible (clamping sees
    nothing wrong), together they are not; the multipliers prove the node empty."""
    net = Network.sequential([(np.array([[1.0], [-1.0]]), np.array([0.0, -0.5])), (np.ones((1, 2)), np.zeros(1))],
                             "relu")
    engine = BoundEngine.for_network(net)
    act = net.activations[0]
    L, U = np.array([[-1.0], [-1.0]]), np.array([[1.0], [1.0]])
    splits = {act.name: np.array([[1, 1], [1, 0]])}
    options = {"steps": 30, "sense": "lower", "beta_lr": 1.0}  # the Lagrangian bound falls linearly in beta
    assert not engine.bounds(L, U, splits=splits, optimise={**options, "beta_lr": 0.0}).empty.any()
    result = engine.bounds(L, U, splits=splits, optimise=options)
    assert result.empty.tolist() == [True, False]
