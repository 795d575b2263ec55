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


def _model_with_block(seed=21):
    net = random_mlp(np.random.default_rng(seed), [2, 8, 8, 2])
    m = pyo.ConcreteModel()
    m.x = pyo.Var(range(2), bounds=(-1, 1))
    block = relumilp.add_network(m, net, inputs=m.x)
    m.obj = pyo.Objective(expr=block.outputs[0] - block.outputs[1], sense=pyo.maximize)
    return m, net, block


def test_add_network_returns_a_declared_network_block():
    from relumilp.api import NetworkBlockData, network_blocks

    m, net, block = _model_with_block()
    assert isinstance(block, relumilp.NetworkBlock) and isinstance(block, NetworkBlockData)
    assert type(block).__name__ == "ScalarNetworkBlock"
    # found by type, also inside a user's sub-block, and not when deactivated
    m.sub = pyo.Block()
    inner = relumilp.add_network(m.sub, net, input_bounds=([-1, -1], [1, 1]))
    assert network_blocks(m) == [block, inner]
    inner.deactivate()
    assert network_blocks(m) == [block]
    assert block.stats() == block.compiled.stats() and block.stats()["binaries"] == len(block.column_vars) - sum(
        len(block.nodes[k].y) for k in block.compiled.milp.node_columns)


def test_warm_start_satisfies_every_row_of_the_block():
    m, net, block = _model_with_block()
    x = np.array([0.3, -0.7])
    block.warm_start(x)
    vector = np.array([v.value for v in block.column_vars])
    assert block.compiled.milp.max_violation(vector) <= 1e-12
    np.testing.assert_allclose([block.outputs[j].value for j in range(2)], net.forward(x), atol=1e-12)
    check = block.check(nodes=True)
    assert check.max_error <= 1e-12 and max(check.nodes.values()) <= 1e-12
    np.testing.assert_array_equal(check.x, x)


@pytest.mark.parametrize("solver", ["highs", "appsi_highs"])
def test_get_error_after_solve_is_zero_and_catches_corrupted_values(solver):
    if solver != "highs" and not pyo.SolverFactory(solver).available(exception_flag=False):
        pytest.skip(f"{solver} not available")
    m, net, block = _model_with_block()
    result = relumilp.solve(m, solver=solver, check="raise")
    assert result.status == "optimal"
    errors = block.get_error()
    assert errors.shape == (2,) and errors.max() <= 1e-6
    check = block.check()
    np.testing.assert_allclose(check.y, net.forward(check.x), atol=0)
    assert check.matches()
    block.outputs[1].set_value(block.outputs[1].value + 5.0)
    assert block.get_error()[1] == pytest.approx(5.0, abs=1e-6) and not block.check().matches()
    block.outputs[1].set_value(None)  # a value the solver did not load is never a match
    assert block.check().max_error == np.inf


def test_solve_never_certifies_a_block_that_does_not_match(monkeypatch):
    from relumilp.api import NetworkBlockData

    m, net, block = _model_with_block()
    real = NetworkBlockData.check

    def corrupted(self, nodes=False):
        report = real(self, nodes)
        report.y_milp = report.y_milp + 1.0
        report.errors = np.abs(report.y - report.y_milp)
        report.max_error = float(report.errors.max())
        return report

    monkeypatch.setattr(NetworkBlockData, "check", corrupted)
    with pytest.warns(UserWarning, match="differ from the forward pass"):
        result = relumilp.solve(m)
    assert result.status == "unknown" and result.blocks[0]["matches"] is False
    with pytest.raises(relumilp.SolveError):
        relumilp.solve(m, check="raise")


