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


def _neuron_branching(seed):
    """Neuron branching with optimised slopes down to (almost) every neuron fixed: LP leaves, leaves
    with one or two open neurons, splits carried into the bounds, empty nodes; neurons chosen by score
    alone or among 2 or 8 candidates."""
    net, domain = random_network(9000 + seed)
    k, sense = _objective(net, seed)
    c = np.eye(net.output_size)[k]
    solution, x, stats = branch_and_bound(net, domain, c, sense, gap=1e-6, deadline=Deadline(), leaf_unstable=seed % 3,
                                          batch_size=1 + seed % 5, branching="relu", alpha_steps=(0, 4)[seed % 2],
                                          polish=seed % 4 < 2, candidates=(1, 2, 8)[seed % 3])
    assert stats["branching"] == "relu"
    result = certified(net, domain, solution, x, c, sense, 1e-6, "raise")
    _check_against_oracle(net, domain, result, k, sense)
    return stats


@pytest.mark.parametrize("seed", range(20))
def test_optimum_equals_brute_force_neuron_branching(seed):
    _neuron_branching(seed)


@pytest.mark.slow
@pytest.mark.parametrize("seed", range(20, 240))
def test_optimum_equals_brute_force_neuron_branching_slow(seed):
    _neuron_branching(seed)


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
    """Node bounds from :func:`_bound_boxes` on random sub-boxes (with parent bounds as start, random
    neuron splits and, for odd seeds, optimised slopes) hold for 1e4 float64 forward passes per batch
    that satisfy the node's splits, with no tolerance."""
    rng = np.random.default_rng(seed)
    net = _deep_network(seed, [3, 12, 12, 2])
    fnet = objective_network(net, rng.normal(size=2), 1.0 if seed % 2 else -1.0)
    engine = _engine(fnet)
    lower, upper = -np.ones(3), np.ones(3)
    names = [node.name for node in fnet.order[1:]]
    start = {name: (np.full((1, fnet[name].size), -np.inf), np.full((1, fnet[name].size), np.inf)) for name in names}
    steps = 6 * (seed % 2)
    root, _ = _bound_boxes(engine, lower[None], upper[None], start, steps=steps)
    B = 8
    a, b = rng.uniform(lower, upper, size=(2, B, 3))
    L, U = np.minimum(a, b), np.maximum(a, b)
    kids = {name: (np.repeat(root.lower[name], B, 0), np.repeat(root.upper[name], B, 0)) for name in names}
    act = fnet.activations[seed % 2]
    splits = {act.name: rng.choice([-1, 0, 0, 0, 1], size=(B, act.size)).astype(np.int8)}
    slopes = None if root.slopes is None else {k: np.repeat(v, B, 0) for k, v in root.slopes.items()}
    result, lam = _bound_boxes(engine, L, U, kids, splits, slopes, steps)
    lo, hi = result.lower, result.upper
    assert lam.shape == (B, 3)
    for i in range(B):
        X = rng.uniform(L[i], U[i], size=(10_000, 3))
        X = np.vstack([X, L[i], U[i], (L[i] + U[i]) / 2])
        values = fnet.forward_all(X)
        pre = values[act.inputs[0]]
        s = splits[act.name][i]
        keep = np.all((s <= 0) | (pre >= 0), axis=1) & np.all((s >= 0) | (pre <= 0), axis=1)
        X = X[keep]
        for name in fnet.graph:
            v = values[name][keep]
            assert np.all(v >= lo[name][i]) and np.all(v <= hi[name][i]), name
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


def _parallel_case():
    """A 2-input ReLU network whose search bounds several chunks of nodes at once (strong branching:
    2 n candidates per node), maximised over a box."""
    rng = np.random.default_rng(7)
    sizes = [2, 24, 24, 1]
    layers = [(rng.normal(size=(o, i)) * np.sqrt(2.0 / i), rng.normal(scale=0.1, size=o)) for i, o in zip(sizes[:-1], sizes[1:])]
    return Network.sequential(layers, "relu"), InputDomain.box(-2.0, 2.0, 2)


def _answer(solution, x, stats):
    return solution.status, solution.bound, tuple(x), stats["boxes"], stats["leaves"], stats["boxes_scored"]


