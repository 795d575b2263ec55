r"""The MILP decision of one (sub-)domain: ``holds``, ``violated`` (re-checked) or unknown.

The margin network's big-M MILP, extended with the max-violation variable ``t``
(:func:`relumilp.formulation.spec.unsafe_milp`), is solved with HiGHS (the equilibrated session of
:func:`relumilp.backends.highs.solve_milp`). Several conjunctions are either solved one MILP each
(``disjunction="split"``, the default: most promising first, i.e. smallest ``max_r lower(g_r)``,
stopping at a violation) or encoded in one MILP (``disjunction="bigm"``).

The column bound ``t <= δ`` (:func:`decision_slack`) makes any feasible point a candidate
counterexample (the first run stops at the first one, ``mip_max_improving_sols = 1``), which the
float64 forward pass must confirm (:mod:`relumilp.verify.attack`). ``holds`` rests on sound bounds
(interval/symbolic/LP bounds carry float64 round-off margins) and on HiGHS reporting the MILP
infeasible although ``t`` may go up to ``δ``, or on its margin-widened dual bound on ``min t``
exceeding ``δ``: ``δ`` is well above what the feasibility tolerances of the equilibrated model (1e-6
relative to each row's largest term, by default) can hide, so "infeasible" cannot hide a point with
``t <= 0``. Anything else is ``unknown``.
"""

from __future__ import annotations

import threading
from contextlib import contextmanager
from dataclasses import dataclass
from types import MappingProxyType

import numpy as np

from ..formulation.ideal import root_cuts
from ..formulation.milp import MILP
from ..formulation.spec import unsafe_milp
from ..limits import Deadline
from . import attack


@dataclass
class Settings:
    """The options of one :func:`relumilp.verify.verify` call, as read by the decision and branch and bound."""

    deadline: Deadline
    tighten: str
    disjunction: str
    input_split: bool | None
    attack_samples: int
    leaf_binaries: int
    batch_size: int
    max_depth: int
    threads: int | None
    log: bool
    highs_options: dict | None
    bound_options: dict
    progress: bool = False
    branching: str = "auto"
    #: seed of the random points the branch and bound tries (the attack's are drawn from it too)
    seed: int = 0
    #: with verify's default ``cones`` root bounds: the share of the time left that each of its steps may
    #: take (``compute_bounds``'s ``shares``; None: ``tighten`` runs to the deadline, as the user asked)
    root_shares: dict | None = None
    #: a region's MILP: ``"ideal_cuts"`` strengthens it by root rounds of ideal ReLU cuts before HiGHS
    #: solves it (:func:`relumilp.formulation.ideal.root_cuts`), ``"bigm"`` leaves it as compiled
    formulation: str = "ideal_cuts"


class Proofs:
    """The conjunctions of one region proven unreachable so far, shared by the two halves of a portfolio
    (:mod:`relumilp.verify.bab`): the root MILP adds each group it proves, and branch and bound drops
    those rows from every node's bound; branch and bound adds a conjunction once no open node can
    reach it, and the MILP skips it, or stops working on it (:meth:`watch`). Thread-safe."""

    def __init__(self):
        self._lock = threading.Lock()
        self._proven: set = set()
        #: who proved each conjunction first ("milp" or "bab"), for the region's record
        self.by: dict = {}
        self._watches: list = []  # (conjunctions, stoppable deadline) of the runs working on them
        #: bumped on every new proof (a cheap "anything new?" for the branch and bound's rounds)
        self.version = 0

    def add(self, conjunctions, by: str) -> None:
        with self._lock:
            new = {int(j) for j in conjunctions} - self._proven
            if not new:
                return
            self._proven |= new
            self.by.update(dict.fromkeys(new, by))
            self.version += 1
            done = [watch for watch in self._watches if watch[0] <= self._proven]
            self._watches = [watch for watch in self._watches if not watch[0] <= self._proven]
        for _, deadline in done:
            deadline.end()

    def proven(self, conjunctions) -> bool:
        """Whether every one of ``conjunctions`` is proven."""
        with self._lock:
            return {int(j) for j in conjunctions} <= self._proven

    @property
    def all(self) -> frozenset:
        with self._lock:
            return frozenset(self._proven)

    @contextmanager
    def watch(self, conjunctions, deadline: Deadline):
        """``deadline`` made stoppable, and ended early once all of ``conjunctions`` are proven (by the
        other half)."""
        watch = (frozenset(int(j) for j in conjunctions), deadline.stoppable())
        with self._lock:
            proven = watch[0] <= self._proven
            if not proven:
                self._watches.append(watch)
        if proven:
            watch[1].end()
        try:
            yield watch[1]
        finally:
            with self._lock:
                self._watches = [w for w in self._watches if w is not watch]


