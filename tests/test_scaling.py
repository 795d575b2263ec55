"""A-posteriori ReLU scaling: same function (bitwise), exactly scaled sound bounds, same optimum."""

from __future__ import annotations

import numpy as np
import pytest

from relumilp.bounds import compute_bounds
from relumilp.domain import InputDomain
from relumilp.errors import RelumilpError
import relumilp
from relumilp.activations import get
from relumilp.bounds import big_m_values
from relumilp.ir import ActivationNode, AffineNode, InputNode, Network
from relumilp.pipeline import compile_network
from relumilp.scaling import RULES, big_m_stats, scale_factors, scale_network
from relumilp.optimization import optimize
from test_bounds_symbolic import mixed_mlp, residual_dag, samples_with_corners


def clipped_net(seed: int = 0) -> Network:
    rng = np.random.default_rng(seed)
    layers = [(rng.normal(size=(8, 2)) * 3, rng.normal(size=8)), (rng.normal(size=(8, 8)), rng.normal(size=8)),
              (rng.normal(size=(2, 8)), np.zeros(2))]
    return Network.sequential(layers, [{"kind": "clipped_relu", "cap": 1.5}, {"kind": "leaky_relu", "alpha": 0.1}])


NETS = [("mixed", lambda: mixed_mlp(3, [3, 10, 10, 10, 2])), ("dag", residual_dag), ("clipped", clipped_net),
        ("relu", lambda: mixed_mlp(0, [2, 12, 12, 1]))]


@pytest.mark.parametrize("rule", RULES)
@pytest.mark.parametrize("label,make", NETS)
def test_scaling_keeps_the_function_and_scales_bounds_exactly(label, make, rule):
    net = make()
    domain = InputDomain.box(-1.0, 2.0, net.input_size)
    bounds = compute_bounds(net, domain, "symbolic")
    scaled, scaled_bounds = scale_network(net, bounds, rule)
    x = samples_with_corners(domain, 100_000 if rule == "unit" else 20_000, 1)
    before, after = net.forward_all(x), scaled.forward_all(x)
    np.testing.assert_allclose(after[net.output], before[net.output], rtol=0, atol=1e-9)
    assert np.array_equal(after[net.output], before[net.output])  # powers of two: bitwise equal
    scaled_bounds.check_sound(scaled, x)
    factors = scale_factors(net, bounds, rule)
    for node in net.order:  # bounds scale by the node's factor exactly: no recomputation
        source = node.inputs[0] if isinstance(node, ActivationNode) else node.name
        f = factors.get(source, np.ones(node.size))
        np.testing.assert_array_equal(scaled_bounds.lower[node.name], f * bounds.lower[node.name])
        np.testing.assert_array_equal(scaled_bounds.upper[node.name], f * bounds.upper[node.name])


def test_unit_rule_normalises_every_scaled_neuron():
    net = mixed_mlp(0, [2, 12, 12, 1])  # relu/leaky layers: per-neuron factors
    bounds = compute_bounds(net, InputDomain.box(-3.0, 3.0, 2), "interval")
    scaled, sb = scale_network(net, bounds, "unit")
    for node in scaled.affines[:-1]:
        m = np.maximum(np.abs(sb.lower[node.name]), np.abs(sb.upper[node.name]))
        assert np.all((m >= 2**-0.5 - 1e-12) & (m <= 2**0.5 + 1e-12)), node.name
    assert np.array_equal(sb.lower[net.output], bounds.lower[net.output])  # the output is never scaled


def test_clipped_layers_get_one_factor_and_a_scaled_cap():
    net = clipped_net()
    bounds = compute_bounds(net, InputDomain.box(-1.0, 1.0, 2), "symbolic")
    factors = scale_factors(net, bounds, "unit")
    first = factors[net.affines[0].name]
    assert np.all(first == first[0]) and first[0] != 1.0
    scaled, _ = scale_network(net, bounds, "unit")
    act = scaled.activations[0]
    assert isinstance(act, ActivationNode) and act.cap == pytest.approx(1.5 * first[0])


def test_big_m_statistics_before_and_after():
    net = mixed_mlp(0, [2, 12, 12, 1])
    bounds = compute_bounds(net, InputDomain.box(-3.0, 3.0, 2), "interval")
    before = big_m_stats(net, bounds)
    after = big_m_stats(*scale_network(net, bounds, "unit"))
    assert before["count"] == after["count"] > 0
    assert after["max"] <= 2**0.5 + 1e-12 < before["max"]


def test_unknown_rule_is_rejected():
    net = mixed_mlp(0, [2, 4, 1])
    bounds = compute_bounds(net, InputDomain.box(-1.0, 1.0, 2))
    with pytest.raises(RelumilpError, match="scaling rule"):
        scale_network(net, bounds, "magic")


