"""Badly scaled Pyomo models around a network block: wide or missing bounds on the user's variables, and
solver answers without a point, never give a wrong certificate (``optimal`` only where the forward pass
at the returned point supports it)."""

from __future__ import annotations

import warnings

import numpy as np
import pytest

pyo = pytest.importorskip("pyomo.environ")

import relumilp  # noqa: E402
from relumilp.backends import highs  # noqa: E402


def _maximise_output(net, inputs: int, y_bounds=(None, None)):
    """Maximise the network's output inside a Pyomo model: inputs in [0, 1], the user's output variable
    with ``y_bounds`` (free by default, as in the README). Returns the result and the model."""
    m = pyo.ConcreteModel()
    m.x = pyo.Var(range(inputs), bounds=(0.0, 1.0))
    m.y = pyo.Var(bounds=y_bounds)
    relumilp.add_network(m, net, inputs=m.x, outputs=m.y)
    m.obj = pyo.Objective(expr=m.y, sense=pyo.maximize)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return relumilp.solve(m, threads=1, time_limit=20), m


# -- A free output variable next to a network whose outputs exceed ~1e9: equilibration must not relax its
# entry away (relumilp.solve answered 'unbounded' on a bounded box).


@pytest.mark.parametrize("scale", [1e4, 1e5, 1e6])
def test_free_output_variable_large_outputs_not_unbounded(scale):
    net = relumilp.Network.sequential([(np.array([[scale]]), np.zeros(1)), (np.array([[scale]]), np.zeros(1))], "relu")
    r, _ = _maximise_output(net, 1)
    assert r.status not in ("unbounded", "infeasible", "infeasible_or_unbounded"), r.notes
    if r.status == "optimal":
        assert r.bound >= scale * scale
        assert abs(r.objective - scale * scale) <= 1e-6 * scale * scale


def test_free_output_variable_lopsided_output_layer_not_unbounded():
    """y = 1e10 (relu(x) - relu(x - 1e-10)) = min(1e10 x, 1): the output is small, its layer's weights are not."""
    net = relumilp.Network.sequential([(np.array([[1.0], [1.0]]), np.array([0.0, -1e-10])),
                                       (np.array([[1e10, -1e10]]), np.zeros(1))], "relu")
    r, _ = _maximise_output(net, 1)
    assert r.status not in ("unbounded", "infeasible", "infeasible_or_unbounded"), r.notes


def test_equilibrate_keeps_free_columns():
    import scipy.sparse as sp

    from relumilp.formulation.milp import MILP
    from relumilp.formulation.numerics import equilibrate

    # row: y - 1e10 h = 0 with h in [0, 1e10] and y free
    milp = MILP(col_lower=np.array([-np.inf, 0.0]), col_upper=np.array([np.inf, 1e10]),
                integrality=np.zeros(2, bool), A=sp.csr_array(np.array([[1.0, -1e10]])),
                row_lower=np.zeros(1), row_upper=np.zeros(1), node_columns={}, binaries={}, row_ranges={},
                input_name="", output_name="", objective=np.array([1.0, 0.0]), sense="max")
    scaled = equilibrate(milp)
    assert scaled.relaxed_entries == 0 and np.isfinite(scaled.max_widening)


# -- relumilp.solve must not answer 'optimal' when the solver returns no feasible point.


def test_optimal_without_point_is_not_certified(monkeypatch):
    net = relumilp.Network.sequential([(np.array([[1.0]]), np.zeros(1)), (np.array([[1.0]]), np.zeros(1))], "relu")
    m = pyo.ConcreteModel()
    m.x = pyo.Var(range(1), bounds=(0.0, 1.0))
    m.y = pyo.Var()
    relumilp.add_network(m, net, inputs=m.x, outputs=m.y)
    m.obj = pyo.Objective(expr=m.y, sense=pyo.maximize)
    # what HiGHS gave on a 2-4-4-2-1 net with biases 1e8: kOptimal, primal_solution_status 1
    monkeypatch.setattr(highs, "solve_milp", lambda *a, **k: highs.MilpSolution(status="optimal", x=None, bound=1.0))
    r = relumilp.solve(m, threads=1)
    assert r.status != "optimal" or (r.objective is not None and r.x is not None)


# -- A generous declared bound on the user's output variable (+-1e10 and up) must not crush the link row
# y == network output: relumilp.solve answered 'optimal' 0.0 with bound 5.1e-7 for a true maximum of 1.


