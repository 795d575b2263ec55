"""``verify`` on the one branch-and-bound engine (relumilp.verify.bab): holds / violated against the exact
answer of brute force (one LP per activation pattern and conjunction) on tiny networks with random
properties, input and neuron branching, and a 40-input network that goes through neuron branching."""

from __future__ import annotations

import time

import numpy as np
import pytest

from oracles import enumerate_patterns, linprog
from relumilp.domain import InputDomain
from relumilp.frontends.vnnlib import OutputConstraint, Property
from relumilp.optimization import optimize
from relumilp.verify import verify
from relumilp.verify.bab import RegionObjective
from test_formulation_oracle import random_network

#: the exact largest violation is moved to +-MARGIN (relative): far beyond every solver tolerance
MARGIN = 0.05


def exact_violation(net, domain: InputDomain, outputs) -> float:
    """``max over x in the domain of max_j min_{r in j} (d_r - C_r net(x))``, exactly: per activation
    pattern (polyhedron ``G x <= h`` on which ``y = M x + m``) and conjunction, the LP
    ``max t  s.t.  G x <= h, C (M x + m) + t <= d``, with bare HiGHS (no relumilp code)."""
    best = -np.inf
    n = domain.size
    bounds = [*zip(domain.lower, domain.upper), (-1e9, 1e9)]
    for G, h, M, m in enumerate_patterns(net, domain.lower, domain.upper, domain.A, domain.b):
        G = np.zeros((0, n)) if not len(G) else np.array(G)
        for out in outputs:
            rows = np.vstack([np.hstack([G, np.zeros((G.shape[0], 1))]),
                              np.hstack([out.C @ M, np.ones((out.num_rows, 1))])])
            rhs = np.concatenate([np.asarray(h, dtype=float).ravel(), out.d - out.C @ m])
            res = linprog(np.append(np.zeros(n), -1.0), A_ub=rows, b_ub=rhs, bounds=bounds)
            if res.status == 0:
                best = max(best, float(res.x[-1]))
    return best


def random_property(seed: int, violated: bool):
    """A tiny network, a box (sometimes with rows ``A x <= b``) and 1-2 unsafe conjunctions of 1-2 rows
    whose exact largest violation is ``+MARGIN`` (violated) or ``-MARGIN`` (holds), times its scale."""
    net, domain = random_network(31_000 + seed)
    rng = np.random.default_rng(seed)
    A = b = None
    if seed % 4 == 3:  # a row that keeps the centre strictly inside
        A = rng.normal(size=(1, domain.size))
        mid, half = (domain.lower + domain.upper) / 2, (domain.upper - domain.lower) / 2
        b = A @ mid + np.abs(A) @ half * 0.5
    domain = InputDomain(domain.lower, domain.upper, A, b)
    m = net.output_size
    counts = [int(rng.integers(1, 3)) for _ in range(1 + seed % 2)]
    outputs = [OutputConstraint(rng.normal(size=(k, m)), np.zeros(k)) for k in counts]
    v0 = exact_violation(net, domain, outputs)
    scale = max(1.0, abs(v0))
    shift = -v0 + (MARGIN if violated else -MARGIN) * scale  # v(x) moves with every d_r by the same shift
    outputs = [OutputConstraint(o.C, o.d + shift) for o in outputs]
    return net, Property(domain.size, m, (domain,), tuple(outputs)), ("violated" if violated else "holds")


def check(seed: int, **options):
    """verify's answer against the exact one; one thread unless ``options`` say otherwise: the root MILP
    then waits for branch and bound's share instead of racing it (these tests are the engine's oracle)."""
    net, prop, expected = random_property(seed, violated=seed % 3 == 0)
    options.setdefault("threads", 1)
    result = verify(net, prop, attack_samples=0, time_limit=60, **options)
    assert result.result == expected, result.details
    if expected == "violated":
        x = np.array(result.counterexample["x"])
        assert prop.is_counterexample(x, net.forward(x))
    return result