@pytest.mark.parametrize("seed", [0, 1])
def test_optimize_gives_the_same_optimum_with_and_without_scaling(seed):
    net = mixed_mlp(20 + seed, [2, 6, 6, 1])
    domain = InputDomain.box(-2.0, 2.0, 2)
    plain = optimize(net, domain, maximize=0, tighten="lp")
    for scale in (True, "geomean"):
        scaled = optimize(net, domain, maximize=0, tighten="lp", scale=scale)
        assert scaled.objective == pytest.approx(plain.objective, rel=1e-6, abs=1e-6)
        np.testing.assert_allclose(net.forward(scaled.x)[0], scaled.objective, rtol=1e-6, atol=1e-6)


def test_compile_network_records_the_original():
    net = mixed_mlp(0, [2, 6, 6, 1])
    compiled = compile_network(net, InputDomain.box(-1.0, 1.0, 2), tighten="symbolic", scale=True)
    assert compiled.original is net and compiled.network is not net
    assert "scaling" in compiled.times


# -- Scaling must accept activation chains (act -> act) and leave the function and the output unchanged.


def _chain(second, output_is_activation):
    rng = np.random.default_rng(0)
    nodes = [InputNode("input", 2),
             AffineNode("linear0", 4, ("input",), (rng.normal(size=(4, 2)),), rng.normal(size=4)),
             ActivationNode("act0", 4, ("linear0",), get("relu")),
             ActivationNode("act1", 4, ("act0",), second)]
    if output_is_activation:
        return Network(nodes, "act1")
    nodes.append(AffineNode("linear1", 1, ("act1",), (rng.normal(size=(1, 4)),), rng.normal(size=1)))
    return Network(nodes, "linear1")


@pytest.mark.parametrize("rule", ["unit", "geomean", "layer"])
@pytest.mark.parametrize("second, output_is_activation", [
    (get("clip", low=-0.5, high=0.5), False), (get("clipped_relu", cap=0.7), False),
    (get("leaky_relu", alpha=0.1), True), (get("relu"), True)])
def test_scaling_accepts_activation_chains(second, output_is_activation, rule):
    net = _chain(second, output_is_activation)
    domain = InputDomain.box([-1, -1], [1, 1])
    bounds = compute_bounds(net, domain, "interval")
    scaled, scaled_bounds = scale_network(net, bounds, rule)
    x = domain.sample(2000, np.random.default_rng(1))
    assert np.array_equal(scaled.forward(x), net.forward(x))
    for name, value in scaled.forward_all(x).items():
        lo, hi = scaled_bounds[name]
        assert np.all(value >= lo) and np.all(value <= hi)


# -- Rescaling a kind without its own ``rescaled`` (hard sigmoid) must be exact: g(a x) == a f(x) bitwise.


@pytest.mark.parametrize("alpha, beta", [(-0.3, 0.1), (0.2, 0.5), (1 / 6, 0.5), (-0.7, 0.9), (0.3, -0.2)])
@pytest.mark.parametrize("factor", [2.0 ** -5, 0.25, 8.0])
def test_hard_sigmoid_rescaled_is_bitwise(alpha, beta, factor):
    f = get("hard_sigmoid", alpha=alpha, beta=beta)
    g = f.rescaled(factor)
    x = np.concatenate([np.linspace(-20, 20, 20001), np.array(f.breakpoints),
                        np.nextafter(np.array(f.breakpoints), np.inf), np.nextafter(np.array(f.breakpoints), -np.inf)])
    assert np.array_equal(g.apply(factor * x), factor * f.apply(x))
    assert np.array_equal(g.offsets, factor * f.offsets)


# -- big_m_values is what its docstring says: the ReLU big-M coefficients, a bound-range measure for other kinds.


def test_relu_big_m_is_the_largest_binary_coefficient():
    net = relumilp.Network.sequential([(np.array([[2.0, 1.0]]), np.array([0.5])), (np.ones((1, 1)), np.zeros(1))], "relu")
    compiled = relumilp.compile_network(net, ([-1, -1], [1, 1]))
    A = compiled.milp.A.toarray()
    largest = np.abs(A[:, compiled.milp.integrality]).max()
    assert abs(big_m_values(compiled.network, compiled.bounds)["act0"][0] - largest) < 1e-9


def test_scaling_skips_chains_through_a_smooth_kind():
    """affine -> relu -> sigmoid: the sigmoid has no rescaled form, so the affine node keeps factor 1."""
    torch = pytest.importorskip("torch")
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(2, 4), torch.nn.ReLU(), torch.nn.Sigmoid(), torch.nn.Linear(4, 1)).double()
    net = relumilp.load_network(model)
    scaled = optimize(net, ([-1, -1], [1, 1]), maximize=0, scale=True)
    plain = optimize(net, ([-1, -1], [1, 1]), maximize=0)
    assert scaled.status == plain.status == "optimal"
    assert abs(scaled.objective - plain.objective) <= 1e-6
