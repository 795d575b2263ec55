r"""Verification of one input region on the one branch-and-bound engine (:mod:`relumilp.bab`).

The region's unsafe conjunctions ``j`` are rows ``members[j]`` of the margin network
(:func:`relumilp.verify.spec.spec_network`, margins ``g = G net(x) - h``): ``x`` is a counterexample when
``g_r(x) <= 0`` for every row ``r`` of some conjunction. :class:`RegionObjective` hands the engine the
*violation*

.. math::  v(x) = \max_j \min_{r \in j} \bigl(-g_r(x)\bigr),

which is ``>= 0`` exactly at the counterexamples. Maximising ``v`` is the same best-first search as
:func:`relumilp.optimization.optimize`'s (:func:`relumilp.bab.search`: input boxes up to
:data:`relumilp.bab.INPUT_BRANCHING_MAX_INPUTS` inputs, neuron splits with optimised slopes above), with
a threshold instead of a gap:

* **Node bound.** With ``lower(g_r)`` the engine's sound lower bound of row ``r`` on the node (it
  contains every float64 forward value there), ``v <= max_j min_{r in j} (-lower(g_r))``: a conjunction
  with a row of positive lower bound is unreachable on the node. A node whose box provably misses the
  input rows ``A x <= b`` (:func:`box_outside_rows`) has no point at all.
* **Closing.** A node closes when its bound is **strictly** below 0 -- no gap tolerance anywhere.
* **Counterexamples.** Every node's centre, the corner minimising the weakest row's linear lower bound
  and a few random points go through :func:`relumilp.verify.attack.first_counterexample`: only a point
  that the single-point float64 forward pass of the *original* network confirms in an unsafe set (and
  in the input rows) is a counterexample. The first one stops the search (``violated``).
* **Leaves.** A node with at most ``leaf_binaries`` open neurons (or ``max_depth`` deep, or a box at
  float64 resolution) is decided by :func:`relumilp.verify.decide.milp_decide` on the node's box,
  compiled with the node's bounds (split neurons clamped at their kink, so the MILP relaxes the node's
  region): ``holds`` closes the node, a re-checked candidate is a counterexample (the point need only lie
  in the region, not in the node), anything else leaves the node's engine bound ``>= 0`` among the
  closed bounds, so the region can no longer be proved. In :mod:`relumilp.bab` an ``infeasible`` leaf
  with splits closes its node unless a forward value at a point of the node contradicts it; here no such
  point can exist, since it would be a confirmed counterexample and would have ended the search.
* **Portfolio.** With neuron branching and a time limit, branch and bound and the region's root MILP
  (:func:`~relumilp.verify.decide.milp_decide` with the root bounds) both try the region. With more
  than one thread (``threads`` unset, or 2 or more) they run at once, each to the region's deadline:
  the MILP in a helper thread (HiGHS releases the GIL; it gets ``threads - 1`` threads) and the search
  here, and the first to decide ends the other's (:meth:`relumilp.limits.Deadline.end`). With
  ``threads=1`` they take turns: the search gets :data:`BAB_SHARE` of the remaining time, the MILP the
  rest. Without a time limit there is no share to give: branch and bound runs until it decides, which
  on a wide single layer can take far longer than the MILP would (pass a time limit there). The halves
  share what each has proven (:class:`~relumilp.verify.decide.Proofs`, :meth:`RegionObjective.between_rounds`):
  a conjunction the MILP proves unreachable leaves every node's bound, and one that no open node can
  reach (every closed node closed below 0, no batch in flight) is skipped, or its run stopped, in the MILP.
* **Answer.** ``holds`` when the global bound -- the maximum over open, in-flight and closed nodes (and
  the best sampled ``v``) -- is ``< 0``, i.e. every node was closed by a sound bound ``< 0``, was empty
  under its splits, or its leaf MILP proved it; ``violated`` with a confirmed counterexample; otherwise
  (deadline, failed leaves) ``unknown``.
"""