def test_chunked_node_bounds_on_an_executor_equal_the_serial_run(monkeypatch):
    from concurrent.futures import ThreadPoolExecutor

    import relumilp.bab as bab

    monkeypatch.setattr(bab, "CHUNK_NODES", 16)  # several chunks per batch on a small network
    net, domain = _parallel_case()
    run = lambda **kw: _answer(*branch_and_bound(net, domain, np.ones(1), "max", gap=1e-6, deadline=Deadline(), **kw))
    serial = run()
    assert serial[0] == "optimal" and serial[3] > 16
    with ThreadPoolExecutor(2) as executor:
        assert run(executor=executor) == serial


@pytest.mark.slow
def test_node_bounds_on_worker_processes_equal_the_serial_run(monkeypatch):
    import relumilp.bab as bab

    monkeypatch.setattr(bab, "CHUNK_NODES", 8)  # chunks are cut here, in the parent: workers bound what they get
    net, domain = _parallel_case()
    run = lambda **kw: _answer(*branch_and_bound(net, domain, np.ones(1), "max", gap=1e-6, deadline=Deadline(), **kw))
    assert run(workers=2) == run()


def _leaf_run(**kw):
    net, domain = _parallel_case()
    return _answer(*branch_and_bound(net, domain, np.ones(1), "max", gap=1e-6, deadline=Deadline(), leaf_unstable=16,
                                     **kw))


def test_leaf_milps_on_an_executor_equal_the_serial_run():
    """Leaves are set up from the same state and applied in order, so where they are solved changes nothing."""
    from concurrent.futures import ThreadPoolExecutor

    serial = _leaf_run()
    assert serial[0] == "optimal" and serial[4] > 1  # several leaf MILPs
    with ThreadPoolExecutor(2) as executor:
        assert _leaf_run(executor=executor) == serial


@pytest.mark.slow
def test_leaf_milps_on_worker_processes_equal_the_serial_run():
    assert _leaf_run(workers=2) == _leaf_run()


def test_open_nodes_keep_every_row_through_pushes_and_removals():
    """The open list against a plain list of rows: random pushes and removals keep exactly the rows that
    were not removed, each with all its fields (pairs and dicts too), and return the removed ones."""
    from relumilp.bab import OpenNodes

    rng = np.random.default_rng(0)
    nodes, reference, next_id = OpenNodes(), {}, 0
    for _ in range(60):
        count = int(rng.integers(1, 9))
        ids = np.arange(next_id, next_id + count, dtype=float)
        next_id += count
        nodes.push({"ub": ids, "L": np.stack([ids, -ids], axis=1), "start": {"a": (ids[:, None] + 0.5, ids[:, None] - 0.5)},
                    "splits": {"a": (ids[:, None] % 3).astype(np.int8)}})
        reference.update({i: True for i in ids})
        gone = rng.random(len(nodes)) < 0.3
        taken = nodes.remove(gone)
        assert np.array_equal(taken["L"][:, 0], taken["ub"]) and np.array_equal(taken["L"][:, 1], -taken["ub"])
        assert np.array_equal(taken["start"]["a"][0][:, 0], taken["ub"] + 0.5)
        assert np.array_equal(taken["splits"]["a"][:, 0], (taken["ub"] % 3).astype(np.int8))
        for i in taken["ub"]:
            del reference[i]
        assert sorted(nodes.ub.tolist()) == sorted(reference)
    rest = nodes.remove(np.ones(len(nodes), dtype=bool))
    assert sorted(rest["ub"].tolist()) == sorted(reference) and len(nodes) == 0


def test_open_nodes_drop_warm_starts_that_not_every_node_has():
    from relumilp.bab import OpenNodes

    nodes = OpenNodes()
    nodes.push({"ub": np.zeros(2), "slopes": {"a": np.ones((2, 3))}})
    nodes.push({"ub": np.ones(1)})  # no slopes: none are kept (never a misaligned warm start)
    assert "slopes" not in nodes.remove(np.ones(3, dtype=bool))
    nodes.push({"ub": np.zeros(2), "L": np.zeros((2, 1))})
    with pytest.raises(Exception, match="different fields"):
        nodes.push({"ub": np.zeros(1)})


def test_neuron_choice_falls_back_to_the_score_when_estimates_run_out_of_time(monkeypatch):
    """With no time for the candidates' estimates, every node splits its best-scored neuron: the search
    is the score-only one (same nodes) and still certifies the optimum."""
    import relumilp.bab as bab

    net, domain = random_network(9003)
    c = np.eye(net.output_size)[0]
    run = lambda candidates: branch_and_bound(net, domain, c, "max", gap=1e-6, deadline=Deadline(), leaf_unstable=0,
                                              batch_size=2, branching="relu", alpha_steps=4, candidates=candidates)
    by_score = run(1)
    monkeypatch.setattr(bab, "STRONG_BUDGET", 0.0)
    starved = run(8)
    assert starved[2]["candidates_scored"] == 0 and starved[2]["boxes"] == by_score[2]["boxes"]
    assert starved[0].status == by_score[0].status == "optimal"
    assert abs(starved[0].bound - by_score[0].bound) <= 1e-9 * max(1.0, abs(by_score[0].bound))