def options(seed: int) -> dict:
    """Input or neuron branching, leaves from 'every open neuron' down to 'LP only', small batches."""
    return {"branching": ("input", "relu", "auto")[seed % 3], "leaf_binaries": (1, 3, 16, 0)[seed % 4],
            "batch_size": (4, 16, 1, 64)[seed % 4], "tighten": ("interval", "symbolic")[seed % 2]}


@pytest.mark.parametrize("seed", range(30))
def test_engine_matches_brute_force(seed):
    result = check(seed, **options(seed))
    assert result.details["regions"][0]["decided_by"] in ("bounds", "bab", "bab+milp")


@pytest.mark.slow
@pytest.mark.parametrize("seed", range(30, 260))
def test_engine_matches_brute_force_many(seed):
    """Half the seeds race the root MILP beside branch and bound (the default with more than one thread)."""
    check(seed, **options(seed), threads=1 if seed % 2 else None)


def test_node_bound_is_the_violation_bound():
    """The objective's node bound is ``max_j min_{r in j} (-lower(g_r))``, ``-inf`` off the input rows,
    and it closes a node only strictly below 0."""
    net, domain = random_network(3)
    m = net.output_size
    outputs = [OutputConstraint(np.eye(m)[:1], [0.0]), OutputConstraint(np.vstack([np.eye(m)[:1], -np.eye(m)[:1]]), [1.0, 2.0])]
    from relumilp.verify.spec import spec_network, stack_rows

    G, h, members = stack_rows(outputs)
    objective = RegionObjective(net, spec_network(net, G, h), domain, outputs, members, [0, 1], None, [])
    g_lower = np.array([[0.5, -1.0, 3.0], [-0.25, -1.0, -2.0]])[:, : G.shape[0]]
    lo = {objective.fnet.output: g_lower}
    L = np.tile(domain.lower, (2, 1))
    expected = [max(-g[members[0]].max(), -g[members[1]].max()) for g in g_lower]
    np.testing.assert_array_equal(objective.node_upper(lo, L, L), expected)
    np.testing.assert_array_equal(objective.closes(np.array([-1e-300, 0.0, 1.0]), None), [True, False, False])
    off = InputDomain(domain.lower, domain.upper, A=np.ones((1, domain.size)), b=np.array([domain.lower.sum() - 1.0]))
    objective.domain = off
    assert np.all(objective.node_upper(lo, L, L) == -np.inf)


def test_open_rows_are_those_of_conjunctions_not_yet_proven():
    """A node optimises only the margin rows of alive conjunctions that its parent's bounds leave open: a
    conjunction is unreachable once one of its rows has ``lower > 0``."""
    net, domain = random_network(3)
    m = net.output_size
    outputs = [OutputConstraint(np.eye(m)[:1], [0.0]), OutputConstraint(np.vstack([np.eye(m)[:1], -np.eye(m)[:1]]), [1.0, 2.0])]
    from relumilp.verify.spec import spec_network, stack_rows

    G, h, members = stack_rows(outputs)
    assert [list(r) for r in members] == [[0], [1, 2]]
    objective = RegionObjective(net, spec_network(net, G, h), domain, outputs, members, [0, 1], None, [])
    lower = np.array([[0.5, -1.0, -3.0],   # conjunction 0 proven: rows 1, 2 open
                      [-0.5, 0.25, -2.0],  # conjunction 1 proven by its first row: row 0 open
                      [-0.5, -1.0, -2.0],  # nothing proven
                      [1.0, -1.0, 2.0]])   # both proven
    np.testing.assert_array_equal(objective.open_rows(lower),
                                  [[False, True, True], [True, False, False], [True, True, True], [False, False, False]])
    only_second = RegionObjective(net, spec_network(net, G, h), domain, outputs, members, [1], None, [])
    np.testing.assert_array_equal(only_second.open_rows(lower[2:3]), [[False, True, True]])