from __future__ import annotations

import math
import os
import threading
import time
from dataclasses import replace

import numpy as np

from ..bab import engine_bounds, lower_coefficients, node_bounds, node_compiled, resolve_branching, search
from ..bounds.base import Bounds
from ..domain import InputDomain
from ..matrices import densify, rmatmul
from . import attack
from .decide import Proofs, Settings, milp_decide
from .spec import spec_network


#: with neuron branching and a time limit, the share of a region's remaining time that branch and bound
#: gets before the region's root MILP takes the rest (a two-method portfolio): on the verivital average-
#: pooling network (one hidden layer of 23,328 neurons, ~4,000 unstable on a 0.04 box) HiGHS decides what
#: neuron splitting cannot, while on deeper networks splitting decides what the MILP cannot
#: (benchmarks/vnncomp.py, docs/benchmarks.md)
BAB_SHARE = 0.5
#: the share of a region's remaining time by which its root MILP stops before the region's deadline:
#: HiGHS checks its time limit and interrupts only between steps, and on oval21 ``cifar_wide`` img6762
#: one step ran 14 s past them (a 720 s call took 735 s); 3% of 720 s is 21 s
MILP_GRACE = 0.03


def _milp_deadline(deadline):
    """The deadline of a region's root MILP: :data:`MILP_GRACE` of the time left before ``deadline``."""
    return deadline.earlier(max(0.0, (1.0 - MILP_GRACE) * deadline.remaining()))


