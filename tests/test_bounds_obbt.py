"""LP- and MILP-based OBBT: equal to from-scratch references, sound by sampling, executors agree."""

from __future__ import annotations

import highspy
import numpy as np
import pytest
import scipy.optimize
import scipy.sparse as sp

from conftest import random_mlp
from oracles import brute_force_optima
from relumilp.bounds import compute_bounds, interval_bounds, phases
from relumilp.bounds.base import intersect as _intersect
from relumilp.bounds.obbt import ChunkResult, safe_dual_bound
from relumilp.domain import InputDomain
from relumilp.errors import InvalidDomainError, RelumilpError
from relumilp.formulation.bigm import build_lp_relaxation, build_milp
from relumilp.ir import ActivationNode, Network
from test_bounds_symbolic import assert_not_looser, mixed_mlp, residual_dag, samples_with_corners


def polytope(n: int, seed: int = 0) -> InputDomain:
    """The box [-1, 1]^n cut by two random half-spaces through points near the centre (non-empty)."""
    rng = np.random.default_rng(seed)
    A = rng.normal(size=(2, n))
    b = np.abs(rng.normal(size=2)) * 0.3
    return InputDomain(-np.ones(n), np.ones(n), A, b)


def linprog_bounds(milp, column: int) -> tuple[float, float]:
    """min / max of one column over the LP ``milp``, solved from scratch with scipy's linprog."""
    cost = np.zeros(milp.num_columns)
    cost[column] = 1.0
    return linprog_range(milp, cost)


def linprog_range(milp, cost: np.ndarray) -> tuple[float, float]:
    """min / max of ``cost @ v`` over the LP ``milp``, solved from scratch with scipy's linprog."""
    A = sp.csr_array(milp.A)
    eq = milp.row_lower == milp.row_upper
    up = ~eq & np.isfinite(milp.row_upper)
    lo = ~eq & np.isfinite(milp.row_lower)
    A_ub = sp.vstack([A[up], -A[lo]]) if (up.any() or lo.any()) else None
    b_ub = np.concatenate([milp.row_upper[up], -milp.row_lower[lo]]) if A_ub is not None else None
    out = []
    for sign in (1.0, -1.0):
        res = scipy.optimize.linprog(
            sign * cost, A_ub=A_ub, b_ub=b_ub, A_eq=A[eq] if eq.any() else None,
            b_eq=milp.row_lower[eq] if eq.any() else None,
            bounds=list(zip(milp.col_lower, milp.col_upper)), method="highs",
        )
        assert res.status == 0, res.message
        out.append(sign * res.fun)
    return out[0], out[1]


def reference_lp_bounds(net: Network, domain: InputDomain):
    """LP-OBBT written the straightforward way: for each neuron, its affine map minimised and maximised
    over the LP of the layers before it (the hull relaxation, whose validity and relation to the
    relaxed big-M are tested in test_formulation_oracle.py), every LP solved from scratch by scipy."""
    bounds = compute_bounds(net, domain, "symbolic")
    for node in net.affines:
        if all(src == net.input.name for src in node.inputs) and domain.is_box:
            continue
        lower, upper = bounds[node.name]
        mask = np.zeros(node.size, dtype=bool)
        for name in net.graph.successors(node.name):
            if isinstance(net[name], ActivationNode):
                mask |= phases(net[name], lower, upper).unstable
        if node.name == net.output:
            mask[:] = True
        if not mask.any():
            continue
        milp = build_lp_relaxation(net, bounds, domain, upto=node.name, include_upto=False)
        lower, upper = lower.copy(), upper.copy()
        for j in np.flatnonzero(mask):
            cost = np.zeros(milp.num_columns)
            for src, w in zip(node.inputs, node.weights):
                cost[milp.node_columns[src]] += w[j]
            lo, hi = linprog_range(milp, cost)
            lower[j], upper[j] = max(lower[j], lo + node.bias[j]), min(upper[j], hi + node.bias[j])
        bounds.lower[node.name], bounds.upper[node.name] = lower, upper
        bounds = interval_bounds(net, domain, start=bounds)
    return bounds


