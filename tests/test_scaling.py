"""A-posteriori ReLU scaling: same function (bitwise), exactly scaled sound bounds, same optimum."""

from __future__ import annotations

import numpy as np
import pytest

from relumilp.bounds import compute_bounds
from relumilp.domain import InputDomain
from relumilp.errors import RelumilpError
from relumilp.ir import ActivationNode, Network
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
