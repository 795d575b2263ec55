r"""Verify VNN-LIB properties: does any input of a region reach the property's unsafe output set?

:func:`verify` answers ``holds`` (no input of any region reaches an unsafe set), ``violated`` (with a
counterexample re-checked by the float64 forward pass) or ``unknown`` (time limit, or a candidate that
failed the re-check and could not be repaired). Each input region of the property is handled in turn,
by the modules of this package:

1. **Falsification by sampling** (:mod:`.attack`): the box centre, corners and random points through
   the float64 forward pass.
2. **Specification layer and bounds** (:mod:`.spec`): the unsafe rows appended to the network as one
   affine node, whose outputs are the margins; bounds (``tighten``) on the margins drop unreachable
   conjunctions.
3. **MILP** (:mod:`.decide`, on the encoding of :mod:`relumilp.formulation.spec`): the max-violation
   MILP of the margin network, solved by HiGHS after root rounds of ideal ReLU cuts (``formulation``,
   :mod:`relumilp.formulation.ideal`); infeasible (or a dual bound above the decision slack) proves
   the region, a feasible point is a candidate counterexample.
4. **Branch and bound** (:mod:`.bab`, default on, ``input_split=False`` switches it off): the one
   engine of :mod:`relumilp.bab` maximises the region's violation ``max_j min_{r in j} -g_r(x)``,
   splitting input boxes (up to :data:`relumilp.bab.INPUT_BRANCHING_MAX_INPUTS` inputs) or neurons with
   optimised slopes and split multipliers (above), closing nodes whose sound bound is below 0 and
   deciding small nodes by step 3. With neuron splitting and a time limit, step 3 on the whole region
   runs beside it in a helper thread (``threads`` unset or at least 2; the first to decide stops the
   other), or with ``threads=1`` after it, on the half of the region's time it leaves
   (:data:`relumilp.verify.bab.BAB_SHARE`).
5. **Re-check** (:mod:`.attack`): every candidate must satisfy an unsafe conjunction under the float64
   forward pass of the original network (after an LP repair if needed); otherwise ``unknown``, never a
   false ``violated``.

``holds`` rests on sound bounds (interval/symbolic/LP bounds carry float64 round-off margins) and on
HiGHS reporting a MILP infeasible, which is exact only up to its feasibility tolerances: a violation
smaller than about 1e-6 of the model's scale can be missed. ``time_limit`` covers the whole call:
bound computation stops at the deadline with the sound bounds it has, and a region not decided by then
is ``unknown``. Ctrl-C stops the call promptly with ``unknown`` and ``details["interrupted"]``.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..backends.highs import swallow_banner
from ..choices import FORMULATIONS
from ..errors import RelumilpError
from ..formulation.spec import unsafe_milp
from ..limits import Deadline
from . import attack
from ..bab import BRANCHING, resolve_branching
from .bab import branch_and_bound
from .decide import UNSAFE_SLACK, Settings, decision_slack, milp_decide
from .spec import spec_network, stack_rows

__all__ = ["verify", "VerificationResult", "spec_network", "unsafe_milp", "decision_slack", "UNSAFE_SLACK",
           "RESULTS", "DISJUNCTIONS"]

RESULTS = ("holds", "violated", "unknown")
#: the gradient attack's share of the time left (:func:`.attack.gradient_attack`)
ATTACK_SHARE = 0.1
#: the default root bounds' share of the time left for MILP bound tightening over cones of influence,
#: after their symbolic pass (:func:`relumilp.bounds.obbt.cone_bounds`; oval21 ``cifar_wide``: 37 s on
#: two processes)
CONE_ROOT_SHARE = 0.1
#: the default root bounds' share of the time left for their ``alpha`` pass, after the cones (:func:`_root_bounds`)
ALPHA_ROOT_SHARE = 0.25
DISJUNCTIONS = ("bigm", "split")


@dataclass
class VerificationResult:
    """The answer of :func:`verify`.

    ``result`` is ``holds``, ``violated`` or ``unknown``; ``counterexample`` is ``{"x": [...], "y": [...]}``
    (``y`` = float64 forward pass at ``x``) for ``violated``, else None; ``time`` the wall time in
    seconds; ``details`` per-region diagnostics (how each region was decided, bound and MILP times,
    model sizes, MILP status and dual bound).
    """

    result: str
    counterexample: dict | None
    time: float
    details: dict = field(default_factory=dict)

    def to_json(self) -> dict:
        cex = None
        if self.counterexample is not None:
            cex = {k: [float(v) for v in self.counterexample[k]] for k in ("x", "y")}
        out = {"result": self.result, "counterexample": cex, "time": round(self.time, 6)}
        if self.details.get("notes"):
            out["notes"] = list(self.details["notes"])
        if self.details.get("interrupted"):
            out["interrupted"] = True
        return out

    def vnncomp_text(self) -> str:
        """The VNN-COMP result-file text: ``unsat`` / ``sat`` + assignment / ``timeout`` (for unknown)."""
        if self.result == "holds":
            return "unsat\n"
        if self.result == "violated":
            x, y = self.counterexample["x"], self.counterexample["y"]
            parts = [f"(X_{i} {_number(v)})" for i, v in enumerate(x)]
            parts += [f"(Y_{j} {_number(v)})" for j, v in enumerate(y)]
            return "sat\n(" + "\n ".join(parts) + ")\n"
        return "timeout\n"


def _number(value) -> str:
    """A float in positional notation that reads back exactly (VNN-LIB has no exponent syntax)."""
    return np.format_float_positional(float(value), unique=True, trim="0")


# -- the verifier ------------------------------------------------------------------------------------


def verify(
    network,
    prop,
    time_limit: float | None = None,
    tighten: str | None = None,
    disjunction: str = "split",
    input_split: bool | None = None,
    attack_samples: int = 1000,
    leaf_binaries: int = 16,
    batch_size: int = 256,
    max_depth: int = 60,
    threads: int | None = None,
    log: bool = False,
    highs_options: dict | None = None,
    seed: int = 0,
    progress: bool = False,
    branching: str = "auto",
    formulation: str = "ideal_cuts",
    **bound_options,
) -> VerificationResult:
    """Verify VNN-LIB property ``prop`` (a :class:`~relumilp.frontends.vnnlib.Property` or a path) on ``network``.

    ``network`` is an IR :class:`Network` or anything :func:`relumilp.frontends.load_network` reads.
    ``time_limit`` (seconds) covers the whole call. ``tighten`` is the bound method for each input
    region (and so for the MILP's big-M coefficients; default with branch and bound ``cones`` when it
    splits neurons -- MILP tightening over cones of influence from the symbolic bounds, then ``alpha`` on
    the nodes the cones did not bound exactly, each within a share of the time (:func:`_root_bounds`);
    its intermediate bounds stay fixed below the root, so the root's tight ones pay off in every node: oval21 ``cifar_base`` img2908 ``holds`` in 60 s from
    ``alpha`` ones, ``unknown`` at 120 s from ``symbolic`` ones -- and ``symbolic`` when it splits input
    boxes; ``lp`` without); ``disjunction``
    the encoding of several unsafe conjunctions (``split``, the default: one MILP per conjunction;
    ``bigm``: one MILP with binaries). ``attack_samples`` random points (plus the box centre and
    corners) are tried first, then a gradient attack (PGD from the centre and random points,
    :func:`.attack.gradient_attack`); 0 switches both off.
    ``input_split`` (default on; the name is historical) runs the branch and bound of :mod:`.bab` on
    each region: ``branching`` is ``"input"`` (halve input boxes), ``"relu"`` (split unstable ReLUs,
    optimised slopes) or ``"auto"`` (input up to :data:`relumilp.bab.INPUT_BRANCHING_MAX_INPUTS` inputs,
    neurons above); ``batch_size`` nodes are bounded at a time, at most ``max_depth`` splits deep, and a
    node goes to the MILP once it has at most ``leaf_binaries`` open neurons. Off, each region is one
    MILP. ``progress`` shows the branch and bound (nodes, best violation, bound) on stderr. ``threads``
    caps HiGHS's threads; with neuron splitting and a time limit, unset or 2 and more also runs the
    region's root MILP beside branch and bound (on ``threads - 1`` of them; the first to decide stops
    the other), while ``threads=1`` runs it afterwards on the time branch and bound leaves.
    ``formulation`` is that of a region's MILP: ``"ideal_cuts"`` (default) first adds root rounds of ideal
    ReLU cuts (:func:`relumilp.formulation.ideal.root_cuts`), ``"bigm"`` solves the big-M MILP as compiled
    (branch-and-bound leaves are always solved as compiled); with ``"ideal_cuts"`` and three threads or
    more, both root MILPs run beside branch and bound, on half of the other threads each. Remaining
    keyword arguments go to :func:`relumilp.bounds.compute_bounds`.
    """
    from ..bounds import METHODS
    from ..frontends import load_network
    from ..frontends.vnnlib import Property, read_vnnlib

    start = time.perf_counter()
    if disjunction not in DISJUNCTIONS:
        raise RelumilpError(f"unknown disjunction encoding {disjunction!r}; choose one of {', '.join(DISJUNCTIONS)}")
    if formulation not in FORMULATIONS:
        raise RelumilpError(f"formulation must be one of {', '.join(FORMULATIONS)}, got {formulation!r}")
    if tighten is not None and tighten not in METHODS:
        raise RelumilpError(f"unknown bound method {tighten!r}; choose one of {', '.join(METHODS)}")
    deadline = Deadline.of(time_limit)  # also rejects a negative, zero or NaN limit
    net = load_network(network)
    if not isinstance(prop, Property):
        prop = read_vnnlib(Path(prop), net.input_size, net.output_size)
    if (prop.num_inputs, prop.num_outputs) != (net.input_size, net.output_size):
        raise RelumilpError(
            f"the property has {prop.num_inputs} inputs and {prop.num_outputs} outputs but the network has "
            f"{net.input_size} and {net.output_size}"
        )
    split = True if input_split is None else bool(input_split)
    if branching not in BRANCHING:
        raise RelumilpError(f"branching must be one of {', '.join(BRANCHING)}, got {branching!r}")
    root_shares = None
    if tighten is None:
        neurons = resolve_branching(branching, net.input_size) == "relu"
        tighten = ("cones" if neurons else "symbolic") if split else "lp"
        if tighten == "cones":
            root_shares = {"alpha": ALPHA_ROOT_SHARE, "cones": CONE_ROOT_SHARE}
    settings = Settings(
        deadline=deadline,
        tighten=tighten, disjunction=disjunction, input_split=split,
        attack_samples=int(attack_samples), leaf_binaries=int(leaf_binaries), batch_size=max(1, int(batch_size)),
        max_depth=int(max_depth), threads=threads, log=log, highs_options=highs_options, bound_options=bound_options,
        progress=bool(progress), branching=branching, seed=int(seed), root_shares=root_shares,
        formulation=formulation,
    )
    swallow_banner()  # keep HiGHS's start-up banner off stdout (--json)
    rng = np.random.default_rng(seed)
    regions: list[dict] = []
    details = {"regions": regions, "tighten": tighten, "disjunction": disjunction,
               "input_split": settings.input_split, "branching": branching, "notes": list(prop.notes)}
    answer = "holds"
    for index, (domain, outputs) in enumerate(prop.regions()):
        info = {"region": index, "disjuncts": len(outputs)}
        regions.append(info)
        if settings.deadline.expired():
            info["decided_by"] = "time_limit"
            answer = "unknown"
            break
        try:
            verdict, found = _verify_region(net, domain, outputs, settings, rng, info)
        except KeyboardInterrupt:  # Ctrl-C: solvers and workers are stopped by now
            info["decided_by"], details["interrupted"] = "interrupted", True
            return VerificationResult("unknown", None, time.perf_counter() - start, details)
        if verdict == "violated":
            x, y = found
            return VerificationResult("violated", {"x": x, "y": y}, time.perf_counter() - start, details)
        if verdict is None:
            answer = "unknown"
    return VerificationResult(answer, None, time.perf_counter() - start, details)


def _root_bounds(margin_net, domain, settings: Settings, members):
    """The region's bounds by ``settings.tighten``. Verify's default (``cones`` with branch and bound on
    neurons, ``settings.root_shares``) runs the symbolic pass to the deadline, MILP bound tightening over
    cones of influence for at most :data:`CONE_ROOT_SHARE` of the time left (the neurons whose cone holds
    few binaries: the early layers of a convolutional network, :func:`relumilp.bounds.obbt.cone_bounds`),
    then the slope optimisation (``alpha``) for at most :data:`ALPHA_ROOT_SHARE` on the nodes the cones
    did not bound exactly, which carries their gain to the later layers
    (:func:`relumilp.bounds.compute_bounds`). Through the lowered max-pool trees of verivital's
    max-pooling net the symbolic pass alone takes 40-110 s of its 420 s and ``alpha`` several times that,
    while the cone MILPs bound those trees exactly in 50 s. Branch and bound keeps these intermediate
    bounds in every node, so what they gain pays off everywhere: oval21 ``cifar_base`` img7779's margin
    lower bounds rose by 0.08-0.65 over ``alpha``'s (the weakest row's from -1.297 to -0.643). A step is
    skipped once the bounds prove every conjunction of ``members`` unreachable: they are the answer."""
    from ..bounds import compute_bounds
    from ..parallel import default_workers

    options = dict(settings.bound_options)
    if settings.root_shares is not None:
        def proved(bounds) -> bool:
            g_lower = bounds.lower[margin_net.output]
            return all(g_lower[rows].max() > 0.0 for rows in members)

        most = default_workers()  # the threads asked for, but no worker processes from a plain script
        options.setdefault("shares", settings.root_shares)
        options.setdefault("stop_when", proved)
        options["workers"] = options.get("workers") or min(settings.threads or most, most)
    return compute_bounds(margin_net, domain, settings.tighten, time_limit=settings.deadline, **options)


def _verify_region(net, domain, outputs, settings: Settings, rng, info):
    """``("holds", None)``, ``("violated", (x, y))`` or ``(None, None)`` (unknown) for one input region."""
    from ..pipeline import compile_with_bounds

    clock = time.perf_counter()
    found = attack.sampling_attack(net, domain, outputs, settings.attack_samples, rng)
    if found is None and settings.attack_samples > 0:
        found = attack.gradient_attack(net, domain, outputs, rng, deadline=settings.deadline.share(ATTACK_SHARE))
    info["attack_time"] = time.perf_counter() - clock
    if found is not None:
        info["decided_by"] = "attack"
        return "violated", found
    G, h, members = stack_rows(outputs)
    margin_net = spec_network(net, G, h)
    clock = time.perf_counter()
    compiled = compile_with_bounds(margin_net, domain, _root_bounds(margin_net, domain, settings, members))
    info["bounds_time"] = time.perf_counter() - clock
    g_lower, _ = compiled.bounds[margin_net.output]
    stats = compiled.stats()
    info.update(binaries=stats["binaries"], unstable=stats["unstable"])
    lower_by = np.array([max(g_lower[r] for r in rows) for rows in members])
    alive = [int(j) for j in np.argsort(lower_by, kind="stable") if not lower_by[j] > 0.0]  # NaN: reachable
    info["pruned_by_bounds"] = len(members) - len(alive)
    if not alive:
        info["decided_by"] = "bounds"
        return "holds", None
    if settings.deadline.expired():
        info["decided_by"] = "time_limit"
        return None, None
    info["milp"] = records = []
    if not settings.input_split:
        verdict, found = milp_decide(net, compiled, domain, outputs, members, alive, settings, records, region=True)
        info["decided_by"] = "milp" if verdict is not None else "unknown"
        return verdict, found
    return branch_and_bound(net, margin_net, compiled, domain, outputs, members, alive, settings, info, records)