def test_neuron_branching_starts_from_optimised_root_bounds(wide_case, monkeypatch):
    """With branch and bound over neurons the default root bounds are ``cones`` (fixed below the root):
    MILP tightening over cones of influence from the symbolic bounds, then ``alpha`` on the nodes the
    cones did not bound exactly, each on a share of the time; over input boxes ``symbolic``."""
    import relumilp.bounds.obbt as obbt
    import relumilp.bounds.symbolic as symbolic
    from relumilp.verify import ALPHA_ROOT_SHARE, CONE_ROOT_SHARE

    calls, cone_calls = [], []
    original, original_cones = symbolic.alpha_bounds, obbt.cone_bounds
    monkeypatch.setattr(symbolic, "alpha_bounds", lambda *a, **k: calls.append(k) or original(*a, **k))

    def cones(*a, **k):
        cone_calls.append((k["deadline"].remaining(), k["stats"]))
        return original_cones(*a, **k)

    monkeypatch.setattr(obbt, "cone_bounds", cones)
    net, domain, best = wide_case
    # just above the optimum: the symbolic bounds alone cannot prove it
    prop = Property(40, 2, (domain,), (OutputConstraint(np.array([[-1.0, 0.0]]), np.array([-best.objective - 0.05])),))
    result = verify(net, prop, attack_samples=0, time_limit=30, threads=1)
    assert result.details["tighten"] == "cones"
    assert len(cone_calls) == 1 and cone_calls[0][0] <= CONE_ROOT_SHARE * 30
    cone_stats = cone_calls[0][1]["cones"]
    assert cone_stats["neurons"] > 0  # the second-layer cones hold at most 16 binaries: the cone pass has work here
    assert len(calls) == 1 and calls[0]["start"] is not None
    assert calls[0]["deadline"].remaining() <= ALPHA_ROOT_SHARE * 30
    # the first layer reads the box (its cones hold no binary): exact, so alpha leaves it out
    assert "linear0" in cone_stats["exact"] and calls[0]["nodes"] is not None
    assert "linear0" not in calls[0]["nodes"] and "spec_margin" in calls[0]["nodes"]
    assert verify(net, prop, attack_samples=0, time_limit=30, branching="input").details["tighten"] == "symbolic"
    assert len(calls) == 1 and len(cone_calls) == 1  # input branching: neither
    assert verify(net, prop, attack_samples=0, time_limit=30, input_split=False).details["tighten"] == "lp"


def test_symbolic_root_bounds_that_decide_skip_the_optimisation(wide_case, monkeypatch):
    """When the symbolic pass already proves the property, neither the cone MILPs nor the slope
    optimisation run."""
    import relumilp.bounds.obbt as obbt
    import relumilp.bounds.symbolic as symbolic

    net, domain, best = wide_case
    prop = Property(40, 2, (domain,), (OutputConstraint(np.array([[-1.0, 0.0]]), np.array([-best.objective - 100.0])),))
    monkeypatch.setattr(symbolic, "alpha_bounds", lambda *a, **k: pytest.fail("alpha bounds were computed"))
    monkeypatch.setattr(obbt, "cone_bounds", lambda *a, **k: pytest.fail("cone bounds were computed"))
    result = verify(net, prop, attack_samples=0, time_limit=30)
    assert result.result == "holds" and result.details["regions"][0]["decided_by"] == "bounds"


@pytest.fixture(scope="module")
def wide_case():
    """A 40-16-12-2 network: branch and bound splits neurons on it. Its default ``cones`` root bounds are
    exact on the second layer (16-binary cones) and prove the ``holds`` cases at the root, so the tests
    of the search and of the MILPs beside it pass ``tighten="alpha"``, which leaves them the work."""
    rng = np.random.default_rng(4)
    from conftest import random_mlp

    net = random_mlp(rng, [40, 16, 12, 2])
    domain = InputDomain(np.full(40, -0.1), np.full(40, 0.1))
    best = optimize(net, domain, maximize=0, method="milp", time_limit=60)
    assert best.status == "optimal"
    return net, domain, best


def wide_property(domain, best, offset: float) -> Property:
    """``y_0 >= best + offset max(1, |best|)`` on the wide case: violated below its optimum, holds above."""
    threshold = best.objective + offset * max(1.0, abs(best.objective))
    return Property(40, 2, (domain,), (OutputConstraint(np.array([[-1.0, 0.0]]), np.array([-threshold])),))