def test_compute_bounds_accepts_every_domain_form():
    net = random_mlp(np.random.default_rng(3), [2, 5, 1])
    box = relumilp.InputDomain([-1, -1], [1, 1])
    reference = relumilp.compute_bounds(net, box)
    for domain in (([-1, -1], [1, 1]), (-1, 1), {"lower": [-1, -1], "upper": [1, 1]}):
        bounds = relumilp.compute_bounds(net, domain)
        for name in [node.name for node in net]:
            np.testing.assert_array_equal(bounds[name][0], reference[name][0])
            np.testing.assert_array_equal(bounds[name][1], reference[name][1])
    cut = relumilp.compute_bounds(net, {"lower": [-1, -1], "upper": [1, 1], "A": [[1.0, 1.0]], "b": [-1.5]}, "lp",
                                  workers=1)
    output = net.output
    assert cut[output][1][0] <= reference[output][1][0] + 1e-9
    with pytest.raises(InvalidDomainError, match="3 bounds"):
        relumilp.compute_bounds(net, ([0, 0, 0], [1, 1, 1]))


def test_batch_embedding_one_block_per_sample_and_bounds_once_per_box(monkeypatch):
    import relumilp.api as api

    net = relumilp.examples.peaks()
    m = pyo.ConcreteModel()
    m.X = pyo.Var(range(5), range(2), bounds=(-3, 3))
    m.Y = pyo.Var(range(5), range(1))
    calls = []
    original = api.compile_network
    monkeypatch.setattr(api, "compile_network", lambda *a, **k: calls.append(1) or original(*a, **k))
    blocks = relumilp.add_network(m, net, inputs=m.X, outputs=m.Y)
    assert len(blocks) == 5 and len(calls) == 1  # five samples, one box: compiled once
    for k in range(5):  # pin each sample's input; the batch must reproduce the network on each
        for i in range(2):
            m.X[k, i].fix(-2.0 + k + 0.5 * i)
    m.obj = pyo.Objective(expr=sum(m.Y[k, 0] for k in range(5)))
    result = relumilp.solve(m)
    assert result.status == "optimal"
    for k in range(5):
        x = np.array([m.X[k, 0].value, m.X[k, 1].value])
        assert m.Y[k, 0].value == pytest.approx(float(net.forward(x)[0]), abs=1e-6)
        assert blocks[k].get_error().max() < 1e-6


def test_an_output_index_that_is_not_an_integer_is_a_one_line_error():
    net = random_mlp(np.random.default_rng(0), [2, 3, 2])
    for index in (np.array([1.0, 0.0]), 0.5, True):
        with pytest.raises(relumilp.RelumilpError, match="one output index .*objective=") as err:
            relumilp.optimize(net, ([-1, -1], [1, 1]), maximize=index)
        assert "\n" not in str(err.value)


def test_optimum_on_a_domain_row_is_certified_at_the_row():
    """The solver's point breaks a row ``A x <= b`` by rounding only: it is moved onto the row, not half-way
    to a sampled point (which cost the certificate)."""
    rng = np.random.default_rng(7)
    failures = []
    for seed in range(12):
        net = random_mlp(np.random.default_rng(seed), [3, 6, 3])
        A, b = rng.normal(size=(1, 3)), np.array([-0.3])
        domain = relumilp.InputDomain.of({"lower": -np.ones(3), "upper": np.ones(3), "A": A, "b": b}, 3)
        c = rng.normal(size=3)
        if not domain.contains(domain.sample(2000, rng)).any():
            continue
        result = relumilp.optimize(net, domain, objective=(c, "max"), time_limit=30)
        assert result.status in ("optimal", "unknown")
        assert np.all(A @ result.x <= b) and domain.contains(result.x[None], tol=0.0).all()
        best, _ = brute_force_optima(net, -np.ones(3), np.ones(3), c, A, b)["max"]
        assert result.objective <= best + 1e-6 * max(1.0, abs(best))
        failures += [seed] if result.status != "optimal" or result.objective < best - 1e-6 * max(1.0, abs(best)) else []
    assert not failures