def test_warm_started_neuron_nodes_take_gentle_steps(monkeypatch):
    """Only a node with neuron splits and its parent's slopes gets :data:`NEURON_WARM_STEP`'s step sizes:
    a root (no slopes) and an input box (no splits) keep the engine's cold-start ones."""
    import relumilp.bab as bab

    net = _deep_network(1, [3, 6, 6, 2])
    fnet = objective_network(net, np.ones(2), 1.0)
    engine = _engine(fnet)
    seen = []
    real = engine.bounds
    monkeypatch.setattr(engine, "bounds", lambda *a, **k: seen.append(k["optimise"]) or real(*a, **k))
    names = [node.name for node in fnet.order[1:]]
    start = {name: (np.full((1, fnet[name].size), -np.inf), np.full((1, fnet[name].size), np.inf)) for name in names}
    L, U = -np.ones((1, 3)), np.ones((1, 3))
    root = bab.engine_bounds(engine, L, U, start, None, None, 4)
    act = fnet.activations[0]
    splits = {act.name: np.zeros((1, act.size), dtype=np.int8)}
    bab.engine_bounds(engine, L, U, start, splits, root.slopes, 4)
    bab.engine_bounds(engine, L, U, start, None, root.slopes, 4)
    assert "lr" not in seen[0] and "lr" not in seen[2]
    assert {k: seen[1][k] for k in bab.NEURON_WARM_STEP} == bab.NEURON_WARM_STEP


def test_open_nodes_store_a_narrowed_column_and_give_it_back_whole():
    from relumilp.bab import OpenNodes

    nodes = OpenNodes()
    nodes.narrow("slopes", ("beta", "a"), np.array([0, 2]), 4)
    full = np.arange(24, dtype=float).reshape(3, 2, 4)
    nodes.push({"ub": np.arange(3.0), "slopes": {("beta", "a"): full, "b": full + 1}})
    assert nodes.column("slopes", ("beta", "a")).shape == (3, 2, 2)
    back = nodes.remove(np.array([True, False, True]))
    expected = np.where(np.arange(4) % 2 == 0, full[[0, 2]], 0.0)
    np.testing.assert_array_equal(back["slopes"][("beta", "a")], expected)
    np.testing.assert_array_equal(back["slopes"]["b"], full[[0, 2]] + 1)
    with pytest.raises(Exception, match="narrowed before"):
        nodes.narrow("slopes", "b", np.array([0]), 4)
    box = OpenNodes()  # nothing kept: every row comes back as the fill
    box.narrow("L", None, np.zeros(0, dtype=np.int64), 2, fill=np.array([-1.0, 3.0]))
    box.push({"ub": np.zeros(2), "L": np.array([[-1.0, 3.0], [-1.0, 3.0]])})
    np.testing.assert_array_equal(box.remove(np.ones(2, dtype=bool))["L"], [[-1.0, 3.0], [-1.0, 3.0]])


@pytest.mark.parametrize("seed", [9002, 9003])
def test_warm_starts_kept_at_the_unstable_neurons_only_give_the_same_search(monkeypatch, seed):
    """The open list keeps slopes and split multipliers, and over neurons the parents' pre-activation
    bounds, at the neurons unstable when they were first stored (elsewhere the slopes are unused and the
    union of the bounds gives each node its own again): the search is the one that keeps them whole, node
    for node."""
    import relumilp.bab as bab

    net, domain = random_network(seed)
    c = np.eye(net.output_size)[0]
    narrowed = []
    real = bab.OpenNodes.narrow
    monkeypatch.setattr(bab.OpenNodes, "narrow", lambda self, key, name, keep, size, **k: narrowed.append((key, len(keep) < size)) or real(self, key, name, keep, size, **k))
    run = lambda: branch_and_bound(net, domain, c, "max", gap=1e-6, deadline=Deadline(), leaf_unstable=0,
                                   batch_size=2, branching="relu", alpha_steps=4)
    kept = run()
    assert ("slopes", True) in narrowed and ("start", True) in narrowed  # some neuron was left out of each
    monkeypatch.setattr(bab._Search, "_narrow", lambda self, rows: None)
    whole = run()
    assert kept[2]["boxes"] == whole[2]["boxes"] and kept[0].status == whole[0].status == "optimal"
    assert abs(kept[0].bound - whole[0].bound) <= 1e-12 * max(1.0, abs(whole[0].bound))