@pytest.mark.parametrize("offset, expected", [(-0.05, "violated"), (0.05, "holds")])
def test_forty_inputs_go_through_neuron_branching(wide_case, offset, expected):
    net, domain, best = wide_case
    prop = wide_property(domain, best, offset)
    # one thread: the root MILP waits for branch and bound's share instead of racing it (and winning)
    result = verify(net, prop, attack_samples=0, tighten="alpha", time_limit=60, threads=1)
    assert result.result == expected, result.details
    stats = result.details["regions"][0]["bab"]
    assert stats["branching"] == "relu"
    assert stats["neuron_splits"] > 0 or expected == "violated"  # a counterexample may come from the root's samples


def test_unknown_branching_is_a_clear_error():
    from relumilp.errors import RelumilpError

    net, prop, _ = random_property(1, violated=False)
    with pytest.raises(RelumilpError, match="branching must be one of auto, input, relu"):
        verify(net, prop, branching="neurons")


@pytest.mark.parametrize("seed", [2, 7, 8])  # properties whose search decides leaves by MILP
def test_leaves_on_an_executor_give_the_serial_answer(seed):
    from concurrent.futures import ThreadPoolExecutor

    net, prop, expected = random_property(seed, violated=seed % 3 == 0)
    options = {"branching": "relu", "leaf_binaries": 6, "batch_size": 8, "attack_samples": 0}
    serial = verify(net, prop, **options)
    with ThreadPoolExecutor(2) as executor:
        spread = verify(net, prop, executor=executor, **options)
    assert serial.result == spread.result == expected
    a, b = serial.details["regions"][0]["bab"], spread.details["regions"][0]["bab"]
    assert (a["boxes"], a["leaves"]) == (b["boxes"], b["leaves"]) and a["leaves"] > 0


@pytest.mark.parametrize("offset, expected", [(-0.05, "violated"), (0.05, "holds")])
def test_the_root_milp_decides_what_branch_and_bound_leaves_open(wide_case, offset, expected, monkeypatch):
    """The portfolio with one thread: with neuron branching and a time limit, a region branch and bound
    has not decided in its share goes to the region's root MILP (here the share is all but nothing)."""
    import relumilp.verify.bab as verify_bab

    monkeypatch.setattr(verify_bab, "BAB_SHARE", 1e-9)
    net, domain, best = wide_case
    prop = wide_property(domain, best, offset)
    result = verify(net, prop, attack_samples=0, tighten="alpha", time_limit=60, threads=1)
    assert result.result == expected, result.details
    region = result.details["regions"][0]
    assert region["decided_by"] == "bab/milp" and region["bab"]["branching"] == "relu"
    assert region["root_milp_time"] > 0


@pytest.mark.parametrize("offset, expected", [(-0.05, "violated"), (0.05, "holds")])
def test_the_root_milp_runs_without_primal_heuristics_under_the_users_options(wide_case, offset, expected,
                                                                             monkeypatch):
    """The region's root MILP is a proof: HiGHS's primal heuristics are off (``PROOF_OPTIONS``), the user's
    ``highs_options`` still win, and a counterexample is still found (by the MILP's own search)."""
    import relumilp.verify.bab as verify_bab
    import relumilp.verify.decide as decide

    seen = []
    real = decide.solve_unsafe

    def recording(milp, t, deadline, threads, log, highs_options, first_only):
        seen.append(dict(highs_options or {}))
        return real(milp, t, deadline, threads, log, highs_options, first_only)

    monkeypatch.setattr(decide, "solve_unsafe", recording)
    monkeypatch.setattr(verify_bab, "BAB_SHARE", 1e-9)
    net, domain, best = wide_case
    prop = wide_property(domain, best, offset)
    result = verify(net, prop, attack_samples=0, tighten="alpha", time_limit=60, threads=1, highs_options={"mip_heuristic_effort": 0.01})
    assert result.result == expected, result.details
    assert result.details["regions"][0]["decided_by"] == "bab/milp"
    assert seen and all(o["mip_heuristic_run_rins"] is False and o["mip_heuristic_run_rens"] is False
                        and o["mip_heuristic_effort"] == 0.01 for o in seen)


