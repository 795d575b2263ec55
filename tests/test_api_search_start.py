"""``NetworkBlock.warm_start_from_search``: the engine's incumbent as a MIP start inside a user's Pyomo model."""

from __future__ import annotations

import numpy as np
import pyomo.environ as pyo
import pytest

import relumilp
from relumilp.domain import InputDomain


def _model(extra_row: bool):
    net = relumilp.examples.peaks()
    m = pyo.ConcreteModel()
    m.x = pyo.Var(range(2), bounds=(-3, 3))
    m.y = pyo.Var()
    block = relumilp.add_network(m, net, inputs=m.x, outputs=m.y, tighten="alpha")
    if extra_row:  # cuts off the network's own maximiser (x ~ (-0.04, 1.50))
        m.row = pyo.Constraint(expr=m.x[0] + m.x[1] <= 0)
    m.obj = pyo.Objective(expr=m.y, sense=pyo.maximize)
    return net, m, block


def test_search_start_is_a_feasible_start_and_the_optimum_follows():
    net, m, block = _model(extra_row=False)
    found = block.warm_start_from_search(maximize=0, time_limit=30)
    assert found.status == "optimal" and found.objective == pytest.approx(8.1513739, abs=1e-6)
    # the whole start is set and satisfies the block's rows and the link rows
    vector = np.array([v.value for v in block.column_vars])
    assert block.compiled.milp.max_violation(vector) <= 1e-9
    np.testing.assert_allclose([m.x[i].value for i in range(2)], found.x, atol=0)
    assert m.y.value == pytest.approx(float(net.forward(np.asarray(found.x))[0]), abs=1e-12)
    result = relumilp.solve(m, time_limit=60)
    assert result.status == "optimal" and result.objective == pytest.approx(found.objective, abs=1e-5)


def test_search_start_is_only_a_hint_when_the_model_cuts_it_off():
    net, m, block = _model(extra_row=True)
    found = block.warm_start_from_search(maximize=0, time_limit=30)
    assert sum(found.x) > 0  # infeasible for the user's row
    result = relumilp.solve(m, time_limit=60)
    truth = relumilp.optimize(net, InputDomain(np.full(2, -3.0), np.full(2, 3.0), np.ones((1, 2)), np.zeros(1)),
                              maximize=0, method="milp")
    assert result.status == "optimal" and truth.status == "optimal"
    assert result.objective == pytest.approx(truth.objective, abs=1e-5) and result.objective < found.objective - 1e-3
    assert block.check().matches()
