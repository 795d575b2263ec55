"""Cones of influence (relumilp.bounds.cones) and MILP bound tightening over them (the ``cones`` method).

Oracles: the restricted network computes the same neuron as the whole one (forward passes); the cone
MILP bounds contain, and on small cones equal, the exact range found by enumerating activation patterns
of the network up to the neuron (one LP each); bounds hold on samples, also with domain rows.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from relumilp.bounds import compute_bounds
from relumilp.bounds.cones import cone, restrict
from relumilp.domain import InputDomain
from relumilp.errors import RelumilpError
from relumilp.frontends.torch import from_torch
from relumilp.ir import Network

from oracles import brute_force_optima


def _conv_net(seed: int, channels: int = 2):
    torch.manual_seed(seed)
    model = nn.Sequential(
        nn.Conv2d(1, channels, 2), nn.ReLU(),
        nn.Conv2d(channels, 2, 2, stride=1, padding=1), nn.ReLU(),
        nn.Flatten(), nn.Linear(2 * 3 * 4, 3),
    ).double().eval()
    return from_torch(model, input_shape=(1, 3, 4))  # 12 inputs


def _upto(net: Network, node: str) -> Network:
    """The network computing node ``node`` (the oracle enumerates its activation patterns)."""
    return Network(list(net.order), node, name=f"{net.name}[{node}]")


@pytest.mark.parametrize("seed", range(3))
def test_the_restricted_network_computes_the_same_neuron(seed):
    net = _conv_net(seed)
    rng = np.random.default_rng(seed)
    domain = InputDomain.box(np.full(net.input_size, -1.0), np.full(net.input_size, 1.0))
    bounds = compute_bounds(net, domain, "interval")
    X = rng.uniform(-1, 1, (50, net.input_size))
    values = net.forward_all(X)
    checked = 0
    for node in net.affines:
        for j in range(node.size):
            c = cone(net, node.name, j, bounds)
            restricted = restrict(net, c, bounds, domain)
            if restricted is None:
                continue
            sub, sub_bounds, sub_domain = restricted
            inputs = c.keep[net.input.name]
            assert sub.output_size == 1 and sub.input_size == inputs.size
            np.testing.assert_allclose(sub.forward(X[:, inputs])[:, 0], values[node.name][:, j], rtol=1e-12, atol=1e-12)
            for name in c.keep:  # the restricted bounds are the whole network's, on the kept indices
                np.testing.assert_array_equal(sub_bounds.lower[name], bounds.lower[name][c.keep[name]])
            checked += 1
    assert checked > 10
    # a second-layer convolution neuron reads a window, not the whole input
    second = net.affines[1]
    assert cone(net, second.name, 0).keep[net.input.name].size < net.input_size


@pytest.mark.parametrize("seed", range(4))
def test_cone_bounds_are_the_exact_ranges_on_tiny_conv_nets(seed):
    net = _conv_net(seed)
    rng = np.random.default_rng(10 + seed)
    centre = rng.uniform(-0.5, 0.5, net.input_size)
    lower, upper = centre - 0.6, centre + 0.6
    domain = InputDomain.box(lower, upper)
    alpha = compute_bounds(net, domain, "alpha")
    stats: dict = {}
    cones = compute_bounds(net, domain, "cones", max_binaries=64, workers=1, stats=stats)
    assert cones.method == "cones" and "cones" in cones.times
    tightened = 0
    for node in net.affines[1:-1]:  # the first reads the box (exact already), the last feeds no activation
        truncated = _upto(net, node.name)
        for j in np.flatnonzero((alpha.lower[node.name] < 0) & (alpha.upper[node.name] > 0)):
            exact = brute_force_optima(truncated, lower, upper, np.eye(node.size)[j])
            lo, hi = exact["min"][0], exact["max"][0]
            lo_c, hi_c = cones.lower[node.name][j], cones.upper[node.name][j]
            assert lo_c <= lo + 1e-9 and hi_c >= hi - 1e-9, (node.name, j)  # sound
            # exact, except where the MILP stopped early once the neuron's phase was decided
            assert lo_c >= lo - 1e-5 or (lo >= 0.0 and lo_c >= -1e-6), (node.name, j, lo, lo_c)
            assert hi_c <= hi + 1e-5 or (hi <= 0.0 and hi_c <= 1e-6), (node.name, j, hi, hi_c)
            tightened += int(lo_c > alpha.lower[node.name][j] + 1e-6 or hi_c < alpha.upper[node.name][j] - 1e-6)
    assert stats["cones"]["neurons"] > 0
    assert tightened > 0  # cones beat alpha somewhere on every seed (else this test could not fail)
    # every cone is small and no solve was cut short: each node's range is exact (checked above)
    assert set(stats["cones"]["exact"]) == {node.name for node in net.affines[:-1]}
    for name in cones.lower:  # never looser than alpha, but for the MILPs' margins (relative 1e-6, absolute 1e-7)
        slack = 2e-6 * (1.0 + np.maximum(np.abs(alpha.lower[name]), np.abs(alpha.upper[name])))
        assert np.all(cones.lower[name] >= alpha.lower[name] - slack)
        assert np.all(cones.upper[name] <= alpha.upper[name] + slack)


def test_cone_bounds_hold_on_samples_with_domain_rows():
    net = _conv_net(5)
    rng = np.random.default_rng(5)
    n = net.input_size
    A = np.zeros((2, n))
    A[0, :3] = 1.0  # reads a few inputs: kept by the cones that read all of them
    A[1, :] = rng.normal(size=n)  # reads every input: dropped from every smaller cone (a relaxation)
    b = np.array([0.5, 0.3])
    domain = InputDomain(np.full(n, -1.0), np.full(n, 1.0), A, b)
    bounds = compute_bounds(net, domain, "cones", workers=1)
    X = rng.uniform(-1, 1, (20000, n))
    X = X[np.all(X @ A.T <= b, axis=1)]
    assert X.shape[0] > 1000
    bounds.check_sound(net, X)
    c = cone(net, net.affines[1].name, 0)
    sub_domain = restrict(net, c, compute_bounds(net, domain, "interval"), domain)[2]
    kept = c.keep[net.input.name]
    expect_first = set(range(3)) <= set(kept.tolist())
    assert (sub_domain.A is not None and sub_domain.A.shape[0] == 1) == expect_first


def test_dense_layers_keep_their_bounds_beyond_max_binaries():
    rng = np.random.default_rng(2)
    layers = [(rng.normal(size=(8, 4)), rng.normal(size=8) * 0.1), (rng.normal(size=(8, 8)), rng.normal(size=8) * 0.1),
              (rng.normal(size=(2, 8)), np.zeros(2))]
    net = Network.sequential(layers)
    domain = InputDomain.box(np.full(4, -1.0), np.full(4, 1.0))
    alpha = compute_bounds(net, domain, "alpha")
    unstable = int(np.sum((alpha.lower["linear0"] < 0) & (alpha.upper["linear0"] > 0)))
    assert unstable >= 2
    few = compute_bounds(net, domain, "cones", max_binaries=unstable - 1, workers=1)
    for name in alpha.lower:  # every second-layer cone holds all first-layer binaries: nothing tightened
        np.testing.assert_array_equal(few.lower[name], alpha.lower[name])
    enough = compute_bounds(net, domain, "cones", max_binaries=unstable, workers=1)
    for j in np.flatnonzero((alpha.lower["linear1"] < 0) & (alpha.upper["linear1"] > 0)):
        exact = brute_force_optima(_upto(net, "linear1"), domain.lower, domain.upper, np.eye(8)[j])
        assert enough.lower["linear1"][j] <= exact["min"][0] + 1e-9
        assert enough.lower["linear1"][j] >= exact["min"][0] - 1e-5 or exact["min"][0] >= 0.0


def test_cone_options_are_checked():
    net = _conv_net(0)
    domain = InputDomain.box(np.full(net.input_size, -1.0), np.full(net.input_size, 1.0))
    with pytest.raises(RelumilpError, match="max_binaries only applies to the cones method"):
        compute_bounds(net, domain, "alpha", max_binaries=3)
    with pytest.raises(RelumilpError, match="max_binaries must be at least 1"):
        compute_bounds(net, domain, "cones", max_binaries=0)
    with pytest.raises(RelumilpError, match="unknown bound option"):
        compute_bounds(net, domain, "cones", no_such_option=1)


def test_step_shares_and_stop_when_are_checked_and_applied(monkeypatch):
    """``shares`` caps each step at its fraction of the time left; ``stop_when`` skips the later steps
    and labels the bounds with the last step run; bad shares are refused."""
    import relumilp.bounds.obbt as obbt
    import relumilp.bounds.symbolic as symbolic

    net = _conv_net(0)
    domain = InputDomain.box(np.full(net.input_size, -1.0), np.full(net.input_size, 1.0))
    with pytest.raises(RelumilpError, match="'cones' is not a step of the alpha method"):
        compute_bounds(net, domain, "alpha", shares={"cones": 0.1})
    with pytest.raises(RelumilpError, match="share must be in"):
        compute_bounds(net, domain, "cones", shares={"alpha": 0.0})
    with pytest.raises(RelumilpError, match="steps: none"):
        compute_bounds(net, domain, "interval", shares={"symbolic": 0.5})

    alpha_left, cone_left = [], []
    real_alpha, real_cones = symbolic.alpha_bounds, obbt.cone_bounds
    monkeypatch.setattr(symbolic, "alpha_bounds",
                        lambda *a, **k: alpha_left.append(k["deadline"].remaining()) or real_alpha(*a, **k))
    monkeypatch.setattr(obbt, "cone_bounds",
                        lambda *a, **k: cone_left.append(k["deadline"].remaining()) or real_cones(*a, **k))
    full = compute_bounds(net, domain, "cones", workers=1, time_limit=60, shares={"alpha": 0.25, "cones": 0.1})
    assert len(cone_left) == 1 and cone_left[0] <= 0.1 * 60
    assert len(alpha_left) == 1 and alpha_left[0] <= 0.25 * 60
    assert full.method == "cones" and full.complete and set(full.times) == {"interval", "symbolic", "cones", "alpha"}

    seen = []
    after_cones = compute_bounds(net, domain, "cones", workers=1, stop_when=lambda b: seen.append(b.method) or len(seen) > 2)
    assert seen == ["interval", "symbolic", "cones"] and len(cone_left) == 2 and len(alpha_left) == 1
    assert after_cones.method == "cones" and not after_cones.complete and "alpha" not in after_cones.times

    seen = []
    stopped = compute_bounds(net, domain, "cones", workers=1, stop_when=lambda b: seen.append(b.method) or len(seen) > 1)
    assert seen == ["interval", "symbolic"]  # checked before each step
    assert stopped.method == "symbolic" and not stopped.complete and len(cone_left) == 2
    for name in stopped.lower:  # what ran is what a run of that method gives
        lo, hi = compute_bounds(net, domain, "symbolic")[name]
        np.testing.assert_array_equal(stopped.lower[name], lo)
        np.testing.assert_array_equal(stopped.upper[name], hi)


@pytest.mark.parametrize("max_binaries, optimised", [(1, ["linear1", "linear2"]), (64, ["linear2"])])
def test_the_alpha_step_of_cones_leaves_out_the_nodes_bounded_exactly(monkeypatch, max_binaries, optimised):
    """Every second-layer cone of this net holds 2 or more unstable neurons: with ``max_binaries=1`` the
    cone pass bounds only the first layer exactly, and ``alpha`` optimises the second and the output."""
    import relumilp.bounds.symbolic as symbolic

    net = _conv_net(0)
    assert [node.name for node in net.affines] == ["linear0", "linear1", "linear2"]
    domain = InputDomain.box(np.full(net.input_size, -1.0), np.full(net.input_size, 1.0))
    calls = []
    real = symbolic.alpha_bounds
    monkeypatch.setattr(symbolic, "alpha_bounds", lambda *a, **k: calls.append(k["nodes"]) or real(*a, **k))
    stats: dict = {}
    bounds = compute_bounds(net, domain, "cones", max_binaries=max_binaries, workers=1, stats=stats)
    assert calls == [optimised] and bounds.method == "cones"
    assert (stats["cones"]["neurons"] > 0) == (max_binaries > 1)


def test_nodes_with_larger_cones_are_not_listed_exact_and_alpha_optimises_only_the_named_nodes():
    from relumilp.bounds.symbolic import alpha_bounds

    net = _conv_net(2)
    domain = InputDomain.box(np.full(net.input_size, -1.0), np.full(net.input_size, 1.0))
    symbolic = compute_bounds(net, domain, "symbolic")
    stats: dict = {}
    compute_bounds(net, domain, "cones", max_binaries=2, workers=1, stats=stats)
    first, second = net.affines[0].name, net.affines[1].name
    assert stats["cones"]["neurons"] > 0 and stats["cones"]["exact"] == [first]  # some second-layer cones hold 3+
    none = alpha_bounds(net, domain, start=symbolic, nodes=[])
    every = alpha_bounds(net, domain, start=symbolic)
    samples = domain.lower + np.random.default_rng(0).random((2000, net.input_size)) * 2.0
    for bounds in (none, every):
        bounds.check_sound(net, samples)
    for name in (first, second):  # left as they were
        np.testing.assert_array_equal(none.lower[name], symbolic.lower[name])
        np.testing.assert_array_equal(none.upper[name], symbolic.upper[name])
    assert np.any(every.lower[second] > symbolic.lower[second] + 1e-9)  # what the default gains there
    assert np.any(none.lower[net.output] > symbolic.lower[net.output] + 1e-9)  # the output is still optimised
    with pytest.raises(RelumilpError, match="no affine node named 'act0'"):
        alpha_bounds(net, domain, start=symbolic, nodes=["act0"])


def test_no_node_counts_as_exact_in_a_network_with_a_smooth_kind():
    """A smooth kind's MILP rows are a relaxation: the cone pass claims no exact node, ``alpha`` then
    optimises every node, and the bounds hold on samples."""
    torch.manual_seed(3)
    model = nn.Sequential(
        nn.Conv2d(1, 2, 2), nn.Sigmoid(),
        nn.Conv2d(2, 2, 2, stride=1, padding=1), nn.ReLU(),
        nn.Flatten(), nn.Linear(2 * 3 * 4, 3),
    ).double().eval()
    net = from_torch(model, input_shape=(1, 3, 4))
    assert net.has_smooth
    domain = InputDomain.box(np.full(net.input_size, -2.0), np.full(net.input_size, 2.0))
    stats: dict = {}
    bounds = compute_bounds(net, domain, "cones", workers=1, stats=stats)
    assert stats["cones"]["exact"] == []
    bounds.check_sound(net, domain.lower + np.random.default_rng(3).random((5000, net.input_size)) * 4.0)


def test_milp_obbt_solves_small_cones_alone_with_the_same_bounds(monkeypatch):
    """``milp`` OBBT on a box solves a neuron over its cone when that holds at most half the model's
    binaries: the bounds match those of the whole-model MILPs."""
    import relumilp.bounds.obbt as obbt

    net = _conv_net(1, channels=3)
    rng = np.random.default_rng(1)
    centre = rng.uniform(-0.5, 0.5, net.input_size)
    domain = InputDomain.box(centre - 0.6, centre + 0.6)
    solved = []
    real = obbt.solve_cones
    monkeypatch.setattr(obbt, "solve_cones", lambda *a: solved.append(len(a[4])) or real(*a))
    with_cones = compute_bounds(net, domain, "milp", workers=1)
    assert sum(solved) > 0
    monkeypatch.setattr(obbt, "_cone_sizes",
                        lambda net, node, targets, bounds, limit, deadline=None: np.full(targets.size, limit + 1))
    whole = compute_bounds(net, domain, "milp", workers=1)
    for name in whole.lower:
        np.testing.assert_allclose(with_cones.lower[name], whole.lower[name], atol=1e-6, rtol=1e-6)
        np.testing.assert_allclose(with_cones.upper[name], whole.upper[name], atol=1e-6, rtol=1e-6)


def _skip_net(seed: int) -> Network:
    """``h = W0 x``, ``r = relu(h)``, ``g = W1 r + S h`` (a skip connection before the activation), then
    ``relu(g)`` and an output: ``h`` is read by the activation and by ``g``, on different indices."""
    from relumilp.ir import ActivationNode, AffineNode, InputNode

    rng = np.random.default_rng(seed)
    W1 = np.zeros((4, 6))
    W1[np.arange(4), np.arange(4)] = rng.normal(size=4)  # g_k reads r_k only
    S = np.zeros((4, 6))
    S[np.arange(4), np.arange(2, 6)] = rng.normal(size=4)  # and h_{k+2}
    nodes = [InputNode("x", 3),
             AffineNode("h", 6, ("x",), (rng.normal(size=(6, 3)),), rng.normal(size=6) * 0.3),
             ActivationNode("r", 6, ("h",), kind="relu"),
             AffineNode("g", 4, ("r", "h"), (W1, S), rng.normal(size=4) * 0.3),
             ActivationNode("s", 4, ("g",), kind="relu"),
             AffineNode("y", 2, ("s",), (rng.normal(size=(2, 4)),), np.zeros(2))]
    return Network(nodes, "y")


@pytest.mark.parametrize("seed", range(3))
def test_cones_through_a_skip_connection_before_an_activation(seed):
    """A node read by its activation and by another node keeps one index set for both (no size clash:
    building the restricted network used to fail here), and ``cones`` and ``milp`` bounds hold on samples."""
    net = _skip_net(seed)
    domain = InputDomain.box(np.full(3, -1.0), np.full(3, 1.0))
    bounds = compute_bounds(net, domain, "interval")
    X = np.random.default_rng(seed).uniform(-1, 1, (50, 3))
    values = net.forward_all(X)
    for j in range(4):
        c = cone(net, "g", j, bounds)
        np.testing.assert_array_equal(c.keep["r"], c.keep["h"])
        sub = restrict(net, c, bounds, domain)[0]
        np.testing.assert_allclose(sub.forward(X[:, c.keep["x"]])[:, 0], values["g"][:, j], rtol=1e-12, atol=1e-12)
    cones = compute_bounds(net, domain, "cones", workers=1)
    milp = compute_bounds(net, domain, "milp", workers=1)
    for j in range(4):
        lo, hi = values["g"][:, j].min(), values["g"][:, j].max()
        assert cones.lower["g"][j] <= lo and cones.upper["g"][j] >= hi
        assert milp.lower["g"][j] <= lo and milp.upper["g"][j] >= hi