@pytest.mark.parametrize("seed,polyhedral", [(0, False), (1, False), (2, True), (3, True)])
def test_lp_obbt_equals_from_scratch_reference(seed, polyhedral):
    net = mixed_mlp(seed, [3, 8, 8, 6, 2])
    domain = polytope(3, seed) if polyhedral else InputDomain.box(-1.0, 1.0, 3)
    lp = compute_bounds(net, domain, "lp")
    ref = reference_lp_bounds(net, domain)
    assert lp.method == "lp" and "lp" in lp.times
    for node in net.order:
        np.testing.assert_allclose(lp.lower[node.name], ref.lower[node.name], atol=1e-6, rtol=1e-9, err_msg=node.name)
        np.testing.assert_allclose(lp.upper[node.name], ref.upper[node.name], atol=1e-6, rtol=1e-9, err_msg=node.name)


@pytest.mark.parametrize("seed", range(4))
def test_lp_obbt_sound_and_not_looser_than_symbolic(seed):
    net = mixed_mlp(10 + seed, [2, 10, 10, 10, 1])
    domain = InputDomain.box(-1.5, 1.0, 2) if seed % 2 else polytope(2, seed)
    symbolic = compute_bounds(net, domain, "symbolic")
    lp = compute_bounds(net, domain, "lp")
    lp.check_sound(net, samples_with_corners(domain, 100_000, seed))
    assert_not_looser(lp, symbolic, net)


def test_lp_obbt_uses_the_polyhedral_rows():
    net = mixed_mlp(5, [2, 8, 8, 1])
    box = InputDomain.box(-1.0, 1.0, 2)
    cut = InputDomain(box.lower, box.upper, [[1.0, 1.0]], [-1.0])  # x0 + x1 <= -1: a corner triangle
    on_box = compute_bounds(net, box, "lp")
    on_cut = compute_bounds(net, cut, "lp")
    on_cut.check_sound(net, samples_with_corners(cut, 50_000))
    width = lambda b: sum(float(np.sum(b.upper[n.name] - b.lower[n.name])) for n in net.affines)
    assert width(on_cut) < width(on_box)


def test_lp_obbt_on_a_dag():
    net = residual_dag()
    domain = InputDomain.box(-1.0, 1.0, 3)
    lp = compute_bounds(net, domain, "lp")
    lp.check_sound(net, samples_with_corners(domain, 100_000))
    assert_not_looser(lp, compute_bounds(net, domain, "symbolic"), net)


def test_lp_early_stop_is_sound_and_decides_the_same_phases():
    net = random_mlp(np.random.default_rng(1), [3, 16, 16, 16, 1])
    domain = InputDomain.box(-0.3, 0.3, 3)
    stats = {}
    # steps=0: the alpha pass before LP without optimisation, so that LP has neurons to prove stable here
    # (with optimised slopes alpha already decides every neuron LP could on this net)
    early = compute_bounds(net, domain, "lp", simplex_strategy=1, early_stop=True, stats=stats, steps=0)
    full = compute_bounds(net, domain, "lp", simplex_strategy=1, early_stop=False, steps=0)
    assert stats["lp"]["early"] > 0
    early.check_sound(net, samples_with_corners(domain, 50_000))
    for act in net.activations:
        a, b = phases(act, *early.pre_activation(net, act)), phases(act, *full.pre_activation(net, act))
        np.testing.assert_array_equal(a.unstable, b.unstable)


def test_safe_dual_bound_is_valid_for_any_multipliers():
    net = mixed_mlp(6, [2, 6, 6, 1])
    domain = polytope(2, 1)
    bounds = compute_bounds(net, domain, "symbolic")
    milp = build_milp(net, bounds, domain, upto=net.affines[1].name).relaxed()
    column = int(milp.node_columns[net.affines[1].name][0])
    exact, _ = linprog_bounds(milp, column)
    At = milp.A.T.tocsr()
    rng = np.random.default_rng(0)
    for scale in (0.0, 0.1, 1.0, 10.0):
        y = rng.normal(scale=scale, size=milp.num_rows)
        assert safe_dual_bound(milp, At, [column], [1.0], y) <= exact + 1e-12


def test_intersection_never_crosses():
    lo, hi = _intersect(np.array([0.0, -1.0]), np.array([1.0, 1.0]), np.array([1.5, -0.5]), np.array([2.0, 0.5]))
    np.testing.assert_array_equal(lo, [0.0, -0.5])
    np.testing.assert_array_equal(hi, [2.0, 0.5])