@pytest.mark.parametrize("B", [1e3, 1e9, 1e10, 1e12, 1e15])
def test_wide_output_bound_keeps_the_optimum(B):
    net = relumilp.Network.sequential([(np.eye(2), np.zeros(2)), (np.array([[1.0, -1.0]]), np.zeros(1))], "relu")
    r, m = _maximise_output(net, 2, (-B, B))
    assert r.status == "optimal", r.notes
    assert r.bound >= 1.0  # forward(1, 0) = 1
    assert r.objective >= 1.0 - 1e-6
    x = np.array([m.x[i].value for i in range(2)])
    assert abs(float(net.forward(x)[0]) - r.objective) <= 1e-6  # the objective is attained at x


def test_check_reads_the_users_side_of_the_link():
    net = relumilp.Network.sequential([(np.eye(2), np.zeros(2)), (np.array([[1.0, -1.0]]), np.zeros(1))], "relu")
    m = pyo.ConcreteModel()
    m.x = pyo.Var(range(2), bounds=(0.0, 1.0))
    m.y = pyo.Var()
    block = relumilp.add_network(m, net, inputs=m.x, outputs=m.y)
    block.warm_start(np.array([0.0, 0.0]))
    m.y.set_value(1.0)  # the block says 0 at x = 0, the user's variable 1: the link row is broken
    assert not block.check().matches(1e-6)


# -- An LP handed a start point ended kUnknown in HiGHS ('error' from relumilp.solve) on this badly scaled
# network (weights 1e-9 .. 3e7, every neuron stable over the box, the first input fixed); optimize decided it.


def test_badly_scaled_lp_with_a_start_point_is_solved():
    from relumilp.activations import Clip, ClippedReLU
    from relumilp.ir import ActivationNode, AffineNode, InputNode, Network

    W0 = np.array([[-1.0287575855078312e-09, -0.0003265757266742172], [-0.0014663089150495944, 8.804112460341773e-07],
                   [-471.73016458781336, 0.07791260364736995], [-8645.31827492219, -0.000914288568447252]])
    W1 = np.array([[6.427315609653164e-05, 1.2071375081939718e-06, 383640.28760137246, -0.7711849650357546],
                   [-1.178317736195765e-05, -27409523.060521882, -114451.49662921378, 0.0007659469609250497],
                   [0.0005570938027141962, 9.131060464787222e-08, -4.7096009174546756e-08, -4506.509413193709]])
    W2 = np.array([[-113934.84023588097, 0.00018792074719290686, 53528.94307264786],
                   [-4925729.460459727, -111.43927331052939, -399856.7929545252]])
    net = Network([
        InputNode("input", 2),
        AffineNode("linear0", 4, ("input",), (W0,), np.array([0.4434944545573303, 0.3318384522409684,
                                                               -0.34550814437488003, 0.884433058067748])),
        ActivationNode("act0", 4, ("linear0",), ClippedReLU(6.0)),
        AffineNode("linear1", 3, ("act0",), (W1,), np.array([-0.16647300992839512, 0.5846931479956714,
                                                              -0.2823891200142374])),
        ActivationNode("act1", 3, ("linear1",), Clip(-1.0, 1.0)),
        AffineNode("linear2", 2, ("act1",), (W2,), np.array([0.24304272956792844, -0.7585254554605567])),
    ], "linear2")
    lo, hi = np.array([-0.5144317423686732, 0.1495012636619493]), np.array([-0.5144317423686732, 1.290625939449608])
    m = pyo.ConcreteModel()
    m.T = pyo.Var(range(2), bounds=lambda m, i: (lo[i] * 50 + 350, hi[i] * 50 + 350))
    m.y = pyo.Var(range(2))
    relumilp.add_network(m, net, inputs=[(m.T[i] - 350) / 50 for i in range(2)], outputs=[m.y[0], m.y[1]])
    m.obj = pyo.Objective(expr=m.y[0], sense=pyo.minimize)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        r = relumilp.solve(m, threads=1, time_limit=30)
        reference = relumilp.optimize(net, (lo, hi), minimize=0, threads=1, time_limit=30)
    assert reference.status == "optimal"
    assert r.status == "optimal", (r.status, r.notes)
    assert abs(r.objective - reference.objective) <= 1e-6 * max(1.0, abs(reference.objective))