def test_narrowed_bounds_refuse_rows_outside_their_fill():
    """A narrowed pair of bounds comes back as its fill where it is not stored: a pushed row whose bound
    there is looser than the fill (beyond round-off) is an internal error, not a silently tighter bound."""
    from relumilp.bab import OpenNodes
    from relumilp.errors import RelumilpError

    nodes = OpenNodes()
    fill_lo, fill_hi = np.array([-1.0, 0.5, -2.0]), np.array([1.0, 2.0, 3.0])
    nodes.narrow("start", "x", np.array([0]), 3, fill=fill_lo, side=0)
    nodes.narrow("start", "x", np.array([0]), 3, fill=fill_hi, side=1)
    row = lambda lo, hi: {"ub": np.zeros(1), "start": {"x": (np.array([lo]), np.array([hi]))}}
    nodes.push(row([-5.0, 0.5 - 1e-14, -1.0], [5.0, 2.0, 3.0]))  # round-off and tighter rows are fine
    taken = nodes.remove(np.ones(1, dtype=bool))
    assert np.array_equal(taken["start"]["x"][0], [[-5.0, 0.5, -2.0]])
    with pytest.raises(RelumilpError, match="outside the stored fill"):
        nodes.push(row([-1.0, 0.4, -2.0], [1.0, 2.0, 3.0]))
    with pytest.raises(RelumilpError, match="outside the stored fill"):
        nodes.push(row([-1.0, 0.5, -2.0], [1.0, 2.0, 3.5]))


def test_input_branching_splits_every_input_not_one_to_float64_resolution():
    """A random 5-20-20-2 net once had one input halved to width 6e-14 while the others were never split
    (the halves' plain bounds tied with the parent's optimised one, and a rounding-level gain won every
    round). No box may now be narrower along an input than 2**THIN_LEAD times the widest (relative to the
    domain) plus one split, and the search proves the optimum the MILP finds."""
    from relumilp.bab import THIN_LEAD, LinearObjective, search

    rng = np.random.default_rng(103)
    sizes = [5, 20, 20, 2]
    net = Network.sequential([(rng.normal(size=(b, a)) / np.sqrt(a), rng.normal(size=b) * 0.1)
                              for a, b in zip(sizes[:-1], sizes[1:])], "relu")
    lower, upper = -2.0 * np.ones(5), 2.0 * np.ones(5)
    domain = InputDomain.of((lower, upper), 5)
    state, status = search(LinearObjective(net, np.array([0.0, 1.0]), -1.0), domain, deadline=Deadline.of(20),
                           gap=1e-6, branching="input")
    widths = (state.nodes.column("U") - state.nodes.column("L")) / (upper - lower)
    if widths.size:
        assert np.all(widths.max(axis=1) <= 2.0 ** (THIN_LEAD + 1) * widths.min(axis=1))
    best = optimize(net, domain, minimize=1, method="milp", time_limit=60)
    assert best.status == "optimal" and status == "done"
    assert state.bound() <= -best.objective + 1e-6 * max(1.0, abs(best.objective))


def test_a_leaf_cut_short_by_the_deadline_is_a_time_limit_not_a_failure():
    """ReLU6 neurons cannot be split, so the root is a leaf; when the deadline cuts its MILP short the
    answer is 'time_limit' (it once was 'unknown', saying leaf MILPs gave no usable bound)."""
    import torch

    from relumilp.frontends import load_network

    torch.manual_seed(10)
    layers, width = [], 2
    for _ in range(3):
        layers += [torch.nn.Linear(width, 24), torch.nn.ReLU6()]
        width = 24
    net = load_network(torch.nn.Sequential(*layers, torch.nn.Linear(width, 1)).double())
    result = optimize(net, (np.array([-3.0, -2.0]), np.array([3.0, 2.0])), maximize=0, method="bab",
                      branching="relu", time_limit=1.0)
    assert result.status in ("time_limit", "optimal")  # optimal only on a machine that solves it in time
    assert not any("no usable bound" in note for note in result.notes)
    assert result.bound >= result.objective