@pytest.mark.parametrize("seed,polyhedral", [(0, False), (1, False), (2, True)])
def test_milp_obbt_equals_brute_force(seed, polyhedral):
    rng = np.random.default_rng(seed)
    layers = [(rng.normal(size=(4, 2)), rng.normal(0, 0.3, 4)), (rng.normal(size=(4, 4)), rng.normal(0, 0.3, 4)),
              (rng.normal(size=(3, 4)), rng.normal(0, 0.3, 3)), (rng.normal(size=(1, 3)), np.zeros(1))]
    kinds = ["relu", {"kind": "leaky_relu", "alpha": -0.3}, {"kind": "clipped_relu", "cap": 0.8}]
    net = Network.sequential(layers, kinds)
    domain = polytope(2, seed) if polyhedral else InputDomain.box(-1.0, 1.0, 2)
    stats = {}
    milp = compute_bounds(net, domain, "milp", early_stop=False, mip_rel_gap=1e-9, stats=stats)
    assert stats["milp"]["timeouts"] == 0 and stats["milp"]["solves"] > 0
    milp.check_sound(net, samples_with_corners(domain, 50_000, seed))
    acts = net.activations
    for k, node in enumerate(net.affines[:-1]):
        prefix = Network.sequential(layers[: k + 1], kinds[:k] if k else "relu")
        lower, upper = milp[node.name]
        ph = phases(acts[k], lower, upper)
        for j in range(node.size):
            e = np.eye(node.size)[j]
            exact = brute_force_optima(prefix, domain.lower, domain.upper, e, domain.A, domain.b)
            lo, hi = exact["min"][0], exact["max"][0]
            assert lower[j] <= lo + 1e-9 and upper[j] >= hi - 1e-9  # sound
            if ph.unstable[j]:  # still unstable after MILP: it was solved, so it is exact
                assert abs(lower[j] - lo) <= 1e-6 * (1 + abs(lo)), (node.name, j, lower[j], lo)
                assert abs(upper[j] - hi) <= 1e-6 * (1 + abs(hi)), (node.name, j, upper[j], hi)
            # a neuron whose exact range clears a breakpoint is classified stable
            if lo > 1e-5 and acts[k].kind != "clipped_relu":
                assert lower[j] >= 0.0


def test_milp_time_limit_uses_the_dual_bound():
    net = mixed_mlp(7, [3, 16, 16, 1])
    domain = InputDomain.box(-1.0, 1.0, 3)
    stats = {}
    tight = compute_bounds(net, domain, "milp", milp_time_limit=1e-3, stats=stats)
    assert stats["milp"]["solves"] > 0
    tight.check_sound(net, samples_with_corners(domain, 20_000))
    assert_not_looser(tight, compute_bounds(net, domain, "lp"), net)


def test_empty_polyhedral_domain_is_reported():
    net = mixed_mlp(8, [2, 6, 6, 1])
    empty = InputDomain(-np.ones(2), np.ones(2), [[1.0, 0.0], [-1.0, 0.0]], [-0.5, -0.5])
    with pytest.raises(InvalidDomainError, match="empty"):
        compute_bounds(net, empty, "lp")


def test_unknown_options_are_rejected():
    net = mixed_mlp(8, [2, 6, 6, 1])
    domain = InputDomain.box(-1.0, 1.0, 2)
    with pytest.raises(RelumilpError, match="unknown bound option"):
        compute_bounds(net, domain, "lp", time_limt=3)
    with pytest.raises(RelumilpError, match="only apply"):
        compute_bounds(net, domain, "symbolic", milp_time_limit=3)
    with pytest.raises(RelumilpError, match="unknown bound method"):
        compute_bounds(net, domain, "exact")


# -- parallel execution ------------------------------------------------------------------------------


def _same(a, b, net):
    for node in net.order:
        np.testing.assert_array_equal(a.lower[node.name], b.lower[node.name])
        np.testing.assert_array_equal(a.upper[node.name], b.upper[node.name])


def test_process_pool_matches_serial():
    net = mixed_mlp(9, [3, 12, 12, 2])
    domain = InputDomain.box(-1.0, 1.0, 3)
    serial = compute_bounds(net, domain, "lp", chunk_size=5)
    pooled = compute_bounds(net, domain, "lp", chunk_size=5, workers=2)
    _same(serial, pooled, net)


def test_thread_executor_and_progress(capsys):
    from concurrent.futures import ThreadPoolExecutor

    net = mixed_mlp(9, [3, 12, 12, 2])
    domain = InputDomain.box(-1.0, 1.0, 3)
    serial = compute_bounds(net, domain, "lp", chunk_size=4)
    with ThreadPoolExecutor(2) as pool:
        threaded = compute_bounds(net, domain, "lp", chunk_size=4, executor=pool, progress=True)
    _same(serial, threaded, net)
    assert "lp " in capsys.readouterr().err


