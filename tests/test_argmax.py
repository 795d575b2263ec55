"""Max/argmax constraints over network outputs, checked against brute force and the forward pass."""

from __future__ import annotations

import numpy as np
import pyomo.environ as pyo
import pytest

from conftest import random_mlp
from oracles import enumerate_patterns, linprog
import relumilp
from relumilp.formulation.argmax import add_argmax


def brute_force_min_of_max(net, lower, upper):
    """min_x max_i y_i(x): per activation pattern, min t s.t. t >= M_i x + m_i (an LP in (x, t))."""
    best = np.inf
    n = lower.size
    for G, h, M, m in enumerate_patterns(net, lower, upper):
        rows = [np.append(g, 0.0) for g in G] + [np.append(M[i], -1.0) for i in range(M.shape[0])]
        rhs = list(h) + [-m[i] for i in range(M.shape[0])]
        bounds = list(zip(lower, upper)) + [(-1e6, 1e6)]
        res = linprog(np.append(np.zeros(n), 1.0), A_ub=np.array(rows), b_ub=np.array(rhs), bounds=bounds)
        if res.status == 0:
            best = min(best, res.x[-1])
    return best


@pytest.mark.parametrize("seed", range(6))
def test_min_of_max_output_equals_brute_force(seed):
    net = random_mlp(np.random.default_rng(seed), [2, 5, 4, 3])
    m = pyo.ConcreteModel()
    block = relumilp.add_network(m, net, input_bounds=([-1, -1], [1, 1]))
    sub = add_argmax(block)
    m.obj = pyo.Objective(expr=sub.max_value)
    result = relumilp.solve(m, check="raise")
    assert result.objective == pytest.approx(brute_force_min_of_max(net, -np.ones(2), np.ones(2)), abs=1e-6)
    s = np.array([pyo.value(sub.is_max[i]) for i in range(3)])
    assert s.sum() == pytest.approx(1) and result.y[np.argmax(s)] == pytest.approx(result.y.max(), abs=1e-6)


@pytest.mark.parametrize("seed", range(4))
def test_forcing_a_class_gives_inputs_of_that_class(seed):
    net = random_mlp(np.random.default_rng(10 + seed), [2, 6, 3])
    grid = np.stack(np.meshgrid(np.linspace(-1, 1, 301), np.linspace(-1, 1, 301)), -1).reshape(-1, 2)
    reachable = set(np.argmax(net.forward(grid), axis=1))
    for k in range(3):
        m = pyo.ConcreteModel()
        block = relumilp.add_network(m, net, input_bounds=([-1, -1], [1, 1]))
        sub = add_argmax(block)
        sub.is_max[k].fix(1)
        m.obj = pyo.Objective(expr=block.inputs[0])
        result = relumilp.solve(m)
        if result.status == "optimal":
            y = net.forward(result.x)
            assert y[k] >= y.max() - 1e-6
        else:
            assert result.status == "infeasible" and k not in reachable