class RegionObjective:
    """The violation ``v`` of one input region (module docstring), as an objective of :func:`relumilp.bab.search`."""

    def __init__(self, net, margin_net, domain: InputDomain, outputs, members, alive, settings: Settings, records,
                 proofs: Proofs | None = None):
        self.net, self.fnet, self.domain, self.outputs = net, margin_net, domain, outputs
        self.members, self.alive, self.settings, self.records = members, list(alive), settings, records
        self.rows = [np.asarray(members[j]) for j in self.alive]
        #: conjunctions proven unreachable on the whole region, shared with the root MILP beside the search
        self.proofs = Proofs() if proofs is None else proofs
        self._dropped = np.zeros(len(self.alive), dtype=bool)  # the alive conjunctions in ``proofs``
        self._seen = -1  # the ``proofs.version`` that ``_dropped`` reflects
        #: a confirmed counterexample ``(x, y)``, or None
        self.found = None
        self.found_by = None

    @property
    def finished(self) -> bool:
        return self.found is not None

    # -- bounds ------------------------------------------------------------------------------------

    def _weakest(self, g_lower: np.ndarray) -> np.ndarray:
        """(B, alive): per conjunction, ``max_{r in j} lower(g_r)`` (> 0: unreachable on the node; ``inf``
        for a conjunction proven unreachable on the whole region)."""
        weakest = np.stack([g_lower[:, rows].max(axis=1) for rows in self.rows], axis=1)
        weakest[:, self._dropped] = np.inf
        return weakest

    def bound_boxes(self, engine, L, U, start, splits, slopes, steps, deadline=None, optimise=True,
                    refine="undecided", rows=None):
        """The engine's bounds of each node, and ``Λ`` for input branching and the corner point: per input,
        ``|Λ_i| = sum over the rows r of the weakest conjunction j* (the one setting the node's bound)
        of |Λ_{r,i}|``, ``Λ_r`` the input coefficients of ``lower(g_r)`` (how much input ``i`` moves the
        conjunction's bounds); its sign is that of ``-Λ_{r*,i}``, ``r*`` the row of ``j*`` with the
        largest lower bound (the corner that lowers it most). ``optimise`` is False in input branching
        without slope steps: the plain bounds (one back-substitution less per node, the old verifier's
        measured speed on ACAS Xu)."""
        result = engine_bounds(engine, L, U, start, splits, slopes, steps, deadline, optimise, refine, rows)
        g_lower = result.lower[self.fnet.output]
        coefficients = lower_coefficients(engine, result, splits is not None)  # (B, m, n)
        weakest = np.argmin(self._weakest(g_lower), axis=1)
        lam = np.empty((L.shape[0], L.shape[1]))
        for k, rows in enumerate(self.rows):
            here = np.flatnonzero(weakest == k)
            if here.size:
                top = rows[np.argmax(g_lower[here][:, rows], axis=1)]
                sign = np.where(coefficients[here, top, :] > 0, -1.0, 1.0)
                lam[here] = sign * np.abs(coefficients[here][:, rows, :]).sum(axis=1)
        return result, lam

    def open_rows(self, lower: np.ndarray) -> np.ndarray:
        """(B, m): the margin rows whose lower bound can still matter on each node, given bounds ``lower``
        (B, m) valid there (its parent's): the rows of the alive conjunctions that no row has proven
        unreachable yet (``lower > 0``: a child's bound is at least its parent's)."""
        proven = lower > 0.0
        rows = np.zeros(lower.shape, dtype=bool)
        for members, dropped in zip(self.rows, self._dropped):
            if not dropped:
                rows[:, members] |= ~proven[:, members].any(axis=1, keepdims=True)
        return rows

    def between_rounds(self, search) -> None:
        """Share proofs with the root MILP beside the search (:class:`~relumilp.verify.decide.Proofs`).

        * A conjunction the MILP has proven is dropped from every bound: the open nodes' bounds are
          recomputed from their stored output bounds without it (and closed when below 0), and its rows
          are no longer bounded or optimised.
        * A conjunction that no open node can reach any more (its stored output bounds prove it
          unreachable on each), while every closed node was closed by a bound below 0 and no batch is in
          flight, is proven on the whole region: the MILP skips it, or stops working on it.
        """
        if self.proofs.version != self._seen:
            self._seen = self.proofs.version
            proven = self.proofs.all
            self._dropped = np.array([j in proven for j in self.alive], dtype=bool)
            stored = search.nodes.column("start", self.fnet.output, 0)
            if stored is not None and stored.shape[0]:
                search.nodes.ub[:] = np.fmin(search.nodes.ub, -self._weakest(stored).min(axis=1))  # NaN: no news
                search.prune_open()
        if not (search.closed < 0.0 and search.in_flight == -math.inf) or not search.ub.size:
            return
        # a NaN bound proves nothing: only ``> 0`` makes a conjunction unreachable on a node
        unreachable = self._weakest(search.nodes.column("start", self.fnet.output, 0)) > 0.0
        reachable = (~unreachable).any(axis=0)
        self.proofs.add((j for j, k in zip(self.alive, reachable | self._dropped) if not k), "bab")

    def node_upper(self, lo: dict, L: np.ndarray | None, U: np.ndarray | None) -> np.ndarray:
        """``v <= max_j min_{r in j} (-lower(g_r)) = -min_j max_{r in j} lower(g_r)``; ``-inf`` on a box
        that misses the input rows (``L``, ``U`` None: boxes already known to meet them)."""
        upper = -self._weakest(lo[self.fnet.output]).min(axis=1)
        if L is not None:
            upper[box_outside_rows(self.domain, L, U)] = -math.inf
        return upper

    def closes(self, upper: np.ndarray, search) -> np.ndarray:
        """A node closes only when its sound bound on ``v`` is strictly negative."""
        return upper < 0.0

    # -- points ------------------------------------------------------------------------------------

    def value(self, x: np.ndarray) -> float:
        """``v(x)`` from the single-point float64 forward pass of the margin network (ranking and display:
        a counterexample is decided by :func:`relumilp.verify.attack.check_candidate` alone)."""
        g = self.fnet.forward(x)
        return max(float(np.min(-g[rows])) for rows in self.rows)

    def shown(self, value: float) -> float:
        return value

    def start(self, search) -> None:
        """Nothing: the sampling attack has tried the region's centre, corners and random points."""

    def consider(self, search, X: np.ndarray) -> None:
        """Counterexample candidates: the first one the original network's forward pass confirms ends the
        search; otherwise the best ``v`` among them becomes the incumbent (display)."""
        inside = self.domain.contains(X, tol=0.0)
        X = X[inside]
        if not X.shape[0]:
            return
        Y = self.net.forward(X)
        found = attack.first_counterexample(self.net, self.domain, self.outputs, X, Y)
        if found is not None:
            self.found, self.found_by = found, "bab"
            return
        margin = self.fnet[self.fnet.output]  # the spec node on the outputs: the margin net's last step
        g = margin.bias + rmatmul(Y, margin.weights[0])
        v = np.max(np.stack([np.min(-g[:, rows], axis=1) for rows in self.rows], axis=1), axis=1)
        search.offer(X[int(np.argmax(v))])

    # -- leaves ------------------------------------------------------------------------------------

    def leaf_task(self, search, lower, upper, lo: dict, hi: dict, i: int, splits: dict):
        """Node ``i``'s leaf as ``(function, args, context)`` for :func:`relumilp.bab.run_leaf`: the MILP of
        :func:`~relumilp.verify.decide.milp_decide` over its box and bounds, for the conjunctions its
        bounds leave reachable."""
        weakest = self._weakest(lo[self.fnet.output][i : i + 1])[0]
        leaf_alive = [self.alive[k] for k in np.flatnonzero(~(weakest > 0.0))]  # NaN: reachable
        # the executor (in bound_options) stays here: a worker decides its leaf serially
        settings = replace(self.settings, bound_options={})
        args = (self.net, self.fnet, lower, upper, node_bounds(lo, hi, i), self.domain.A, self.domain.b,
                self.outputs, self.members, leaf_alive, settings)
        return decide_leaf, args, None

    def leaf_result(self, search, engine_ub: float, context, outcome) -> float:
        """``-inf`` when the leaf's MILP proved it, else the node's engine bound (module docstring); a
        re-checked candidate is a counterexample."""
        verdict, found, records, seconds = outcome
        self.records.extend(records)
        search.stats["leaf_milp_time"] += seconds
        if verdict == "holds":
            return -math.inf
        # a candidate is re-checked here: the leaf may have been decided on another machine
        found = None if verdict != "violated" else attack.check_candidate(self.net, self.domain, self.outputs, found[0])
        if found is not None:
            self.found, self.found_by = found, "bab+milp"
        else:
            search.stats["leaf_milp_failed"] += 1
        return engine_ub