def _root_milp_threads() -> list:
    import threading

    return [t for t in threading.enumerate() if t.name == "root-milp"]


def test_the_root_milp_beside_branch_and_bound_ends_the_search(wide_case, monkeypatch):
    """The portfolio with more threads: the root MILP runs beside branch and bound; here the search can
    close no node (its closing rule is switched off), so the MILP's ``holds`` decides, ends the search
    long before the time limit, and leaves no thread behind."""
    from relumilp.verify.bab import RegionObjective

    monkeypatch.setattr(RegionObjective, "closes", lambda self, upper, search: np.zeros(upper.shape, dtype=bool))
    net, domain, best = wide_case
    prop = wide_property(domain, best, 0.05)
    result = verify(net, prop, attack_samples=0, tighten="alpha", time_limit=120, threads=2)
    region = result.details["regions"][0]
    assert result.result == "holds" and region["decided_by"] == "bab/milp", result.details
    assert region["bab_time"] < 60 and region["root_milp_time"] < 60
    assert not _root_milp_threads()


def test_the_root_milp_plan_runs_both_formulations_from_three_threads(monkeypatch):
    from relumilp.verify import bab as verify_bab
    from relumilp.verify.decide import Settings

    def plan(threads, formulation="ideal_cuts"):
        settings = Settings(deadline=None, tighten="alpha", disjunction="split", input_split=True, attack_samples=0,
                            leaf_binaries=16, batch_size=8, max_depth=8, threads=threads, log=False,
                            highs_options=None, bound_options={}, formulation=formulation)
        return verify_bab._root_milp_plan(settings)

    assert plan(2) == [("ideal_cuts", 1)]
    assert plan(3) == [("ideal_cuts", 1), ("bigm", 1)]
    assert plan(6) == [("ideal_cuts", 2), ("bigm", 3)]
    assert plan(6, "bigm") == [("bigm", 5)]
    monkeypatch.setattr(verify_bab.os, "cpu_count", lambda: 2)
    assert plan(None) == [("ideal_cuts", None)]  # HiGHS's own default, as before
    monkeypatch.setattr(verify_bab.os, "cpu_count", lambda: 8)
    assert plan(None) == [("ideal_cuts", 3), ("bigm", 4)]


@pytest.mark.parametrize("offset, expected", [(-0.05, "violated"), (0.05, "holds")])
def test_both_root_milps_beside_branch_and_bound_decide_and_stop(wide_case, monkeypatch, offset, expected):
    """With three threads the big-M and the cut-strengthened root MILPs run beside branch and bound (whose
    closing rule is off here, so a MILP must decide): the answer is right, the first to decide stops the
    rest long before the limit, and no thread is left."""
    import relumilp.verify.bab as verify_bab
    from relumilp.verify.bab import RegionObjective

    started = []
    real = verify_bab.milp_decide

    def recording(*args, **kwargs):
        started.append(args[6].formulation)
        return real(*args, **kwargs)

    monkeypatch.setattr(verify_bab, "milp_decide", recording)
    monkeypatch.setattr(RegionObjective, "closes", lambda self, upper, search: np.zeros(upper.shape, dtype=bool))
    net, domain, best = wide_case
    prop = wide_property(domain, best, offset)
    result = verify(net, prop, attack_samples=0, tighten="alpha", time_limit=300, threads=3)
    assert result.result == expected and result.time < 150, result.details
    assert sorted(started) == ["bigm", "ideal_cuts"] and not _root_milp_threads()


@pytest.mark.parametrize("offset, expected", [(-0.05, "violated"), (0.05, "holds")])
def test_branch_and_bound_ends_the_root_milp_beside_it(wide_case, monkeypatch, offset, expected):
    """Whichever half decides, the other stops: with the MILP made slow to give up (every solve runs to
    the deadline), branch and bound's answer returns long before the limit and no thread is left."""
    import relumilp.verify.bab as verify_bab

    solved = []
    real = verify_bab.milp_decide

    def stubborn(*args, **kwargs):
        import threading

        settings = args[6]
        if threading.current_thread().name != "root-milp":  # a leaf's MILP
            return real(*args, **kwargs)
        while not settings.deadline.expired():  # as a MILP that never finishes: only the deadline stops it
            time.sleep(0.01)
        solved.append(settings.deadline.ended)
        return real(*args, **kwargs)

    monkeypatch.setattr(verify_bab, "milp_decide", stubborn)
    net, domain, best = wide_case
    prop = wide_property(domain, best, offset)
    result = verify(net, prop, attack_samples=0, tighten="alpha", time_limit=300, threads=2)
    assert result.result == expected and result.time < 150, result.details
    assert solved == [True] and not _root_milp_threads()