@pytest.mark.parametrize("objective,gap,pattern", [
    (([np.nan, 1.0], "max"), None, "finite"),
    (([np.inf, 1.0], "max"), None, "finite"),
    (([1.0, "a"], "max"), None, "numbers"),
    (([1.0, 1.0], "max"), 0.0, "at least"),
    (([1.0, 1.0], "max"), "abc", "must be a number"),
])
def test_bad_objectives_and_gaps_are_one_line_errors(objective, gap, pattern):
    from relumilp.errors import RelumilpError

    net = random_mlp(np.random.default_rng(0), [2, 4, 2])
    with pytest.raises(RelumilpError, match=pattern):
        relumilp.optimize(net, (-np.ones(2), np.ones(2)), objective=objective, mip_gap=gap, time_limit=10)


def test_inputs_and_outputs_may_be_pyomo_expressions():
    net = random_mlp(np.random.default_rng(3), [2, 6, 1])
    m = pyo.ConcreteModel()
    m.u = pyo.Var(bounds=(-1, 1))
    m.w = pyo.Var()
    m.v = pyo.Var()
    m.v.fix(0.25)  # fixed, with no bounds: its value is its box
    relumilp.add_network(m, net, inputs=[m.u + 0.5 * m.v, 2 * m.u], outputs=[3 * m.w])
    m.obj = pyo.Objective(expr=m.w, sense=pyo.maximize)
    result = relumilp.solve(m, time_limit=30)
    u = np.linspace(-1, 1, 40001)
    best = net.forward(np.stack([u + 0.125, 2 * u], axis=1))[:, 0].max() / 3
    assert result.status == "optimal" and pyo.value(m.w) == pytest.approx(best, abs=1e-6)
    assert -1.0 <= pyo.value(m.u) <= 1.0


def test_an_unbounded_model_says_so():
    net = random_mlp(np.random.default_rng(4), [2, 4, 1])
    m = pyo.ConcreteModel()
    m.x = pyo.Var(range(2), bounds=(-1, 1))
    m.y = pyo.Var()
    m.free = pyo.Var()
    relumilp.add_network(m, net, inputs=m.x, outputs=m.y)
    m.obj = pyo.Objective(expr=m.y + m.free, sense=pyo.maximize)
    result = relumilp.solve(m, time_limit=30)
    assert result.status == "unbounded" and any("unbounded" in note for note in result.notes)
    assert result.objective is None  # points, but no optimum


def _grid_max(net, fixed=None, n=2001):
    g = np.linspace(-1, 1, n)
    points = np.c_[g, np.full(n, fixed)] if fixed is not None else np.stack(np.meshgrid(g[::4], g[::4]), -1).reshape(-1, 2)
    return float(net.forward(points)[:, 0].max())


def test_a_parametric_study_by_fixing_inputs_and_what_the_block_refuses():
    """A fixed input keeps its declared bounds as the block's box, so later cases solve right; a box read
    from a value that changes later (a Param) is refused, not silently cut off."""
    net = random_mlp(np.random.default_rng(5), [2, 8, 1])
    m = pyo.ConcreteModel()
    m.x = pyo.Var(range(2), bounds=(-1, 1))
    m.y = pyo.Var()
    m.x[1].fix(0.0)
    relumilp.add_network(m, net, inputs=m.x, outputs=m.y)
    m.obj = pyo.Objective(expr=m.y, sense=pyo.maximize)
    for value in (0.0, 0.5, None):
        if value is None:
            m.x[1].unfix()
        else:
            m.x[1].fix(value)
        result = relumilp.solve(m, time_limit=30)
        assert result.status == "optimal"
        assert result.objective == pytest.approx(_grid_max(net, value), abs=2e-3)
        assert result.objective >= _grid_max(net, value) - 1e-9
    p = pyo.ConcreteModel()
    p.x = pyo.Var(bounds=(-1, 1))
    p.q = pyo.Param(initialize=0.0, mutable=True)
    p.y = pyo.Var()
    relumilp.add_network(p, net, inputs=[p.x, p.q], outputs=p.y)
    p.obj = pyo.Objective(expr=p.y, sense=pyo.maximize)
    p.q = 0.5
    with pytest.raises(relumilp.errors.SolveError, match="outside the box"):
        relumilp.solve(p, time_limit=30)