#: what the solver's word on ``min t`` is worth, relative to the magnitudes that make up the margins
#: (:func:`decision_slack`): ten times the feasibility tolerance of the equilibrated model, per layer
UNSAFE_SLACK = 1e-8


def decision_slack(compiled) -> float:
    """The smallest ``min t`` a MILP may claim and still decide ``holds``.

    Every row of the equilibrated model holds to its feasibility tolerance relative to its largest
    term, and errors pass through the layers; so the slack is :data:`UNSAFE_SLACK` times the number
    of affine layers times the largest term of any layer (``|W| max|x| + |b|`` from the bounds).
    """
    net, bounds = compiled.network, compiled.bounds
    largest = 0.0
    for node in net.affines:
        terms = np.abs(node.bias) + sum(
            np.maximum(np.abs(bounds.lower[s]), np.abs(bounds.upper[s])) @ np.abs(w).T
            for s, w in zip(node.inputs, node.weights))
        largest = max(largest, float(np.max(terms, initial=0.0)))
    return UNSAFE_SLACK * len(net.affines) * max(largest, np.finfo(float).tiny)


def solve_unsafe(milp: MILP, t: int, deadline, threads, log, highs_options, first_only: bool) -> dict:
    """Run HiGHS (the equilibrated session) on an unsafe-set MILP.

    Returns ``{"status", "solution", "objective", "bound", "nodes", "time", "numerics"}``; ``bound`` is a
    lower bound on ``min t`` already widened by the session's margin. With ``first_only`` HiGHS stops at
    its first feasible point (a candidate counterexample).
    """
    from ..backends.highs import solve_milp

    run = solve_milp(milp, deadline=deadline, threads=threads, log=log, options=highs_options,
                     stop_at_first_solution=first_only, on_interrupt="raise")
    return {"status": run.status, "time": run.seconds, "nodes": run.nodes, "bound": run.bound,
            "solution": run.x, "objective": run.objective, "numerics": run.numerics, "notes": run.notes}


#: HiGHS options of a region's root MILP (``milp_decide(..., root=True)``): its primal heuristics off. The
#: attacks and branch and bound look for counterexamples already; on oval21 ``cifar_base`` img4631 (one
#: thread) HiGHS spent 462 of its 562 s in root sub-MIPs (RINS, RENS), and proved the MILP infeasible in
#: 55 s at its root node without them (docs/benchmarks.md, "The engine, eighth step")
PROOF_OPTIONS = MappingProxyType({
    "mip_heuristic_effort": 0.0, "mip_heuristic_run_rens": False, "mip_heuristic_run_rins": False,
    "mip_heuristic_run_root_reduced_cost": False, "mip_heuristic_run_feasibility_jump": False})


