"""Interval bounds are sound: no sampled node value falls outside them."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from conftest import random_mlp
from relumilp.bounds import compute_bounds, phases
from relumilp.domain import InputDomain, box_from_cli
from relumilp.errors import InvalidDomainError

ACTIVATIONS = ["relu", {"kind": "leaky_relu", "alpha": 0.1}, {"kind": "leaky_relu", "alpha": -0.4},
               {"kind": "clipped_relu", "cap": 0.7}, "identity", {"kind": "clip", "low": -0.4, "high": 0.6},
               {"kind": "clip", "low": 0.1, "high": 0.9}]


@pytest.mark.parametrize("activation", ACTIVATIONS, ids=lambda a: a if isinstance(a, str) else str(a["kind"]) + str(a))
@pytest.mark.parametrize("seed", range(3))
def test_interval_bounds_contain_samples(activation, seed):
    rng = np.random.default_rng(seed)
    net = random_mlp(rng, [3, 10, 8, 6, 2], activation)
    domain = InputDomain(-rng.uniform(0.1, 2, 3), rng.uniform(0.1, 2, 3))
    bounds = compute_bounds(net, domain, "interval")
    corners = np.array(list(itertools.product(*zip(domain.lower, domain.upper))))
    samples = np.vstack([domain.sample(100_000, rng), corners])
    bounds.check_sound(net, samples, tol=1e-12)
    # The input node's bounds are the box itself.
    np.testing.assert_array_equal(bounds.lower["input"], domain.lower)


def test_stability_classification():
    net = random_mlp(np.random.default_rng(5), [2, 4, 1])
    node = net.activations[0]
    ph = phases(node, np.array([-2.0, 0.0, -1.0, 1.0]), np.array([-1.0, 2.0, 1.0, 3.0]))
    assert ph.stable_inactive.tolist() == [True, False, False, False]
    assert ph.stable_active.tolist() == [False, True, False, True]
    assert ph.unstable.tolist() == [False, False, True, False]


def test_domain_errors():
    with pytest.raises(InvalidDomainError, match="lower bound 2.0 > upper bound 1.0"):
        InputDomain([0.0, 2.0], [1.0, 1.0])
    with pytest.raises(InvalidDomainError, match="finite"):
        InputDomain([0.0], [np.inf])
    with pytest.raises(InvalidDomainError, match="3 --box options but the network has 2 inputs"):
        box_from_cli(["0:1"] * 3, 2)
    with pytest.raises(InvalidDomainError, match="LO:HI"):
        box_from_cli(["0-1"], 2)
    with pytest.raises(InvalidDomainError, match="2 bounds but the network has 3 inputs"):
        InputDomain.box(0, 1, 2).check_size(3)


def test_each_side_is_widened_by_the_rounding_of_its_own_terms():
    """``1 + x1 + x2`` with ``x`` in ``[0, 1e280]``: the forward pass's rounding scales with the terms it adds,
    so the lower bound stays at 1 (widened by a few ulps), not ``1 - 1e265`` as one margin for both sides
    gave; and every computed value still lies inside."""
    from relumilp.bounds.interval import affine_image

    lower, upper = {"x": np.zeros(2)}, {"x": np.full(2, 1e280)}
    lo, hi = affine_image(["x"], [np.ones((1, 2))], np.ones(1), lower, upper)
    assert 1.0 - 1e-14 < lo[0] < 1.0 and hi[0] >= 2e280
    lo, hi = affine_image(["x"], [-np.ones((1, 2))], np.ones(1), lower, upper)  # 1 - x1 - x2: the upper side
    assert 1.0 < hi[0] < 1.0 + 1e-14 and lo[0] <= -2e280
    rng = np.random.default_rng(0)
    W, b = rng.normal(size=(5, 4)), rng.normal(size=5)
    L, U = rng.uniform(-3, 0, 4) * 10.0 ** rng.integers(-5, 5, 4), rng.uniform(0, 3, 4) * 10.0 ** rng.integers(-5, 5, 4)
    lo, hi = affine_image(["x"], [W], b, {"x": L}, {"x": U})
    X = np.concatenate([rng.uniform(L, U, (20_000, 4)), np.array(list(itertools.product(*zip(L, U))))])
    Y = X @ W.T + b
    assert np.all(Y >= lo) and np.all(Y <= hi)
