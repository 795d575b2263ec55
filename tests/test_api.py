"""The Pyomo API: a network block linked into a larger model."""

from __future__ import annotations

import numpy as np
import pyomo.environ as pyo
import pytest

from conftest import random_mlp
from oracles import brute_force_optima
import relumilp
from relumilp.errors import InvalidDomainError


def test_block_in_larger_model_with_extra_constraints():
    rng = np.random.default_rng(11)
    net = random_mlp(rng, [2, 6, 5, 2])
    m = pyo.ConcreteModel()
    m.x = pyo.Var(range(2), bounds=(-1, 1))
    m.y = pyo.Var(range(2))
    block = relumilp.add_network(m, net, inputs=m.x, outputs=m.y)
    # A side constraint of the user's model on the network input.
    m.side = pyo.Constraint(expr=m.x[0] + m.x[1] <= 0.5)
    m.obj = pyo.Objective(expr=m.y[0] - 0.5 * m.y[1], sense=pyo.maximize)
    result = relumilp.solve(m, check="raise")
    assert result.status == "optimal"
    x = np.array([pyo.value(m.x[i]) for i in range(2)])
    assert x.sum() <= 0.5 + 1e-7
    expected = brute_force_optima(net, -np.ones(2), np.ones(2), np.array([1.0, -0.5]), A=np.ones((1, 2)), b=[0.5])
    assert result.objective == pytest.approx(expected["max"][0], abs=1e-6)
    np.testing.assert_allclose(result.y, net.forward(x), atol=1e-9)
    assert block.compiled.network is net
    # The block exposes its layers and binaries by name.
    assert len(block.nodes["act0"].z) == block.compiled.layers[0]["binaries"]


def test_two_networks_in_one_model():
    rng = np.random.default_rng(12)
    f, g = random_mlp(rng, [1, 4, 1]), random_mlp(rng, [1, 4, 1])
    m = pyo.ConcreteModel()
    m.x = pyo.Var(bounds=(-2, 2))
    bf = relumilp.add_network(m, f, inputs=[m.x])
    bg = relumilp.add_network(m, g, inputs=[m.x])
    assert bf.name != bg.name
    m.obj = pyo.Objective(expr=bf.outputs[0] + bg.outputs[0])
    result = relumilp.solve(m)
    assert len(result.blocks) == 2 and all(b["discrepancy"] < 1e-7 for b in result.blocks)
    grid = np.linspace(-2, 2, 40001)[:, None]
    assert result.objective <= (f.forward(grid) + g.forward(grid)).min() + 1e-9


def test_input_bounds_required():
    net = random_mlp(np.random.default_rng(13), [2, 3, 1])
    m = pyo.ConcreteModel()
    m.x = pyo.Var(range(2))
    with pytest.raises(InvalidDomainError, match="unbounded"):
        relumilp.add_network(m, net, inputs=m.x)
    with pytest.raises(InvalidDomainError, match="3 variables"):
        m.z = pyo.Var(range(3), bounds=(0, 1))
        relumilp.add_network(m, net, inputs=m.z, input_bounds=([0, 0], [1, 1]))


def test_optimize_reports_times_and_stats():
    net = relumilp.examples.peaks()
    width = net.hidden_sizes[0]
    small = relumilp.Network.sequential(net.dense_layers()[:1] + [(np.ones((1, width)), np.zeros(1))])
    result = relumilp.optimize(small, ([-3, -3], [3, 3]), minimize=0, method="milp")  # one model's stats
    assert set(result.times) == {"bounds", "build", "solve", "total"}
    assert {"binaries", "constraints", "stable_active", "stable_inactive", "unstable"} <= set(result.stats)
    assert result.stats["stable_active"] + result.stats["stable_inactive"] + result.stats["unstable"] == width


def test_solve_starts_unstarted_network_blocks_from_a_forward_pass():
    from relumilp.optimization import _start_network_blocks

    net = random_mlp(np.random.default_rng(5), [2, 8, 8, 1])
    m = pyo.ConcreteModel()
    m.x = pyo.Var(range(2), bounds=(-1, 1))
    block = relumilp.add_network(m, net, inputs=m.x)
    _start_network_blocks(m)
    centre = np.zeros(2)
    assert [block.inputs[i].value for i in range(2)] == [0.0, 0.0]
    assert block.outputs[0].value == pytest.approx(float(net.forward(centre)[0]), abs=1e-12)
    binaries = [v for v in block.component_data_objects(pyo.Var, descend_into=True) if v.is_binary()]
    assert binaries and all(v.value in (0.0, 1.0) for v in binaries)
    for c in block.component_data_objects(pyo.Constraint, descend_into=True):
        if "link" in c.name:
            continue  # the user's m.x has no values
        body = pyo.value(c.body)
        assert (c.lower is None or body >= pyo.value(c.lower) - 1e-9) and (c.upper is None or body <= pyo.value(c.upper) + 1e-9)
    # a start the caller made is kept
    for v in binaries:
        v.set_value(1.0 - v.value)
    flipped = [v.value for v in binaries]
    _start_network_blocks(m)
    assert [v.value for v in binaries] == flipped