def milp_decide(net, compiled, domain, outputs, members, alive, settings: "Settings", records, root: bool = False,
                proofs: Proofs | None = None, region: bool = False):
    """Decide one domain by MILP: ``("holds", None)``, ``("violated", (x, y))`` or ``(None, None)``.

    Per group of conjunctions, the max-violation MILP (``min t``, ``t <= δ``) is solved twice at most:

    1. stopping at the first feasible point, a candidate counterexample that the float64 forward pass
       must confirm (directly, or after the LP repair over its activation pattern);
    2. if that candidate fails, to optimality (or the deadline), for a dual bound.

    ``holds`` needs a proof that ``min t > 0``: HiGHS finds the model infeasible although ``t`` may go
    up to ``δ =`` :func:`decision_slack` (well above what the feasibility tolerances of the
    equilibrated model can hide, so "infeasible" cannot hide a point with ``t <= 0``), or its
    margin-widened dual bound on ``min t`` exceeds ``δ``. Anything else is ``unknown``.

    ``region`` marks the MILP of a whole input region (not a branch-and-bound leaf): with
    ``settings.formulation == "ideal_cuts"`` each group's MILP first gets root rounds of ideal ReLU cuts
    (:func:`relumilp.formulation.ideal.root_cuts`; valid inequalities, rounded outward, so no point of the
    MILP is lost). On oval21 ``cifar_wide`` img19 HiGHS's own root cut loop took 690 s and still left
    the MILP open; after 29 s of ideal cuts (8 rounds, 560 cuts) it proved it infeasible at its root node
    in 84 s, beside branch and bound. The cuts cost time where HiGHS alone does well (img9214: 547 s
    without, undecided at 720 s with them): docs/benchmarks.md, "The engine, eleventh step".

    ``root`` marks a region's root MILP, run beside or after branch and bound (it is a region's MILP
    too): it is solved with :data:`PROOF_OPTIONS` under the user's ``highs_options``. With ``proofs``
    (:class:`Proofs`, shared with branch and bound) a group already proven there is skipped, a run is
    stopped once its group is proven there, and every group proven here is added.
    """
    g_lower, g_upper = compiled.bounds[compiled.network.output]
    options = {**PROOF_OPTIONS, **(settings.highs_options or {})} if root else settings.highs_options
    slack = decision_slack(compiled)
    groups = [list(alive)] if settings.disjunction == "bigm" else [[j] for j in alive]
    unknown = False
    proofs = Proofs() if proofs is None else proofs
    for group in groups:
        if settings.deadline.expired():
            return None, None
        if proofs.proven(group):
            continue
        milp, t = unsafe_milp(compiled.milp, g_lower, g_upper, [members[j] for j in group], t_upper=slack)
        cuts = None
        if (region or root) and settings.formulation == "ideal_cuts" and milp.num_binaries:
            with proofs.watch(group, settings.deadline) as deadline:
                milp, cuts = root_cuts(compiled.network, milp, deadline=deadline, threads=settings.threads)
            if cuts["interrupted"]:
                raise KeyboardInterrupt
        decided = False
        for first_only in (True, False):
            with proofs.watch(group, settings.deadline) as deadline:
                run = solve_unsafe(milp, t, deadline, settings.threads, settings.log, options, first_only)
            record = {k: run[k] for k in ("status", "time", "nodes", "bound")}
            record.update(disjuncts=[int(j) for j in group], binaries=int(milp.num_binaries), first_only=first_only)
            if cuts is not None:
                record["cuts"], cuts = cuts, None  # on the group's first run only
            records.append(record)
            if run["status"] == "infeasible" or (run["bound"] is not None and run["bound"] > slack):
                decided = True  # holds for this group
                proofs.add(group, "milp")
                break
            if proofs.proven(group):  # by the other half while this run went on
                record["proven_elsewhere"] = True
                decided = True
                break
            if run["solution"] is not None:
                record["candidate_max_violation"] = run.get("objective")
                checked = attack.check_candidate(net, domain, outputs, run["solution"][compiled.milp.input_columns])
                if checked is None:
                    repaired = attack.repair(milp, t, run["solution"], settings.deadline, settings.threads)
                    if repaired is not None:
                        checked = attack.check_candidate(net, domain, outputs, repaired[compiled.milp.input_columns])
                    record["repaired"] = checked is not None
                if checked is not None:
                    return "violated", checked
            if run["status"] in ("time_limit", "interrupted", "error"):
                break
        unknown |= not decided
    return (None, None) if unknown else ("holds", None)
