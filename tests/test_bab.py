"""Branch and bound over input boxes (relumilp.bab): optimum against brute force, sound node bounds,
agreement with the MILP path, time limits and the CLI."""

from __future__ import annotations

import json
import time
import warnings

import numpy as np
import pytest

from oracles import brute_force_optima
from relumilp.bab import _bound_boxes, _engine, branch_and_bound, certified, objective_network
from relumilp.cli import main
from relumilp.domain import InputDomain
from relumilp.ir import Network
from relumilp.limits import Deadline
from relumilp.optimization import optimize
from test_formulation_oracle import random_network

ORACLE_SEEDS = range(200)


def _objective(net, seed):
    """An output to optimise and its sense, from the seed."""
    k = seed % net.output_size
    return k, "max" if seed % 2 else "min"


def _check_against_oracle(net, domain, result, k, sense):
    expected, _ = brute_force_optima(net, domain.lower, domain.upper, np.eye(net.output_size)[k])[sense]
    assert result.status == "optimal", result.notes
    assert result.objective == pytest.approx(expected, abs=1e-6 * max(1.0, abs(expected)))
    # the certificate's own claims: objective = forward pass at x, bound on the right side within the gap
    assert result.objective == float(np.eye(net.output_size)[k] @ net.forward(result.x))
    sign = 1.0 if sense == "max" else -1.0
    assert sign * (result.bound - expected) >= -1e-7 * max(1.0, abs(expected))  # the oracle's LP tolerance


@pytest.mark.parametrize("seed", ORACLE_SEEDS)
def test_optimum_equals_brute_force(seed):
    net, domain = random_network(seed)
    k, sense = _objective(net, seed)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        result = optimize(net, domain, **{"maximize" if sense == "max" else "minimize": k}, method="bab")
    assert result.stats["method"] == "bab"
    _check_against_oracle(net, domain, result, k, sense)


@pytest.mark.parametrize("seed", range(40))
def test_optimum_equals_brute_force_when_branching(seed):
    """Few unstable neurons per leaf and a shallow ``max_depth``: deep trees, leaves at the depth limit."""
    net, domain = random_network(5000 + seed)
    k, sense = _objective(net, seed)
    c = np.eye(net.output_size)[k]
    solution, x, stats = branch_and_bound(net, domain, c, sense, gap=1e-6, deadline=Deadline(), leaf_unstable=seed % 3,
                                          max_depth=8, batch_size=4, polish=seed % 2 == 0)
    result = certified(net, domain, solution, x, c, sense, 1e-6, "raise")
    _check_against_oracle(net, domain, result, k, sense)


@pytest.mark.slow
@pytest.mark.parametrize("seed", range(200, 1200))
def test_optimum_equals_brute_force_slow(seed):
    test_optimum_equals_brute_force(seed)


def _deep_network(seed, sizes):
    rng = np.random.default_rng(seed)
    layers = [(rng.normal(size=(o, i)) / np.sqrt(i), rng.normal(scale=0.3, size=o)) for i, o in zip(sizes[:-1], sizes[1:])]
    return Network.sequential(layers, [{"kind": "relu"}] * (len(sizes) - 2))


@pytest.mark.parametrize("seed", range(6))
def test_engine_bounds_contain_every_forward_value(seed):
    """Node bounds from :func:`_bound_boxes` on random sub-boxes (with parent bounds as start) hold for
    1e4 float64 forward passes per batch, with no tolerance."""
    rng = np.random.default_rng(seed)
    net = _deep_network(seed, [3, 12, 12, 2])
    fnet = objective_network(net, rng.normal(size=2), 1.0 if seed % 2 else -1.0)
    engine = _engine(fnet)
    lower, upper = -np.ones(3), np.ones(3)
    names = [node.name for node in fnet.order[1:]]
    start = {name: (np.full((1, fnet[name].size), -np.inf), np.full((1, fnet[name].size), np.inf)) for name in names}
    root_lo, root_hi, _ = _bound_boxes(engine, lower[None], upper[None], start)
    B = 8
    a, b = rng.uniform(lower, upper, size=(2, B, 3))
    L, U = np.minimum(a, b), np.maximum(a, b)
    kids = {name: (np.repeat(root_lo[name], B, 0), np.repeat(root_hi[name], B, 0)) for name in names}
    lo, hi, lam = _bound_boxes(engine, L, U, kids)
    assert lam.shape == (B, 3)
    for i in range(B):
        X = rng.uniform(L[i], U[i], size=(10_000, 3))
        X = np.vstack([X, L[i], U[i], (L[i] + U[i]) / 2])
        values = fnet.forward_all(X)
        for name in fnet.graph:
            assert np.all(values[name] >= lo[name][i]) and np.all(values[name] <= hi[name][i]), name
        singles = np.array([fnet.forward(x)[0] for x in X[:200]])  # the one-point pass that certify uses
        assert np.all(singles >= lo[fnet.output][i, 0]) and np.all(singles <= hi[fnet.output][i, 0])


@pytest.mark.parametrize("seed", range(3))
def test_bab_and_milp_agree(seed):
    net = _deep_network(100 + seed, [2, 16, 16, 1])
    domain = InputDomain(-np.ones(2), np.ones(2))
    answers = [optimize(net, domain, maximize=0, method=method, tighten="lp", workers=1)
               for method in ("bab", "milp")]
    assert all(r.status == "optimal" for r in answers)
    assert answers[0].objective == pytest.approx(answers[1].objective, abs=2e-6 * max(1.0, abs(answers[1].objective)))


def test_time_limit_is_honoured():
    net = _deep_network(7, [8, 100, 100, 100, 1])  # minutes to certify (random nets in 2-D take < 1 s)
    domain = InputDomain(-np.ones(8), np.ones(8))
    started = time.perf_counter()
    result = optimize(net, domain, maximize=0, method="bab", time_limit=1.0)
    assert time.perf_counter() - started < 1.0 + 2.0
    assert result.status == "time_limit"
    assert result.objective is not None and result.bound >= result.objective
    assert result.objective == float(net.forward(result.x)[0])


def test_auto_picks_milp_with_input_rows_or_few_neurons():
    net = _deep_network(3, [2, 24, 24, 1])
    box = InputDomain(-np.ones(2), np.ones(2))
    domain = InputDomain(-np.ones(2), np.ones(2), A=np.array([[1.0, 1.0]]), b=np.array([0.5]))
    assert optimize(net, domain, maximize=0).stats["method"] == "milp"
    assert optimize(net, box, maximize=0).stats["method"] == "bab"
    small = _deep_network(3, [2, 16, 16, 1])  # 32 neurons: HiGHS is as fast, and needs no torch
    assert optimize(small, box, maximize=0).stats["method"] == "milp"


def test_cli_method_bab(tmp_path, capsys):
    path = tmp_path / "net.npz"
    _deep_network(11, [2, 8, 8, 1]).save(path)
    assert main(["solve", str(path), "--box", "-1:1", "--maximize", "0", "--method", "bab", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["status"] == "optimal" and data["stats"]["method"] == "bab"
    assert {"boxes", "leaves", "max_depth", "leaf_milp_time"} <= set(data["stats"])
    assert main(["solve", str(path), "--box", "-1:1", "--maximize", "0", "--method", "bab"]) == 0
    assert "leaf MILPs" in capsys.readouterr().out