@pytest.fixture(scope="module")
def dask_client():
    distributed = pytest.importorskip("dask.distributed")
    # threads keep the fast suite fast; the process-based cluster runs in a slow test below
    cluster = distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=False, dashboard_address=None)
    client = distributed.Client(cluster)
    yield client
    client.close()
    cluster.close()


def test_dask_executor_matches_serial(dask_client):
    executor = dask_client.get_executor()
    net = mixed_mlp(12, [3, 12, 12, 12, 2])
    domain = polytope(3, 4)
    serial = compute_bounds(net, domain, "lp", chunk_size=6)
    _same(serial, compute_bounds(net, domain, "lp", chunk_size=6, executor=executor), net)
    tiny = mixed_mlp(13, [2, 6, 6, 1])
    serial = compute_bounds(tiny, domain_2d := InputDomain.box(-1.0, 1.0, 2), "milp", chunk_size=2)
    _same(serial, compute_bounds(tiny, domain_2d, "milp", chunk_size=2, executor=executor), tiny)


def test_chunk_results_are_picklable():
    import pickle

    r = ChunkResult(np.arange(2), np.zeros(2), np.ones(2))
    assert pickle.loads(pickle.dumps(r)).upper.tolist() == [1.0, 1.0]


# -- ACAS Xu (slow) -----------------------------------------------------------------------------------------


@pytest.mark.slow
def test_acasxu_lp_and_milp_sound(acasxu_dir):
    from test_bounds_symbolic import ACAS_PROP1, acas_network

    net = acas_network(acasxu_dir)
    domain = InputDomain(*ACAS_PROP1)
    x = samples_with_corners(domain, 100_000)
    symbolic = compute_bounds(net, domain, "symbolic")
    lp = compute_bounds(net, domain, "lp", workers=2)
    lp.check_sound(net, x)
    assert_not_looser(lp, symbolic, net)
    milp = compute_bounds(net, domain, "milp", workers=2, milp_time_limit=0.2)
    milp.check_sound(net, x)
    assert_not_looser(milp, lp, net, slack=1e-6)


@pytest.mark.slow
def test_dask_process_cluster_matches_serial_on_milp():
    distributed = pytest.importorskip("dask.distributed")
    net = mixed_mlp(12, [3, 12, 12, 12, 2])
    domain = polytope(3, 4)
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None) as cluster:
        with distributed.Client(cluster) as client:
            for method in ("lp", "milp"):
                serial = compute_bounds(net, domain, method, chunk_size=6)
                _same(serial, compute_bounds(net, domain, method, chunk_size=6, executor=client.get_executor()), net)


def test_milp_early_stop_does_not_stop_later_solves():
    """A callback interrupt must not leak into the next solve on the same HiGHS model (regression)."""
    from relumilp.bounds.obbt import LayerProblem, OBBTOptions, _thresholds, solve_chunk

    net = mixed_mlp(21, [2, 6, 6, 1])
    domain = InputDomain.box(-2.0, 2.0, 2)
    bounds = compute_bounds(net, domain, "lp")
    node = net["linear1"]
    milp = build_milp(net, bounds, domain, upto=node.name)
    _, min_stop, max_stop = _thresholds(net, node, *bounds[node.name], False)
    columns = milp.node_columns[node.name]
    chunk = solve_chunk(LayerProblem(milp, columns, min_stop, max_stop, "milp", OBBTOptions()), np.arange(6))
    assert chunk.early >= 1
    assert np.all(np.isfinite(chunk.lower)) and np.all(np.isfinite(chunk.upper))
    x = samples_with_corners(domain, 20_000)
    values = net.forward_all(x)[node.name]
    assert np.all(values >= chunk.lower - 1e-9) and np.all(values <= chunk.upper + 1e-9)


def test_obbt_after_another_highs_user_with_other_threads():
    """A HiGHS run with another thread count fixes the process scheduler; OBBT must still work (regression)."""
    import highspy

    h = highspy.Highs()
    h.setOptionValue("output_flag", False)
    h.setOptionValue("threads", 1)
    h.addVars(1, np.array([0.0]), np.array([1.0]))
    h.run()
    net = mixed_mlp(21, [2, 6, 6, 1])
    domain = InputDomain.box(-2.0, 2.0, 2)
    stats = {}
    bounds = compute_bounds(net, domain, "milp", stats=stats)
    bounds.check_sound(net, samples_with_corners(domain, 20_000))
    lp = compute_bounds(net, domain, "lp")
    assert np.sum(bounds.upper["linear1"] - bounds.lower["linear1"]) < np.sum(lp.upper["linear1"] - lp.lower["linear1"])