def test_a_batch_with_one_output_per_sample_and_bad_counts():
    net = random_mlp(np.random.default_rng(6), [2, 4, 1])
    m = pyo.ConcreteModel()
    m.S = pyo.Set(initialize=[0, 1, 2])
    m.X = pyo.Var(m.S, [0, 1], bounds=(-1, 1))
    m.Y = pyo.Var(m.S)  # one output per sample: once silently left unlinked
    relumilp.add_network(m, net, inputs=m.X, outputs=m.Y)
    m.obj = pyo.Objective(expr=sum(m.Y[s] for s in m.S), sense=pyo.maximize)
    result = relumilp.solve(m, time_limit=30)
    assert result.status == "optimal" and result.objective == pytest.approx(3 * _grid_max(net), abs=1e-2)
    bad = pyo.ConcreteModel()
    bad.X = pyo.Var(range(3), range(2), bounds=(-1, 1))
    bad.Y = pyo.Var(range(2))
    with pytest.raises(InvalidDomainError, match="3 input samples"):
        relumilp.add_network(bad, net, inputs=bad.X, outputs=bad.Y)


def test_bad_arguments_of_the_pyomo_door_are_one_line_errors():
    from relumilp.errors import RelumilpError

    net = random_mlp(np.random.default_rng(7), [2, 4, 1])
    m = pyo.ConcreteModel()
    m.x = pyo.Var(range(2), bounds=(-1, 1))
    m.y = pyo.Var()
    for call in (lambda: relumilp.add_network(None, net, inputs=m.x),
                 lambda: relumilp.add_network(m, net, inputs={"a": m.x[0]}),
                 lambda: relumilp.add_network(m, net, inputs=[m.x[0], 0.5]),
                 lambda: relumilp.add_network(m, net, inputs=m.x, bounds="foo"),
                 lambda: relumilp.solve(None),
                 lambda: relumilp.solve(m, solver=None)):
        with pytest.raises(RelumilpError):
            call()
    block = relumilp.add_network(m, net, inputs=m.x, outputs=m.y)
    for x in ("ab", [5.0, 0.2], [np.nan, 0.0]):
        with pytest.raises(RelumilpError, match="warm_start"):
            block.warm_start(x)
    m.fixed = pyo.Constraint(expr=m.x[0] <= 0.3)
    m.x[0].fix(0.5)  # a constraint of fixed values only, and false
    m.obj = pyo.Objective(expr=m.y, sense=pyo.maximize)
    assert relumilp.solve(m, time_limit=30).status == "infeasible"


def test_given_bounds_that_are_not_this_networks_are_refused():
    from relumilp.errors import RelumilpError

    net = random_mlp(np.random.default_rng(8), [2, 6, 1])
    other = random_mlp(np.random.default_rng(9), [2, 6, 1])
    small = relumilp.compute_bounds(net, (-0.1 * np.ones(2), 0.1 * np.ones(2)), "interval")
    with pytest.raises(RelumilpError, match="smaller input box"):
        relumilp.compile_network(net, (-np.ones(2), np.ones(2)), bounds=small)
    with pytest.raises(RelumilpError, match="do not hold"):
        relumilp.compile_network(net, (-np.ones(2), np.ones(2)),
                                 bounds=relumilp.compute_bounds(other, (-np.ones(2), np.ones(2)), "interval"))
    with pytest.raises(RelumilpError, match="do not fit"):
        relumilp.compile_network(net, (-np.ones(2), np.ones(2)), bounds=relumilp.compute_bounds(
            random_mlp(np.random.default_rng(1), [2, 3, 1]), (-np.ones(2), np.ones(2)), "interval"))