# -- the two halves of the portfolio share what each has proven ----------------------------------------


def test_proofs_end_the_runs_watching_them_once_all_their_conjunctions_are_proven():
    from relumilp.limits import Deadline
    from relumilp.verify.decide import Proofs

    proofs = Proofs()
    outer = Deadline.after(600)
    with proofs.watch([0, 2], outer) as both, proofs.watch([1], outer) as one:
        proofs.add([0], "bab")
        assert not both.expired() and not one.expired() and proofs.version == 1
        proofs.add([2, 0], "bab")
        assert both.expired() and not one.expired() and proofs.proven([0, 2]) and not proofs.proven([0, 1])
        proofs.add([2], "bab")
        assert proofs.version == 2  # nothing new
    with proofs.watch([2], outer) as already:
        assert already.expired()
    assert not outer.expired() and proofs.all == {0, 2}


def test_a_conjunction_proven_by_the_milp_leaves_every_node_bound():
    """Once the MILP has proven a conjunction, branch and bound's node bounds and open rows ignore it, and
    the open nodes' bounds are recomputed from their stored output bounds (closing those below 0)."""
    from types import SimpleNamespace

    from relumilp.bab import OpenNodes
    from relumilp.verify.decide import Proofs
    from relumilp.verify.spec import spec_network, stack_rows

    net, domain = random_network(3)
    m = net.output_size
    outputs = [OutputConstraint(np.eye(m)[:1], [0.0]), OutputConstraint(np.vstack([np.eye(m)[:1], -np.eye(m)[:1]]), [1.0, 2.0])]
    G, h, members = stack_rows(outputs)
    proofs = Proofs()
    objective = RegionObjective(net, spec_network(net, G, h), domain, outputs, members, [0, 1], None, [], proofs)
    out = objective.fnet.output
    lower = np.array([[-0.5, 0.25, -2.0],   # conjunction 1 unreachable (row 1 > 0): bound 0.5 from conjunction 0
                      [-0.5, -1.0, -2.0],   # bound max(0.5, 1.0) = 1.0
                      [0.75, -0.25, -3.0]])  # conjunction 0 unreachable: bound 0.25 from conjunction 1
    nodes = OpenNodes()
    nodes.push({"ub": np.full(3, np.inf), "start": {out: (lower, lower + 1.0)}})
    closed = []
    search = SimpleNamespace(nodes=nodes, closed=-np.inf, in_flight=-np.inf, ub=nodes.ub,
                             prune_open=lambda: closed.append(nodes.ub.copy()))
    objective.between_rounds(search)
    np.testing.assert_array_equal(nodes.ub, [0.5, 1.0, 0.25])
    assert proofs.all == frozenset()  # every conjunction is still reachable on some node

    proofs.add([1], "milp")  # the MILP proved conjunction 1
    objective.between_rounds(search)
    np.testing.assert_array_equal(nodes.ub, [0.5, 0.5, -0.75])
    assert closed and objective.node_upper({out: lower}, None, None).tolist() == [0.5, 0.5, -0.75]
    np.testing.assert_array_equal(objective.open_rows(lower), [[True, False, False], [True, False, False],
                                                               [False, False, False]])