def test_lp_time_limit_keeps_sound_bounds_and_is_per_solve():
    # A solve that hits its limit keeps the cheaper bound; the limit is per solve, not cumulative
    # (HiGHS counts time_limit over the model object's whole life).
    from conftest import random_mlp
    from relumilp.bounds import compute_bounds
    from relumilp.domain import InputDomain

    net = random_mlp(np.random.default_rng(3), [2, 12, 12, 1])
    domain = InputDomain.box(-1.0, 1.0, 2)
    starved = compute_bounds(net, domain, "lp", lp_time_limit=0.0)
    symbolic = compute_bounds(net, domain, "symbolic")
    for name in symbolic.lower:
        assert np.all(starved.lower[name] >= symbolic.lower[name] - 1e-9)
    starved.check_sound(net, domain.sample(20000, 0))
    # The limit set before each run is offset by the run time the model object has already used.
    from relumilp.backends.highs import set_run_time_limit
    from relumilp.formulation.bigm import build_milp
    from relumilp.formulation.highs import to_highs

    h = to_highs(build_milp(net, symbolic, domain).relaxed())
    h.setOptionValue("output_flag", False)
    h.changeColCost(0, 1.0)
    h.run()
    used = h.getRunTime()
    set_run_time_limit(h, 2.0, mip=False)
    assert used > 0 and h.getOptionValue("time_limit")[1] == pytest.approx(used + 2.0, abs=1e-9)
    # Why: an LP's limit is measured against the model's total run time -- a limit below the time
    # already used stops the next (cold) run before its first iteration.
    h.clearSolver()
    h.setOptionValue("time_limit", used / 2)
    h.run()
    assert h.getModelStatus() == highspy.HighsModelStatus.kTimeLimit
    assert h.getInfo().simplex_iteration_count == 0


def test_milp_time_limit_is_per_solve():
    """A MIP's time limit counts from the start of its run: every MILP-OBBT solve stops at its own
    limit (regression: offsetting it like an LP's made each solve's limit grow by the chunk's run time)."""
    from relumilp.bounds.obbt import LayerProblem, OBBTOptions, _thresholds, solve_chunk

    net = random_mlp(np.random.default_rng(0), [2, 24, 24, 24, 1])
    domain = InputDomain.box(-1.0, 1.0, 2)
    bounds = compute_bounds(net, domain, "interval")
    node = net.affines[-2]
    milp = build_milp(net, bounds, domain, upto=node.name)
    _, min_stop, max_stop = _thresholds(net, node, *bounds[node.name], False)
    options = OBBTOptions(milp_time_limit=0.2, early_stop=False)
    chunk = solve_chunk(LayerProblem(milp, milp.node_columns[node.name], min_stop, max_stop, "milp", options),
                        np.arange(4))
    assert chunk.solves == 8 and chunk.timeouts >= 6  # hard enough to reach the limit
    assert chunk.seconds < chunk.solves * 0.2 + 3.0  # the offset bug took ~0.2 * (2^8 - 1) = 51 s


def test_default_workers_setting_and_validation():
    from relumilp import parallel

    try:
        parallel.set_default_workers(3)
        assert parallel.default_workers() == 3
        parallel.set_default_workers(None)
        assert parallel.default_workers() >= 1
        with pytest.raises(RelumilpError, match="at least 1"):
            parallel.set_default_workers(0)
        with pytest.raises(RelumilpError, match="at least 1"):
            compute_bounds(mixed_mlp(1, [2, 4, 1]), InputDomain.box(-1.0, 1.0, 2), "lp", workers=0)
    finally:
        parallel.set_default_workers(None)


def test_warm_start_order_covers_every_objective_once():
    from relumilp.bounds.obbt import warm_start_order

    directions = np.random.default_rng(0).normal(size=(7, 3))
    rows, signs = warm_start_order(directions)
    assert sorted(zip(rows.tolist(), signs.tolist())) == sorted((j, s) for j in range(7) for s in (1.0, -1.0))
    # consecutive objectives are the nearest unvisited ones: the chain starts +d_0 and moves greedily
    unit = np.vstack([directions, -directions]) / np.linalg.norm(np.vstack([directions, -directions]), axis=1)[:, None]
    index = [int(r) if s > 0 else int(r) + 7 for r, s in zip(rows, signs)]
    assert index[0] == 0 and index[1] == int(np.argmax(np.where(np.arange(14) == 0, -np.inf, unit @ unit[0])))
