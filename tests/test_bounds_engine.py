"""The batched bound engine: neuron splits, refine masks, input coefficients."""

from __future__ import annotations

import numpy as np

from relumilp.bounds import compute_bounds
from relumilp.bounds.engine import BoundEngine
from relumilp.domain import InputDomain

from conftest import random_mlp


def _boxes(rng, batch, n):
    L = rng.uniform(-1, 0.5, size=(batch, n))
    return L, np.minimum(L + rng.uniform(0.05, 1.0, size=(batch, n)), 1.0)


def test_splits_are_sound_and_exact_pieces():
    rng = np.random.default_rng(3)
    net = random_mlp(rng, [3, 10, 10, 2])
    engine = BoundEngine.for_network(net)
    L, U = _boxes(rng, 8, 3)
    free = engine.bounds(L, U)
    act = net.activations[0]
    src = act.inputs[0]
    splits = {act.name: rng.choice([-1, 0, 1], size=(8, act.size))}
    split = engine.bounds(L, U, splits=splits)
    for i in range(8):
        values = net.forward_all(rng.uniform(L[i], U[i], size=(4000, 3)))
        x = values[src]
        keep = np.all((splits[act.name][i] <= 0) | (x >= 0), axis=1) & np.all((splits[act.name][i] >= 0) | (x <= 0), axis=1)
        if split.empty[i]:
            assert not keep.any()
            continue
        for name, v in values.items():
            v = v[keep]
            assert np.all(v >= split.lower[name][i] - 1e-12) and np.all(v <= split.upper[name][i] + 1e-12), name
        # a split never loosens, and fixes the phase
        assert np.all(split.lower[src][i] >= free.lower[src][i]) and np.all(split.upper[src][i] <= free.upper[src][i])
        # clamped at the kink (then widened by the forward pass's rounding only)
        assert np.all(split.lower[src][i][splits[act.name][i] > 0] >= -1e-12)
        assert np.all(split.upper[src][i][splits[act.name][i] < 0] <= 1e-12)


def test_contradicted_split_flags_the_box_empty():
    rng = np.random.default_rng(5)
    net = random_mlp(rng, [2, 6, 1])
    engine = BoundEngine.for_network(net)
    L, U = np.full((1, 2), -1.0), np.ones((1, 2))
    free = engine.bounds(L, U)
    act = net.activations[0]
    upper = free.upper[act.inputs[0]][0]
    lower = free.lower[act.inputs[0]][0]
    s = np.zeros((1, act.size), dtype=int)
    if (upper < 0).any():
        s[0, np.argmax(upper < 0)] = 1
    elif (lower > 0).any():
        s[0, np.argmax(lower > 0)] = -1
    else:
        return
    assert engine.bounds(L, U, splits={act.name: s}).empty[0]


def test_refine_modes_and_single_box_match_compute_bounds():
    rng = np.random.default_rng(7)
    net = random_mlp(rng, [4, 12, 12, 3])
    domain = InputDomain(-np.ones(4), np.ones(4))
    reference = compute_bounds(net, domain, "symbolic")
    root = compute_bounds(net, domain, "interval")
    engine = BoundEngine.for_network(net)
    start = {k: (root.lower[k][None], root.upper[k][None]) for k in root.lower}
    lo, hi = engine.bounds(domain.lower[None], domain.upper[None], start)
    for name in reference.lower:
        assert np.array_equal(lo[name][0], reference.lower[name]) and np.array_equal(hi[name][0], reference.upper[name])
    ulo, uhi = engine.bounds(domain.lower[None], domain.upper[None], start, refine="undecided")
    out = net.output
    np.testing.assert_array_equal(ulo[out], lo[out])  # the output is always refined in full
    lam = engine.input_coefficients(lo, hi)
    assert lam.shape == (1, 3, 4)