def test_branch_and_bound_tells_the_milp_which_conjunctions_no_open_node_reaches():
    from relumilp.bab import OpenNodes
    from relumilp.verify.decide import Proofs
    from relumilp.verify.spec import spec_network, stack_rows
    from types import SimpleNamespace

    net, domain = random_network(3)
    m = net.output_size
    outputs = [OutputConstraint(np.eye(m)[:1], [0.0]), OutputConstraint(-np.eye(m)[:1], [1.0])]
    G, h, members = stack_rows(outputs)
    proofs = Proofs()
    objective = RegionObjective(net, spec_network(net, G, h), domain, outputs, members, [0, 1], None, [], proofs)
    nodes = OpenNodes()
    nodes.push({"ub": np.full(2, np.inf), "start": {objective.fnet.output: (np.array([[0.5, -1.0], [0.1, -2.0]]),) * 2}})
    stored = nodes.column("start", objective.fnet.output, 0)
    stored[1, 0] = np.nan  # a bound that proves nothing
    objective.between_rounds(SimpleNamespace(nodes=nodes, closed=-1.0, in_flight=-np.inf, ub=nodes.ub,
                                             prune_open=lambda: None))
    assert proofs.all == frozenset()
    stored[1, 0] = 0.1
    for closed, in_flight, proven in [(0.0, -np.inf, set()),       # a node closed by a bound >= 0 (a failed leaf)
                                      (np.nan, -np.inf, set()),
                                      (-1.0, 0.3, set()),          # a batch still in flight
                                      (-1.0, np.nan, set()),
                                      (-1.0, -np.inf, {0})]:       # conjunction 0 unreachable on every open node
        search = SimpleNamespace(nodes=nodes, closed=closed, in_flight=in_flight, ub=nodes.ub, prune_open=lambda: None)
        objective.between_rounds(search)
        assert proofs.all == proven


def test_the_root_milp_skips_and_stops_on_what_branch_and_bound_proved(wide_case, monkeypatch):
    """A group that branch and bound proved before its MILP starts is skipped; one it proves while the
    group's MILP runs stops that run; together they decide the region."""
    import relumilp.verify.decide as decide
    from relumilp.limits import Deadline
    from relumilp.pipeline import compile_network
    from relumilp.verify.spec import spec_network, stack_rows

    net, domain, best = wide_case
    threshold = best.objective + 0.05 * max(1.0, abs(best.objective))
    rows = np.array([[-1.0, 0.0]])
    outputs = (OutputConstraint(rows, np.array([-threshold])), OutputConstraint(rows, np.array([-threshold - 1.0])))
    G, h, members = stack_rows(outputs)
    from relumilp.bounds import compute_bounds

    margin_net = spec_network(net, G, h)
    compiled = compile_network(margin_net, domain, bounds=compute_bounds(margin_net, domain, "symbolic"))
    settings = decide.Settings(Deadline.after(60), "symbolic", "split", None, 0, 0, 64, 60, 1, False, None, {})
    proofs = decide.Proofs()
    proofs.add([1], "bab")
    runs = []

    def proven_meanwhile(milp, t, deadline, *args):
        runs.append(milp)
        proofs.add([0], "bab")  # branch and bound proves the group this run works on
        assert deadline.expired()
        return {"status": "time_limit", "time": 0.0, "nodes": 0, "bound": None, "solution": None,
                "objective": None, "numerics": None, "notes": []}

    monkeypatch.setattr(decide, "solve_unsafe", proven_meanwhile)
    records: list = []
    verdict, _ = decide.milp_decide(net, compiled, domain, outputs, members, [0, 1], settings, records, proofs=proofs)
    assert verdict == "holds" and len(runs) == 1 and records[0]["disjuncts"] == [0]
    assert records[0]["proven_elsewhere"] is True and not settings.deadline.expired()


def several_conjunctions(seed: int, violated: bool):
    """A tiny network and 3-4 unsafe conjunctions, each moved to its own exact largest violation: with
    ``violated`` one of them at ``+MARGIN``, every other at ``-MARGIN`` to ``-4 MARGIN`` (times the scale),
    so that the portfolio's halves prove different ones first."""
    net, domain = random_network(47_000 + seed)
    rng = np.random.default_rng(seed)
    m = net.output_size
    outputs = []
    count = 3 + seed % 2
    hit = int(rng.integers(count)) if violated else -1
    for k in range(count):
        rows = int(rng.integers(1, 3))
        out = OutputConstraint(rng.normal(size=(rows, m)), np.zeros(rows))
        v0 = exact_violation(net, domain, [out])
        scale = max(1.0, abs(v0))
        margin = MARGIN if k == hit else -MARGIN * (1 + k % 4)
        outputs.append(OutputConstraint(out.C, out.d - v0 + margin * scale))
    return net, Property(domain.size, m, (domain,), tuple(outputs)), ("violated" if violated else "holds")


