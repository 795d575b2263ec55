"""Tests of relumilp.pruning: lossless removal of stable and unused neurons."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import relumilp
from relumilp.bounds.base import Bounds, phases, stability_counts
from relumilp.bounds.interval import interval_bounds
from relumilp.domain import InputDomain
from relumilp.errors import InvalidNetworkError, RelumilpError
from relumilp.ir import ActivationNode, AffineNode, InputNode, Network
from relumilp.pruning import prune, prune_module

from conftest import random_mlp

N_SAMPLES = 10_000


def binaries(net: Network, domain: InputDomain) -> int:
    return sum(row["binaries"] for row in stability_counts(net, interval_bounds(net, domain)))


def assert_same_function(net: Network, pruned: Network, domain: InputDomain, seed=0, tol=1e-9):
    x = domain.sample(N_SAMPLES, seed)
    x = np.vstack([x, domain.lower, domain.upper])  # the corners of the box too
    want, got = net.forward(x), pruned.forward(x)
    assert got.shape == want.shape
    err = np.max(np.abs(got - want) / (1.0 + np.abs(want)))
    assert err <= tol, f"pruned network differs by {err:.3g}"


def mlp(rng, sizes, activation, scale=1.0):
    net = random_mlp(rng, sizes, "relu", scale)
    return Network.sequential(net.dense_layers(), activation)


ACTIVATIONS = [
    "relu",
    {"kind": "leaky_relu", "alpha": 0.1},
    {"kind": "clipped_relu", "cap": 0.4},
    "identity",
]


@pytest.mark.parametrize("activation", ACTIVATIONS, ids=["relu", "leaky", "clipped", "identity"])
def test_prune_keeps_the_function_and_removes_binaries(activation):
    rng = np.random.default_rng(1)
    net = mlp(rng, [3, 24, 24, 24, 2], activation)
    domain = InputDomain.box(-0.4, 0.4, size=3)
    bounds = interval_bounds(net, domain)
    pruned = prune(net, bounds)
    assert_same_function(net, pruned, domain)
    before, after = binaries(net, domain), binaries(pruned, domain)
    assert after <= before
    assert sum(pruned.hidden_sizes) < sum(net.hidden_sizes)
    # every remaining neuron was unstable in the original bounds
    unstable = sum(int(phases(n, *bounds.pre_activation(net, n)).unstable.sum()) for n in net.activations)
    assert sum(pruned.hidden_sizes) <= unstable
    assert pruned.input_shape == net.input_shape and pruned.output_shape == net.output_shape
    if activation == "identity":
        assert pruned.activations == []


def test_prune_strictly_reduces_binaries_of_a_relu_net():
    net = random_mlp(np.random.default_rng(0), [3, 20, 20, 20, 2])
    domain = InputDomain.box(-0.3, 0.3, size=3)
    pruned = prune(net, interval_bounds(net, domain))
    # 12 + 17 + 20 unstable neurons; the folded (composed) affine maps have tighter interval images, so
    # the pruned network has fewer binaries: 12 + 16 + 17
    assert binaries(net, domain) == 49
    assert binaries(pruned, domain) == 45
    # pruning again with the pruned net's own bounds never breaks the function
    again = prune(pruned, interval_bounds(pruned, domain))
    assert_same_function(net, again, domain, seed=1)
    assert sum(again.hidden_sizes) <= sum(pruned.hidden_sizes)


def test_all_stable_network_prunes_to_a_single_affine_map():
    rng = np.random.default_rng(2)
    layers = [
        (rng.normal(size=(8, 2)) * 0.1, rng.choice([-2.0, 2.0], size=8)),
        (rng.normal(size=(8, 8)) * 0.1, rng.choice([-2.0, 2.0], size=8)),
        (rng.normal(size=(3, 8)), rng.normal(size=3)),
    ]
    net = Network.sequential(layers, ["relu", {"kind": "clipped_relu", "cap": 1.0}])
    domain = InputDomain.box(-1.0, 1.0, size=2)
    bounds = interval_bounds(net, domain)
    assert all(row["unstable"] == 0 for row in stability_counts(net, bounds))
    pruned = prune(net, bounds)
    assert pruned.activations == []
    assert [type(n) for n in pruned.order] == [InputNode, AffineNode]
    assert pruned[pruned.output].inputs == (pruned.input.name,)
    assert_same_function(net, pruned, domain)
    # the affine map is W x + b with W = W3 diag(active) W2 diag(active) W1 etc.: check on a point
    np.testing.assert_allclose(pruned.forward(np.zeros(2)), net.forward(np.zeros(2)), atol=1e-12)


def test_saturated_clipped_neurons_fold_into_the_bias():
    # neuron 0 always saturated (pre in [2, 4] > cap 1), neuron 1 unstable, neuron 2 always off
    layers = [(np.array([[1.0], [1.0], [1.0]]), np.array([3.0, 0.0, -5.0])), (np.array([[2.0, -1.0, 7.0]]), np.array([0.5]))]
    net = Network.sequential(layers, {"kind": "clipped_relu", "cap": 1.0})
    domain = InputDomain.box(-1.0, 1.0, size=1)
    pruned = prune(net, interval_bounds(net, domain))
    assert pruned.hidden_sizes == [1]
    assert pruned[pruned.output].bias[0] == pytest.approx(0.5 + 2.0 * 1.0)  # b + w * cap
    assert_same_function(net, pruned, domain)


def test_neurons_with_zero_outgoing_weights_are_removed_backwards():
    rng = np.random.default_rng(3)
    w1, b1 = rng.normal(size=(6, 2)), rng.normal(scale=0.1, size=6)
    w2, b2 = rng.normal(size=(5, 6)), rng.normal(scale=0.1, size=5)
    w3, b3 = rng.normal(size=(1, 5)), rng.normal(size=1)
    w3[0, [1, 4]] = 0.0  # layer-2 neurons 1 and 4 feed nothing
    w2[:, 2] = 0.0  # layer-1 neuron 2 feeds nothing
    w2[[0, 2, 3], 5] = 0.0  # layer-1 neuron 5 feeds only layer-2 neurons 1 and 4 (removed)
    net = Network.sequential([(w1, b1), (w2, b2), (w3, b3)], "relu")
    domain = InputDomain.box(-1.0, 1.0, size=2)
    bounds = interval_bounds(net, domain)
    # make every neuron unstable so that only the zero-column rule can remove them
    loose = Bounds({k: v - 100.0 for k, v in bounds.lower.items()}, {k: v + 100.0 for k, v in bounds.upper.items()})
    pruned = prune(net, loose)
    assert pruned.hidden_sizes == [4, 3]
    assert_same_function(net, pruned, domain)


def test_nothing_to_prune_gives_the_same_network():
    rng = np.random.default_rng(4)
    net = random_mlp(rng, [2, 6, 6, 1])
    bounds = interval_bounds(net, InputDomain.box(-1, 1, size=2))
    loose = Bounds({k: v - 100.0 for k, v in bounds.lower.items()}, {k: v + 100.0 for k, v in bounds.upper.items()})
    pruned = prune(net, loose)
    assert pruned.content_hash == net.content_hash


def test_prune_a_dag_with_a_residual_connection_and_an_activation_output():
    rng = np.random.default_rng(5)
    nodes = [
        InputNode("x", 3),
        AffineNode("a1", 10, ("x",), (rng.normal(size=(10, 3)),), rng.normal(scale=0.5, size=10)),
        ActivationNode("h1", 10, ("a1",), kind="leaky_relu", alpha=0.2),
        AffineNode("a2", 10, ("h1", "x"), (rng.normal(size=(10, 10)) * 0.3, rng.normal(size=(10, 3))), rng.normal(size=10)),
        ActivationNode("h2", 10, ("a2",), kind="clipped_relu", cap=0.8),
        AffineNode("a3", 4, ("h2", "h1"), (rng.normal(size=(4, 10)), rng.normal(size=(4, 10))), rng.normal(size=4)),
        ActivationNode("out", 4, ("a3",), kind="relu"),
    ]
    net = Network(nodes, "out")
    domain = InputDomain.box(-0.3, 0.3, size=3)
    pruned = prune(net, interval_bounds(net, domain))
    assert_same_function(net, pruned, domain)
    assert sum(pruned.hidden_sizes) < sum(net.hidden_sizes)
    assert pruned.output_size == 4


def test_tolerance_makes_pruning_lossy_but_bounded():
    rng = np.random.default_rng(6)
    net = mlp(rng, [2, 16, 1], "relu")
    domain = InputDomain.box(-1.0, 1.0, size=2)
    bounds = interval_bounds(net, domain)
    # shift every bound so that each neuron sits just past a kink: exact pruning keeps all of them
    lo, hi = bounds.lower["linear0"], bounds.upper["linear0"]
    nudged = bounds.copy()
    nudged.lower["linear0"] = np.where(lo >= 0, -1e-4, lo)
    nudged.upper["linear0"] = np.where(hi <= 0, 1e-4, hi)
    assert prune(net, nudged).hidden_sizes[0] >= prune(net, bounds).hidden_sizes[0]
    lossy = prune(net, nudged, tol=1e-3)
    assert lossy.hidden_sizes[0] <= prune(net, bounds).hidden_sizes[0]
    assert_same_function(net, lossy, domain)  # the original bounds were exact, so nothing was lost
    with pytest.raises(RelumilpError):
        prune(net, bounds, tol=-1.0)
    with pytest.raises(InvalidNetworkError):
        prune(net, Bounds({}, {}))


@settings(max_examples=25, deadline=None)
@given(
    seed=st.integers(0, 10_000),
    sizes=st.lists(st.integers(1, 8), min_size=1, max_size=3),
    kind=st.sampled_from(["relu", "leaky_relu", "clipped_relu"]),
    radius=st.floats(0.01, 2.0),
)
def test_prune_is_lossless_on_random_networks(seed, sizes, kind, radius):
    rng = np.random.default_rng(seed)
    spec = {"kind": kind, "alpha": 0.05, "cap": 0.5} if kind != "relu" else "relu"
    net = mlp(rng, [2, *sizes, 2], spec)
    domain = InputDomain.box(rng.uniform(-1, 0, size=2) * radius, rng.uniform(0, 1, size=2) * radius)
    pruned = prune(net, interval_bounds(net, domain))
    x = domain.sample(500, seed)
    np.testing.assert_allclose(pruned.forward(x), net.forward(x), rtol=1e-9, atol=1e-9)
    assert binaries(pruned, domain) <= binaries(net, domain)


def test_prune_module_converts_bounds_and_prunes():
    frontends = pytest.importorskip("relumilp.frontends")
    if not hasattr(frontends, "load_network"):
        pytest.skip("relumilp.frontends.load_network is not available yet")
    import torch
    from torch import nn

    from relumilp.train import ClippedReLU

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        model = nn.Sequential(nn.Linear(2, 16), nn.ReLU(), nn.Linear(16, 16), ClippedReLU(0.5), nn.Linear(16, 1)).double()
    pruned = prune_module(model, [-0.2, -0.2], [0.2, 0.2])
    domain = InputDomain.box(-0.2, 0.2, size=2)
    x = domain.sample(N_SAMPLES, 0)
    with torch.no_grad():
        want = model(torch.as_tensor(x)).numpy()
    np.testing.assert_allclose(pruned.forward(x), want, rtol=1e-9, atol=1e-9)
    assert sum(pruned.hidden_sizes) < 32
    same = prune_module(model, domain)
    assert same.content_hash == pruned.content_hash


# -- A pruned network remembers the box it was pruned over and refuses a domain reaching outside it.


def _net():
    W1 = np.array([[1.0, 0.0], [0.0, 1.0], [1.0, -1.0]])
    b1 = np.array([0.2, 0.3, 0.0])
    return relumilp.Network.sequential([(W1, b1), (np.array([[-1.0, -1.0, 0.5]]), np.zeros(1))], "relu")


def test_pruned_network_refuses_a_bigger_domain(tmp_path):
    net = _net()
    pruned = prune(net, relumilp.compute_bounds(net, ([0, 0], [1, 1])))
    assert pruned.hidden_sizes == [1]
    # inside the box: the pruned optimum is the original's
    inside = relumilp.optimize(pruned, ([0, 0], [1, 1]), maximize=0)
    assert inside.objective == pytest.approx(relumilp.optimize(net, ([0, 0], [1, 1]), maximize=0).objective)
    # outside: refused, also after a round trip through .npz (the original's optimum there is 0.4, the pruned 1.5)
    path = tmp_path / "pruned.npz"
    pruned.save(path)
    for candidate in (pruned, relumilp.Network.load(path)):
        with pytest.raises(relumilp.RelumilpError, match="pruned over"):
            relumilp.optimize(candidate, ([-1, -1], [1, 1]), maximize=0)


# -- prune(..., tol) changes every neuron by at most tol, whatever the slope change at the kink.


@pytest.mark.parametrize("spec", ["relu", {"kind": "leaky_relu", "alpha": -1.0},
                                  {"kind": "pwl", "breakpoints": [0.0], "slopes": [0.0, 10.0], "offset": 0.0},
                                  {"kind": "hard_sigmoid", "alpha": 0.2, "beta": 0.5}])
@pytest.mark.parametrize("low", [-0.008, -0.0005, -0.3])
def test_lossy_pruning_error_is_at_most_tol(spec, low):
    tol = 0.01
    net = relumilp.Network.sequential([(np.array([[1.0]]), np.array([0.0])), (np.array([[1.0]]), np.array([0.0]))], spec)
    box = ([low], [1.0])
    pruned = prune(net, relumilp.compute_bounds(net, box), tol=tol)
    x = np.linspace(low, 1.0, 20001)[:, None]
    assert np.abs(net.forward(x) - pruned.forward(x)).max() <= tol * (1 + 1e-12)


def test_pruned_network_refuses_a_bigger_box_with_precomputed_bounds_too():
    """Given bounds skip compute_bounds: optimize and compile_network still check the pruned box."""
    W1 = np.array([[1.0, 0.0], [0.0, 1.0], [1.0, -1.0]])
    net = Network.sequential([(W1, np.array([0.2, 0.3, 0.0])), (np.array([[-1.0, -1.0, 0.5]]), np.zeros(1))], "relu")
    pruned = prune(net, relumilp.compute_bounds(net, ([0, 0], [1, 1])))
    wide = relumilp.compute_bounds(net, ([-1, -1], [1, 1]))  # of the original: the right sizes only by chance
    for call in (lambda: relumilp.optimize(pruned, ([-1, -1], [1, 1]), minimize=0, bounds=wide),
                 lambda: relumilp.compile_network(pruned, ([-1, -1], [1, 1]), bounds=wide)):
        with pytest.raises(relumilp.RelumilpError, match="pruned over"):
            call()


def test_pruned_network_keeps_the_rows_of_its_domain(tmp_path):
    """Pruned over {x in [-1, 1]^2, x0 + x1 >= 1.5} with LP bounds (which use the row), the network equals the
    original only there: the same box without the row is refused; the row itself, or a box inside it, is fine."""
    W1 = np.array([[1.0, 1.0], [1.0, -1.0], [-1.0, 1.0]])
    net = Network.sequential([(W1, np.array([-1.0, 0.0, 0.0])), (np.array([[1.0, -1.0, -1.0]]), np.zeros(1))], "relu")
    A, b = np.array([[-1.0, -1.0]]), np.array([-1.5])
    domain = InputDomain(np.array([-1.0, -1.0]), np.array([1.0, 1.0]), A, b)
    pruned = prune(net, relumilp.compute_bounds(net, domain, "lp"))
    assert pruned.valid_rows is not None and pruned.activations[0].size == 2  # x0 + x1 - 1 >= 0.5 there: folded
    with pytest.raises(relumilp.RelumilpError, match="rows A x <= b"):
        relumilp.optimize(pruned, ([-1, -1], [1, 1]), minimize=0)
    inside = relumilp.optimize(pruned, domain, minimize=0)
    assert inside.status == "optimal"
    assert inside.objective == pytest.approx(relumilp.optimize(net, domain, minimize=0).objective, abs=1e-9)
    assert relumilp.optimize(pruned, ([0.8, 0.8], [1, 1]), minimize=0).status == "optimal"  # a box inside the row
    pruned.save(tmp_path / "pruned.npz")
    with pytest.raises(relumilp.RelumilpError, match="rows A x <= b"):  # the rows travel with the file
        relumilp.optimize(Network.load(tmp_path / "pruned.npz"), ([-1, -1], [1, 1]), minimize=0)
