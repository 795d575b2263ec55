"""The big-M MILP equals brute force on random tiny networks (the formulation's main oracle)."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from oracles import brute_force_optima
from relumilp.domain import InputDomain
from relumilp.formulation.highs import to_highs
from relumilp.ir import Network
from relumilp.pipeline import compile_network
from relumilp.optimization import optimize


OLD_KINDS = ("relu", "leaky_relu", "clipped_relu")
ALL_KINDS = (*OLD_KINDS, "clip")


def random_network(seed: int, kinds=OLD_KINDS) -> tuple[Network, InputDomain]:
    """1-3 inputs, 1-3 hidden layers with <= 12 units in all, mixed activations of ``kinds``."""
    rng = np.random.default_rng(seed)
    n_in = int(rng.integers(1, 4))
    depth = int(rng.integers(1, 4))
    widths = []
    budget = 12
    for k in range(depth):
        w = int(rng.integers(1, max(2, budget - (depth - k - 1)) + 1))
        w = min(w, budget - (depth - k - 1), 6)
        widths.append(max(1, w))
        budget -= widths[-1]
    sizes = [n_in, *widths, int(rng.integers(1, 3))]
    layers = [(rng.normal(size=(o, i)), rng.normal(scale=0.5, size=o)) for i, o in zip(sizes[:-1], sizes[1:])]
    acts = []
    for _ in widths:
        kind = rng.choice(list(kinds))
        if kind == "leaky_relu":
            acts.append({"kind": kind, "alpha": float(rng.choice([0.01, 0.2, -0.3]))})
        elif kind == "clipped_relu":
            acts.append({"kind": kind, "cap": float(rng.uniform(0.2, 2.0))})
        elif kind == "clip":  # kinks anywhere: both negative, straddling 0, both positive
            low = float(rng.uniform(-1.5, 1.0))
            acts.append({"kind": kind, "low": low, "high": low + float(rng.uniform(0.2, 2.0))})
        else:
            acts.append({"kind": kind})
    net = Network.sequential(layers, acts)
    center = rng.normal(size=n_in)
    half = rng.uniform(0.1, 2.0, size=n_in)
    return net, InputDomain(center - half, center + half)


@settings(max_examples=50, deadline=None, derandomize=True, suppress_health_check=list(HealthCheck))
@given(seed=st.integers(0, 2**31 - 1))
def test_milp_optimum_equals_brute_force(seed):
    check_milp_against_brute_force(*random_network(seed))


@settings(max_examples=25, deadline=None, derandomize=True, suppress_health_check=list(HealthCheck))
@given(seed=st.integers(0, 2**31 - 1))
def test_milp_optimum_equals_brute_force_with_clip(seed):
    check_milp_against_brute_force(*random_network(seed, ALL_KINDS))


@pytest.mark.slow
@settings(max_examples=400, deadline=None, suppress_health_check=list(HealthCheck))
@given(seed=st.integers(0, 2**31 - 1), with_clip=st.booleans())
def test_milp_optimum_equals_brute_force_many(seed, with_clip):
    """The sweep above on 400 further networks (random seeds: new ones every run)."""
    check_milp_against_brute_force(*random_network(seed, ALL_KINDS if with_clip else OLD_KINDS))


def check_milp_against_brute_force(net, domain):
    k = net.output_size - 1
    coefficients = np.zeros(net.output_size)
    coefficients[k] = 1.0
    expected = brute_force_optima(net, domain.lower, domain.upper, coefficients)
    for sense in ("min", "max"):
        with warnings.catch_warnings():
            warnings.simplefilter("error")  # a forward-pass mismatch warning fails the test
            # the big-M MILP itself (method="auto" would branch on input boxes: tests/test_bab.py)
            result = optimize(net, domain, **{"minimize" if sense == "min" else "maximize": k}, method="milp")
        assert result.status == "optimal"
        value = expected[sense][0]
        assert result.objective == pytest.approx(value, abs=1e-6, rel=1e-6)
        # The returned point is a real input whose forward pass attains the objective.
        assert np.all(result.x >= domain.lower - 1e-9) and np.all(result.x <= domain.upper + 1e-9)
        assert net.forward(result.x)[k] == pytest.approx(result.objective, abs=1e-6, rel=1e-6)


@pytest.mark.parametrize("seed", range(12))
def test_highspy_backend_agrees_with_pyomo(seed):
    net, domain = random_network(1000 + seed)
    compiled = compile_network(net, domain)
    objective = np.ones(net.output_size)
    h = compiled.to_highs(objective, "max")
    h.run()
    via_highs = h.getInfo().objective_function_value
    via_pyomo = optimize(net, domain, objective=(objective, "max")).objective
    assert via_highs == pytest.approx(via_pyomo, abs=1e-7)
    # The MILP's own solution satisfies every row, and its input reproduces the output.
    v = np.array(h.getSolution().col_value)
    assert compiled.milp.max_violation(v) < 1e-6
    assert net.forward(v[compiled.milp.input_columns]) == pytest.approx(v[compiled.milp.output_columns], abs=1e-6)


def test_linear_input_constraints_are_respected():
    net, domain = random_network(7)
    A = np.ones((1, net.input_size))
    b = np.array([domain.lower.sum() + 0.3 * (domain.upper - domain.lower).sum()])
    cut = InputDomain(domain.lower, domain.upper, A, b)
    coefficients = np.zeros(net.output_size)
    coefficients[0] = 1.0
    expected = brute_force_optima(net, cut.lower, cut.upper, coefficients, A, b)
    result = optimize(net, cut, maximize=0)
    assert result.objective == pytest.approx(expected["max"][0], abs=1e-6)
    assert (A @ result.x)[0] <= b[0] + 1e-7


@pytest.mark.parametrize("seed,kinds", [(s, OLD_KINDS) for s in range(40)] + [(s, ALL_KINDS) for s in range(40, 60)])
def test_hull_relaxation_equals_the_relaxed_big_m_and_contains_the_graph(seed, kinds):
    """The hull LP (LP-OBBT's model) contains every forward pass of the network; on every neuron its
    optimum equals the big-M LP relaxation's for ReLU / LeakyReLU nets and is never looser with
    clipped ReLUs (whose two-binary big-M relaxation is not sharp)."""
    import highspy

    from relumilp.bounds import compute_bounds
    from relumilp.formulation.bigm import build_lp_relaxation, build_milp

    net, domain = random_network(seed, kinds)
    clipped = any(act.kind in ("clipped_relu", "clip") for act in net.activations)
    bounds = compute_bounds(net, domain, "interval")
    hull = build_lp_relaxation(net, bounds, domain)
    assert hull.num_binaries == 0
    trace = net.forward_all(domain.sample(200, seed))
    v = np.zeros((200, hull.num_columns))
    for name, columns in hull.node_columns.items():
        v[:, columns] = trace[name]
    for point in v:
        assert hull.max_violation(point) <= 1e-9
    for node in net.affines:
        relaxed = build_milp(net, bounds, domain, upto=node.name).relaxed()
        lp = build_lp_relaxation(net, bounds, domain, upto=node.name)
        assert lp.num_rows <= relaxed.num_rows
        for model in (relaxed, lp):
            model.h = to_highs(model)
            model.h.setOptionValue("output_flag", False)
        for j in range(node.size):
            for sign in (1.0, -1.0):
                values = []
                for model in (relaxed, lp):
                    h = model.h
                    h.changeColsCost(model.num_columns, np.arange(model.num_columns, dtype=np.int32),
                                     np.zeros(model.num_columns))
                    h.changeColCost(int(model.node_columns[node.name][j]), sign)
                    h.run()
                    assert h.getModelStatus() == highspy.HighsModelStatus.kOptimal
                    values.append(h.getInfo().objective_function_value)
                if clipped:
                    assert values[1] >= values[0] - 1e-9 * (1 + abs(values[0]))
                else:
                    assert values[0] == pytest.approx(values[1], rel=1e-9, abs=1e-9)