def check_several(seed: int):
    net, prop, expected = several_conjunctions(seed, violated=seed % 3 == 0)
    result = verify(net, prop, attack_samples=0, time_limit=60, threads=2, branching="relu", leaf_binaries=0,
                    batch_size=(1, 4, 16)[seed % 3])
    assert result.result == expected, result.details
    if expected == "violated":
        x = np.array(result.counterexample["x"])
        assert prop.is_counterexample(x, net.forward(x))


@pytest.mark.parametrize("seed", range(4))
def test_the_portfolio_with_several_conjunctions_matches_brute_force(seed):
    """Branch and bound over neurons with the root MILP beside it (two threads), several conjunctions: the
    halves share what each has proven, and the answer is brute force's."""
    check_several(seed)


@pytest.mark.slow
@pytest.mark.parametrize("seed", range(4, 60))
def test_the_portfolio_with_several_conjunctions_matches_brute_force_many(seed):
    check_several(seed)


def test_the_root_milp_stops_a_little_before_the_region_deadline(wide_case, monkeypatch):
    """HiGHS checks its limits only between steps (one ran 14 s past them on oval21): the root MILP is
    given ``MILP_GRACE`` of the time left less, on both portfolio paths, and still stops with the search."""
    import relumilp.verify.bab as verify_bab

    seen = []
    real = verify_bab.milp_decide

    def recording(*args, **kwargs):
        seen.append(args[6].deadline.at)
        return real(*args, **kwargs)

    monkeypatch.setattr(verify_bab, "milp_decide", recording)
    monkeypatch.setattr(verify_bab, "BAB_SHARE", 1e-9)
    net, domain, best = wide_case
    for threads in (1, 2):
        seen.clear()
        start = time.perf_counter()
        verify(net, wide_property(domain, best, 0.05), attack_samples=0, tighten="alpha", time_limit=60,
               threads=threads)
        assert seen and max(seen) < start + 60 - 0.02 * 50


def test_branch_and_bound_searches_only_the_margin_rows_of_conjunctions_alive_at_the_root():
    """``alive_margins``: the margin network restricted to the alive conjunctions' rows computes those
    margins exactly as the full one (same floats), keeps their root bounds, and re-indexes the members;
    with every row alive nothing changes."""
    from relumilp.bounds import compute_bounds
    from relumilp.verify.bab import alive_margins
    from relumilp.verify.spec import spec_network, stack_rows

    net, domain = random_network(31_007)
    rng = np.random.default_rng(4)
    m = net.output_size
    outputs = [OutputConstraint(rng.normal(size=(k, m)), rng.normal(size=k)) for k in (2, 1, 2)]
    G, h, members = stack_rows(outputs)
    margin_net = spec_network(net, G, h)
    bounds = compute_bounds(margin_net, domain, "symbolic")
    restricted_net, restricted_bounds, restricted_members = alive_margins(net, margin_net, bounds, members, [2, 0])
    assert restricted_members[1] == [] and len(restricted_members[0]) == 2 and len(restricted_members[2]) == 2
    X = domain.lower + rng.random((200, domain.size)) * (domain.upper - domain.lower)
    full, restricted = margin_net.forward(X), restricted_net.forward(X)
    out = margin_net.output
    for j in (0, 2):
        assert np.array_equal(restricted[:, restricted_members[j]], full[:, members[j]])
        assert np.array_equal(restricted_bounds.lower[out][restricted_members[j]], bounds.lower[out][members[j]])
        assert np.array_equal(restricted_bounds.upper[out][restricted_members[j]], bounds.upper[out][members[j]])
    assert restricted_bounds.lower[net.output] is bounds.lower[net.output]
    assert alive_margins(net, margin_net, bounds, members, [0, 1, 2]) == (margin_net, bounds, members)