def decide_leaf(net, fnet, lower, upper, bounds, A, b, outputs, members, alive, settings, *, deadline):
    """A :class:`RegionObjective` leaf, here or in a worker: :func:`~relumilp.verify.decide.milp_decide`
    on the node's MILP; returns ``(verdict, found, records, seconds)``."""
    clock = time.perf_counter()
    compiled = node_compiled(fnet, lower, upper, bounds, A, b)
    records: list = []
    verdict, found = milp_decide(net, compiled, InputDomain(lower, upper, A, b), outputs, members, alive,
                                 replace(settings, deadline=deadline), records)
    return verdict, found, records, time.perf_counter() - clock


def branch_and_bound(net, margin_net, compiled, domain: InputDomain, outputs, members, alive, settings: Settings,
                     info: dict, records: list):
    """Decide one region by :func:`relumilp.bab.search` with a :class:`RegionObjective`, seeded with the
    region's root bounds ``compiled.bounds``: ``("holds", None)``, ``("violated", (x, y))`` or
    ``(None, None)`` (unknown). Ctrl-C is raised again as :class:`KeyboardInterrupt`."""
    proofs = Proofs()
    search_net, root_bounds, search_members = alive_margins(net, margin_net, compiled.bounds, members, alive)
    objective = RegionObjective(net, search_net, domain, outputs, search_members, alive, settings, records, proofs)
    deadline = settings.deadline
    portfolio = resolve_branching(settings.branching, domain.size) == "relu" and deadline.limited
    besides: list[_RootMilp] = []
    if portfolio and settings.threads != 1:
        deadline = deadline.stoppable()
        for formulation, threads in _root_milp_plan(settings):
            besides.append(_RootMilp(net, compiled, domain, outputs, members, alive,
                                     replace(settings, deadline=_milp_deadline(deadline), threads=threads,
                                             formulation=formulation), proofs))
    elif portfolio:
        deadline = deadline.share(BAB_SHARE)
    try:
        state, status = search(objective, domain, deadline=deadline, root_bounds=root_bounds,
                               batch_size=settings.batch_size, leaf_unstable=settings.leaf_binaries,
                               max_depth=settings.max_depth, threads=settings.threads, log=settings.log,
                               progress=settings.progress, branching=settings.branching, label="verify",
                               seed=settings.seed, workers=settings.bound_options.get("workers") or 1,
                               executor=settings.bound_options.get("executor"))
    finally:
        if besides:  # the search has ended (answer, deadline, Ctrl-C or error): so do the MILPs
            deadline.end()
            errors = [beside.join(raise_error=False) for beside in besides]  # every thread ended first
            error = next((e for e in errors if e is not None), None)
            if error is not None:
                raise error
    info["bab"] = state.stats
    info["bab_time"] = state.stats["seconds"]
    info["proven_by"] = proofs.by  # filled on by the MILP that may follow (one thread)
    for beside in besides:
        records.extend(beside.records)
        info["root_milp_time"] = max(info.get("root_milp_time", 0.0), beside.seconds)
    # a confirmed counterexample of either MILP first, then a proof
    milp = min((b for b in besides if b.verdict is not None), key=lambda b: b.verdict != "violated", default=None)
    if objective.found is not None:
        info["decided_by"] = objective.found_by
        return "violated", objective.found
    if status == "interrupted":
        raise KeyboardInterrupt
    proved = status == "done" and state.bound() < 0.0
    # the MILP's answer unless branch and bound proved the region: a confirmed counterexample always wins
    if milp is not None and not (proved and milp.verdict == "holds"):
        info["decided_by"] = "bab/milp"
        return milp.verdict, milp.found
    if proved:  # with conjunctions the MILP proved, the two halves decided it together
        info["decided_by"] = "bab/milp" if "milp" in proofs.by.values() else "bab"
        return "holds", None
    if not besides and portfolio and not settings.deadline.expired():
        # undecided in its share (the deadline, or leaves whose MILP failed): the rest of the time goes to
        # the region's root MILP (milp_decide runs to settings.deadline)
        clock = time.perf_counter()
        verdict, found = milp_decide(net, compiled, domain, outputs, members, alive,
                                     replace(settings, deadline=_milp_deadline(settings.deadline)), records, root=True,
                                     proofs=proofs)
        info["root_milp_time"] = time.perf_counter() - clock
        if verdict is not None:
            info["decided_by"] = "bab/milp"
            return verdict, found
    info["decided_by"] = "unknown"
    return None, None


