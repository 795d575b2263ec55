"""Linear-region counting: exact partition (1-D/2-D), LP enumeration, sampling and the upper bound,
checked against hand-built networks with known counts and independent oracles."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st
from scipy.optimize import brentq, linprog

from conftest import random_mlp
from oracles import brute_force_optima, enumerate_patterns
from relumilp.analysis.regions import (arrangement_bound, count_regions, exact_regions, mip_regions,
                                       region_optimum, regions_upper_bound, sample_regions, serra_bound)
from relumilp.domain import InputDomain
from relumilp.errors import RelumilpError
from relumilp.ir import ActivationNode, AffineNode, InputNode, Network

ACTIVATIONS = ["relu", {"kind": "leaky_relu", "alpha": 0.1}, {"kind": "clipped_relu", "cap": 0.7}]


# -- independent oracles -----------------------------------------------------------------------


def _breaks(node):
    return {"relu": [0.0], "leaky_relu": [0.0], "clipped_relu": [0.0, node.cap]}.get(node.kind, [])


def _pattern(net, x):
    """Piece of every neuron at the points ``x`` computed straight from the forward pass."""
    values = net.forward_all(x)
    cols = [sum((values[a.inputs[0]] >= b).astype(int) for b in _breaks(a)) if _breaks(a) else
            np.zeros_like(values[a.inputs[0]], dtype=int) for a in net.activations]
    return np.concatenate(cols, axis=1)


def intervals_1d(net, lo, hi, grid=100001):
    """Activation regions of a 1-D network from its breakpoints: every grid interval where a pre-activation
    changes side of a kink holds a root (refined with brentq); distinct patterns between roots are counted."""
    xs = np.linspace(lo, hi, grid)
    values = net.forward_all(xs[:, None])
    roots = []
    for node in net.activations:
        pre = values[node.inputs[0]]
        for b in _breaks(node):
            s = pre - b
            for j in range(pre.shape[1]):
                roots.extend(xs[s[:, j] == 0.0])  # kinks exactly on grid points
                for i in np.flatnonzero(np.sign(s[:-1, j]) * np.sign(s[1:, j]) < 0):
                    f = lambda t, j=j, node=node, b=b: net.forward_all(np.array([[t]]))[node.inputs[0]][0, j] - b
                    roots.append(brentq(f, xs[i], xs[i + 1], xtol=1e-15))
    points = np.unique(np.array([lo, hi, *roots]))
    mids = [(a + c) / 2 for a, c in zip(points[:-1], points[1:]) if c - a > 1e-12 * (hi - lo)]
    return len({row.tobytes() for row in _pattern(net, np.array(mids)[:, None])})


def full_dimensional_patterns(net, lower, upper, A=None, b=None, min_radius=1e-7):
    """Number of oracle patterns whose polyhedron contains a ball of radius ``min_radius`` (scipy LPs)."""
    lower, upper = np.asarray(lower, float), np.asarray(upper, float)
    d = lower.size
    count = 0
    for G, h, _, _ in enumerate_patterns(net, lower, upper, A, b):
        rows = [np.append(g, np.linalg.norm(g)) for g in G]
        rhs = list(h)
        for i in range(d):
            e = np.zeros(d + 1)
            e[i], e[d] = -1.0, 1.0
            rows.append(e.copy()); rhs.append(-lower[i])
            e[i] = 1.0
            rows.append(e); rhs.append(upper[i])
        c = np.zeros(d + 1)
        c[d] = -1.0
        res = linprog(c, A_ub=np.array(rows), b_ub=np.array(rhs), bounds=[(None, None)] * d + [(None, 10.0)],
                      method="highs")
        if res.status == 0 and -res.fun > min_radius:
            count += 1
    return count


# -- hand-built networks ---------------------------------------------------------------------


def test_two_relus_give_two_regions():
    net = Network.sequential([(np.array([[1.0], [-1.0]]), np.zeros(2)), (np.ones((1, 2)), np.zeros(1))])
    domain = InputDomain([-1.0], [1.0])
    for method in ("exact", "mip"):
        result = count_regions(net, domain, method)
        assert (result.count, result.exact, result.method) == (2, True, method)
    assert exact_regions(net, domain).distinct_affine_maps == 2


def tent_map(k: int) -> Network:
    """``k`` compositions of the tent map t(x) = 2 relu(x) - 4 relu(x - 1/2) on [0, 1]: 2^k regions."""
    first = (np.array([[1.0], [1.0]]), np.array([0.0, -0.5]))
    middle = (np.array([[2.0, -4.0], [2.0, -4.0]]), np.array([0.0, -0.5]))
    return Network.sequential([first] + [middle] * (k - 1) + [(np.array([[2.0, -4.0]]), np.zeros(1))])


@pytest.mark.parametrize("k", [1, 2, 3, 5, 7])
def test_tent_map_has_two_to_the_k_regions(k):
    net, domain = tent_map(k), InputDomain([0.0], [1.0])
    exact = exact_regions(net, domain)
    assert exact.count == 2**k and exact.distinct_affine_maps == 2**k
    assert intervals_1d(net, 0.0, 1.0) == 2**k
    assert mip_regions(net, domain).count == 2**k
    assert 2**k <= regions_upper_bound(net)[0] == 3**k
    xs = np.linspace(0, 1, 4097)[:, None]
    assert np.allclose(net.forward(xs)[:, 0], [_tent(x, k) for x in xs[:, 0]])


def _tent(x, k):
    for _ in range(k):
        x = 2 * x if x <= 0.5 else 2 - 2 * x
    return x


def test_all_stable_network_has_one_region():
    rng = np.random.default_rng(3)
    layers = [(np.abs(rng.normal(size=(4, 2))), np.ones(4)), (np.abs(rng.normal(size=(3, 4))), np.ones(3)),
              (rng.normal(size=(1, 3)), np.zeros(1))]
    net, domain = Network.sequential(layers), InputDomain([1.0, 1.0], [2.0, 2.0])
    for method in ("exact", "mip", "sample"):
        result = count_regions(net, domain, method)
        assert result.count == 1
    assert exact_regions(net, domain).distinct_affine_maps == 1


# -- 1-D random networks against the breakpoint oracle -----------------------------------------------


@pytest.mark.parametrize("seed,sizes,activation", [
    (0, [1, 8, 8, 1], "relu"), (1, [1, 6, 6, 6, 1], "relu"), (2, [1, 10, 1], "relu"),
    (3, [1, 6, 6, 1], ACTIVATIONS[1]), (4, [1, 6, 6, 1], ACTIVATIONS[2]), (5, [1, 5, 5, 5, 2], ACTIVATIONS[2]),
])
def test_exact_1d_matches_breakpoints(seed, sizes, activation):
    net = random_mlp(np.random.default_rng(seed), sizes, activation, scale=2.0)
    domain = InputDomain([-2.0], [2.0])
    exact = exact_regions(net, domain)
    assert exact.count == intervals_1d(net, -2.0, 2.0)
    assert mip_regions(net, domain).count == exact.count
    assert sample_regions(net, domain, 4000).count <= exact.count
    cells = sorted((r.vertices[0, 0], r.vertices[1, 0]) for r in exact.regions)
    assert cells[0][0] == -2.0 and cells[-1][1] == 2.0
    assert all(abs(a[1] - b[0]) < 1e-12 for a, b in zip(cells, cells[1:]))  # a partition of the interval


@settings(max_examples=12, deadline=None)
@given(seed=st.integers(0, 10**6), width=st.integers(1, 7), depth=st.integers(1, 3))
def test_exact_1d_property(seed, width, depth):
    net = random_mlp(np.random.default_rng(seed), [1] + [width] * depth + [1], scale=2.0)
    assert exact_regions(net, InputDomain([-1.5], [1.5])).count == intervals_1d(net, -1.5, 1.5, grid=20001)


# -- 2-D: exact partition vs LP enumeration vs the oracle ----------------------------------------


@pytest.mark.parametrize("seed,sizes,activation", [
    (0, [2, 6, 6, 1], "relu"), (1, [2, 5, 4, 3, 1], "relu"), (2, [2, 5, 5, 1], ACTIVATIONS[1]),
    (3, [2, 4, 4, 1], ACTIVATIONS[2]),
])
def test_exact_2d_matches_enumeration(seed, sizes, activation):
    net = random_mlp(np.random.default_rng(seed), sizes, activation, scale=1.5)
    domain = InputDomain([-1.0, -1.5], [1.5, 1.0])
    exact = exact_regions(net, domain)
    mip = mip_regions(net, domain)
    assert mip.exact and mip.count == exact.count
    assert {r.pattern for r in mip.regions} == {r.pattern for r in exact.regions}
    assert mip.distinct_affine_maps == exact.distinct_affine_maps <= exact.count
    assert full_dimensional_patterns(net, domain.lower, domain.upper) == exact.count
    assert sample_regions(net, domain, 5000).count <= exact.count
    bound = regions_upper_bound(net)[0]
    assert bound is not None and exact.count <= bound
    area = sum(r.measure for r in exact.regions)
    assert area == pytest.approx(2.5 * 2.5, rel=1e-9)


def test_polyhedral_domain():
    net = random_mlp(np.random.default_rng(7), [2, 6, 5, 1], scale=1.5)
    A, b = np.array([[1.0, 1.0], [-1.0, 2.0]]), np.array([0.5, 1.0])
    domain = InputDomain([-1.0, -1.0], [1.0, 1.0], A, b)
    exact = exact_regions(net, domain)
    assert mip_regions(net, domain).count == exact.count
    assert full_dimensional_patterns(net, domain.lower, domain.upper, A, b) == exact.count
    assert exact.count < exact_regions(net, InputDomain([-1.0, -1.0], [1.0, 1.0])).count
    for r in exact.regions:
        assert domain.contains(r.vertices, tol=1e-9).all()
    assert sample_regions(net, domain, 4000).count <= exact.count


def test_three_inputs_mip_matches_oracle():
    net = random_mlp(np.random.default_rng(11), [3, 5, 4, 1], scale=1.5)
    domain = InputDomain.box(-1.0, 1.0, 3)
    mip = mip_regions(net, domain)
    assert mip.exact and mip.count == full_dimensional_patterns(net, domain.lower, domain.upper)
    assert sample_regions(net, domain, 5000).count <= mip.count <= regions_upper_bound(net)[0]
    with pytest.raises(RelumilpError, match="1 or 2 inputs"):
        exact_regions(net, domain)


def test_degenerate_boundary_patterns_are_not_counted():
    # neuron 2 is relu(x0) again shifted by 0: patterns where they disagree lie on x0 = 0 only
    W = np.array([[1.0, 0.0], [2.0, 0.0], [0.0, 1.0]])
    net = Network.sequential([(W, np.zeros(3)), (np.ones((1, 3)), np.zeros(1))])
    domain = InputDomain([-1.0, -1.0], [1.0, 1.0])
    assert exact_regions(net, domain).count == 4
    assert mip_regions(net, domain).count == 4
    assert full_dimensional_patterns(net, domain.lower, domain.upper) == 4
    assert sum(1 for _ in enumerate_patterns(net, domain.lower, domain.upper)) > 4  # the oracle sees boundary ones


def residual_net(rng) -> Network:
    nodes = [InputNode("x", 2),
             AffineNode("a1", 5, ("x",), (rng.normal(size=(5, 2)),), rng.normal(0, 0.3, 5)),
             ActivationNode("r1", 5, ("a1",)),
             AffineNode("a2", 5, ("r1",), (rng.normal(size=(5, 5)) / 2,), rng.normal(0, 0.3, 5)),
             ActivationNode("r2", 5, ("a2",)),
             AffineNode("sum", 5, ("r2", "r1"), (np.eye(5), np.eye(5)), np.zeros(5)),
             ActivationNode("r3", 5, ("sum",), kind="clipped_relu", cap=1.0),
             AffineNode("out", 1, ("r3", "x"), (rng.normal(size=(1, 5)), rng.normal(size=(1, 2))), np.zeros(1))]
    return Network(nodes, "out")


def test_dag_network_exact_matches_mip():
    net = residual_net(np.random.default_rng(5))
    domain = InputDomain([-1.0, -1.0], [1.0, 1.0])
    exact, mip = exact_regions(net, domain), mip_regions(net, domain)
    assert exact.count == mip.count > 1
    assert sample_regions(net, domain, 4000).count <= exact.count
    assert regions_upper_bound(net)[0] is None
    for r in exact.regions[:50]:  # the stored affine map is the network on its cell
        centre = r.vertices.mean(axis=0)
        assert np.allclose(r.M @ centre + r.m, net.forward(centre), atol=1e-9)


def test_mip_time_limit_gives_lower_bound():
    net = random_mlp(np.random.default_rng(2), [2, 12, 12, 1], scale=1.5)
    domain = InputDomain([-1.0, -1.0], [1.0, 1.0])
    partial = mip_regions(net, domain, time_limit=1e-4)
    assert not partial.exact and "at least" in partial.note
    assert partial.count <= exact_regions(net, domain).count


def test_vertex_optimum_matches_oracle():
    net = random_mlp(np.random.default_rng(9), [2, 6, 6, 1], scale=1.5)
    domain = InputDomain([-1.0, -1.0], [1.0, 1.0])
    exact = exact_regions(net, domain)
    oracle = brute_force_optima(net, domain.lower, domain.upper, np.ones(1))
    for sense in ("max", "min"):
        value, x = region_optimum(exact, sense=sense)
        assert value == pytest.approx(oracle[sense][0], abs=1e-9)
        assert net.forward(x)[0] == pytest.approx(value, abs=1e-9)


# -- theoretical upper bound ---------------------------------------------------------------------


def serra_brute_force(n0, widths):
    total = 0
    for js in itertools.product(*[range(n + 1) for n in widths]):
        ok, budget = True, n0
        for j, n in zip(js, widths):
            if j > min(budget, n):
                ok = False
                break
            budget = min(budget, n - j)
        if ok:
            total += math.prod(math.comb(n, j) for j, n in zip(js, widths))
    return total


@pytest.mark.parametrize("n0,widths", [(1, [2, 2, 2]), (2, [3, 4]), (2, [5, 3, 4]), (3, [4, 4, 2]), (5, [6, 6])])
def test_serra_bound_formula(n0, widths):
    assert serra_bound(n0, widths) == serra_brute_force(n0, widths)
    assert serra_bound(n0, widths) <= arrangement_bound(n0, widths, widths)


def test_serra_bound_single_layer_is_zaslavsky():
    for n0, n in [(1, 5), (2, 5), (2, 32), (4, 3)]:
        assert serra_bound(n0, [n]) == sum(math.comb(n, j) for j in range(min(n0, n) + 1))


def test_count_regions_dispatch_and_errors():
    net = random_mlp(np.random.default_rng(0), [2, 4, 1])
    domain = InputDomain([-1.0, -1.0], [1.0, 1.0])
    assert count_regions(net, domain).method == "exact"
    net3 = random_mlp(np.random.default_rng(0), [3, 4, 1])
    auto = count_regions(net3, InputDomain.box(-1, 1, 3))
    assert auto.method == "sample" and not auto.exact and auto.to_json()["exact"] is False
    with pytest.raises(RelumilpError, match="unknown region method"):
        count_regions(net, domain, "magic")
    with pytest.raises(RelumilpError, match="no interior"):
        exact_regions(net, InputDomain([0.0, -1.0], [0.0, 1.0]))
    with pytest.raises(RelumilpError, match="empty"):
        exact_regions(net, InputDomain([-1.0, -1.0], [1.0, 1.0], np.array([[1.0, 0.0]]), np.array([-2.0])))