def alive_margins(net, margin_net, bounds: Bounds, members, alive):
    """``(margin network, its root bounds, members)`` restricted to the margin rows of the conjunctions
    ``alive``: branch and bound keeps per node and per output row its optimised parameters (slopes,
    split multipliers) and copies them to every child and candidate, and the rows of conjunctions the
    root bounds proved are never read again (oval21 ``cifar_wide`` img19: 1 row of 9 alive). Row ``r``
    of the restricted network is row ``kept[r]`` of ``margin_net``: the same margin, computed the same
    way; ``members[j]`` of a conjunction not alive is empty. Unchanged when every row is used."""
    kept = np.array(sorted({int(r) for j in alive for r in members[j]}), dtype=np.int64)
    if kept.size == margin_net.output_size:
        return margin_net, bounds, members
    spec = margin_net[margin_net.output]
    position = {int(r): i for i, r in enumerate(kept)}
    alive_set = set(alive)
    restricted = [[position[int(r)] for r in rows] if j in alive_set else [] for j, rows in enumerate(members)]
    out = margin_net.output
    restricted_bounds = replace(bounds, lower={**bounds.lower, out: bounds.lower[out][kept]},
                                upper={**bounds.upper, out: bounds.upper[out][kept]})
    return spec_network(net, densify(spec.weights[0][kept]), -spec.bias[kept]), restricted_bounds, restricted


def _root_milp_plan(settings: Settings) -> list[tuple[str, int | None]]:
    """``(formulation, HiGHS threads)`` of each root MILP run beside branch and bound, which keeps one
    thread. With ideal cuts chosen and at least three threads (unset: every core), the big-M MILP runs
    as well, each on half of the rest: neither formulation wins everywhere (oval21 ``cifar_wide`` img19 is
    proved only with the cuts, img9214 in time only without; docs/benchmarks.md, "The engine, eleventh
    step"), and the first to decide stops the others."""
    threads = settings.threads if settings.threads is not None else (os.cpu_count() or 1)
    if settings.formulation == "ideal_cuts" and threads >= 3:
        share = (threads - 1) // 2
        return [("ideal_cuts", share), ("bigm", threads - 1 - share)]
    return [(settings.formulation, None if settings.threads is None else max(1, settings.threads - 1))]


class _RootMilp:
    """The region's root MILP (:func:`~relumilp.verify.decide.milp_decide`) in a helper thread, beside
    branch and bound: once it decides, it ends ``settings.deadline`` (a stoppable one), which stops the
    search; ending that deadline stops the MILP at HiGHS's next interrupt check. :meth:`join` re-raises
    what the thread raised."""

    def __init__(self, net, compiled, domain, outputs, members, alive, settings: Settings, proofs: Proofs):
        self.verdict, self.found, self.records, self.seconds, self.error = None, None, [], 0.0, None
        self._deadline = settings.deadline
        self._thread = threading.Thread(
            target=self._run, args=(net, compiled, domain, outputs, members, alive, settings, proofs),
            name="root-milp", daemon=True)
        self._thread.start()

    def _run(self, net, compiled, domain, outputs, members, alive, settings, proofs) -> None:
        clock = time.perf_counter()
        try:
            self.verdict, self.found = milp_decide(net, compiled, domain, outputs, members, alive, settings,
                                                   self.records, root=True, proofs=proofs)
        except BaseException as exc:  # surfaced by join, in the caller's thread
            self.error = exc
        finally:
            self.seconds = time.perf_counter() - clock
        if self.verdict is not None:
            self._deadline.end()

    def join(self, raise_error: bool = True):
        """Wait for the thread; re-raise what it raised (or, with ``raise_error=False``, return it)."""
        while self._thread.is_alive():  # in slices: Ctrl-C meanwhile still reaches the caller
            self._thread.join(0.05)
        if self.error is not None and raise_error:
            raise self.error
        return self.error


def box_outside_rows(domain: InputDomain, L: np.ndarray, U: np.ndarray) -> np.ndarray:
    """Boxes that provably miss ``A x <= b`` (some row's minimum over the box exceeds ``b``)."""
    if domain.A is None:
        return np.zeros(L.shape[0], dtype=bool)
    A = domain.A
    low = np.clip(A, 0, None) @ L.T + np.clip(A, None, 0) @ U.T  # (rows, B)
    return np.any(low > domain.b[:, None] + 1e-9 * (1.0 + np.abs(domain.b[:, None])), axis=0)
