"""Solve models with network blocks, and certify the answer against the networks' own forward passes.

:func:`solve` solves any Pyomo model that contains network blocks (from :func:`relumilp.add_network`),
by default with relumilp's HiGHS session, or with any Pyomo solver;
:func:`optimize` is the common case -- minimise or maximise one output (or a linear function of the
outputs) of a network over an input domain.

A MILP solution is only as good as the solver's tolerances: with big-M rows, an integrality tolerance
of 1e-6 on a binary can move an output by 1e-6 * M. So the answer reports both the MILP's output values
and the forward pass at the returned input, and warns (or raises, with ``check="raise"``) when they
differ by more than ``tolerance`` (relative to the output scale).

``time_limit`` covers the whole call (bounds, build and solve), and Ctrl-C returns promptly with status
``interrupted`` and the best incumbent found so far (if any).
"""

from __future__ import annotations

import math
import time
import warnings
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np
import scipy.sparse as sp

from .choices import BAB_MAX_INPUTS, FORMULATIONS, MILP_MAX_NEURONS, SOLVER_BOUND_METHODS
from .choices import SOLVE_METHODS as METHODS
from .errors import RelumilpError, SolveError
from .limits import Deadline

if TYPE_CHECKING:  # Pyomo is imported by solve() itself, on first use
    import pyomo.environ as pyo


@dataclass
class SolveResult:
    """The answer of a solve.

    ``status`` is ``optimal``, ``time_limit``, ``infeasible``, ``unbounded``, ... ; ``objective`` the
    incumbent's objective (None without one); ``bound`` the best proven bound; ``gap`` the relative gap.
    ``feasible`` (networks with smooth activations, :mod:`relumilp.smooth`): ``objective`` and ``bound``
    are a certified interval on the optimum (:attr:`interval`) whose gap exceeds the tolerance.
    For the first network block: ``x`` its input, ``y`` the forward pass of the network at ``x``,
    ``y_milp`` the MILP's output values, ``discrepancy`` ``max|y - y_milp|`` (infinite when the solver
    left a value unset). ``blocks`` has the same for every network block in the model, and ``matches``
    (whether the block passed :meth:`relumilp.api.NetworkBlockData.check` within the tolerance).
    """

    status: str
    objective: float | None = None
    bound: float | None = None
    gap: float | None = None
    x: np.ndarray | None = None
    y: np.ndarray | None = None
    y_milp: np.ndarray | None = None
    discrepancy: float | None = None
    times: dict[str, float] = field(default_factory=dict)
    stats: dict = field(default_factory=dict)
    blocks: list[dict] = field(default_factory=list)
    #: why an answer is less than it seems (e.g. why a solver's "optimal" was not certified)
    notes: list[str] = field(default_factory=list)

    @property
    def has_solution(self) -> bool:
        return self.x is not None

    @property
    def interval(self) -> tuple[float, float] | None:
        """``(low, high)`` containing the true optimum: the forward value at ``x`` and the sound bound."""
        if self.objective is None or self.bound is None:
            return None
        return min(self.objective, self.bound), max(self.objective, self.bound)

    def to_json(self) -> dict:
        as_list = lambda v: None if v is None else [float(t) for t in np.ravel(v)]
        finite = lambda v: None if v is None or not math.isfinite(v) else float(v)
        return {
            "status": self.status,
            "objective": finite(self.objective),
            "bound": finite(self.bound),
            "gap": finite(self.gap),
            "x": as_list(self.x),
            "y": as_list(self.y),
            "y_milp": as_list(self.y_milp),
            "discrepancy": finite(self.discrepancy),
            "times": {k: round(v, 6) for k, v in self.times.items()},
            "stats": self.stats,
            "notes": self.notes,
        }


def solve(
    model: pyo.Block,
    time_limit: float | Deadline | None = None,
    mip_gap: float | None = None,
    threads: int | None = None,
    log: bool = False,
    check: str = "warn",
    tolerance: float = 1e-6,
    highs_options: dict | None = None,
    warmstart: bool = True,
    solver="highs",
) -> SolveResult:
    """Solve a Pyomo ``model`` that contains network blocks, and check every block against its network.

    With ``solver="highs"`` (the default) the model is compiled to matrix form by Pyomo's
    standard-form compiler and solved by relumilp's HiGHS session
    (:func:`relumilp.backends.highs.solve_milp`: exact equilibration, interruptible, the whole-call
    deadline). Any other ``solver`` (a name such as ``"gurobi"``, ``"cplex"``, ``"scip"``, ``"cbc"``, or
    a Pyomo solver object) goes through ``pyomo.environ.SolverFactory``; the same checks apply.

    With ``warmstart``, variable values already set are handed over as a MIP start; a network block
    none of whose binaries has a value is first filled from the forward pass at its input values (or,
    where they are unset, at its domain's centre), so a large big-M model rarely lacks an incumbent.

    ``time_limit`` is seconds (or a :class:`relumilp.limits.Deadline`) for the call. Ctrl-C stops the
    HiGHS session promptly; the result then has status ``interrupted`` and carries the incumbent.
    ``mip_gap`` is the relative gap that ``optimal`` promises (default 1e-6, relative to
    ``max(1, |objective|)``, no absolute gap). ``check`` is ``"warn"``, ``"raise"`` or ``"off"``: what
    to do when a block's MILP outputs differ from the forward pass at its input by more than
    ``tolerance * (1 + max|y|)``; such a solution is never reported ``optimal`` (status ``unknown``).
    """

    from .backends.highs import OPTIMALITY_GAP

    import pyomo.environ as pyo

    from .api import network_blocks

    if check not in ("warn", "raise", "off"):
        raise RelumilpError("check must be 'warn', 'raise' or 'off'")
    if not isinstance(model, pyo.Block):
        raise RelumilpError(f"solve needs a Pyomo model, got {type(model).__name__}")
    if solver is None or not (isinstance(solver, str) or hasattr(solver, "solve")):
        raise RelumilpError(f"solver must be a solver name such as 'highs' or a Pyomo solver object, got {solver!r}")
    deadline = Deadline.of(time_limit)
    gap = OPTIMALITY_GAP if mip_gap is None else _check_gap(mip_gap)
    for block in network_blocks(model):  # a block cuts off inputs outside its domain: they must not reach it
        block.check_domain()
    if warmstart:
        _start_network_blocks(model)
    started = time.perf_counter()
    if isinstance(solver, str) and solver.lower() == "highs":
        result = _solve_with_session(model, deadline, gap, threads, log, highs_options, warmstart)
    else:
        result = _solve_with_pyomo(model, solver, deadline, gap, log)
    result.times = {"solve": time.perf_counter() - started}
    if result.objective is not None:
        _check_blocks(model, result, check, tolerance)
        _certify_model(result, gap)
    elif result.status == "optimal":
        # HiGHS's word without a point it accepts as feasible (e.g. an LP whose unscaled solution breaks
        # the feasibility tolerance): nothing for the forward pass to confirm
        result.notes.append("the solver reported optimal but returned no feasible point: no certificate")
        result.status = "unknown"
    return result


def _solve_with_session(model, deadline, gap, threads, log, highs_options, warmstart) -> SolveResult:
    """Compile ``model`` to matrix form and solve it with the HiGHS session; load the values back."""
    import pyomo.environ as pyo

    from pyomo.repn.plugins.standard_form import LinearStandardFormCompiler

    from .backends.highs import solve_milp
    from .formulation.milp import MILP

    from pyomo.common.errors import InfeasibleConstraintException

    try:
        form = LinearStandardFormCompiler().write(model, mixed_form=True, set_sense=None)
    except InfeasibleConstraintException as exc:  # a constraint of fixed values only, violated
        return SolveResult(status="infeasible", notes=[f"a constraint holds no variable and is false: {exc}"])
    except (ValueError, TypeError, RuntimeError) as exc:
        raise SolveError(f"the model is not a mixed-integer linear program: {exc}") from None
    if len(form.objectives) > 1:
        raise SolveError(f"the model has {len(form.objectives)} active objectives; keep one")
    columns = form.columns
    n = len(columns)
    lower = np.array([-np.inf if v.lb is None else v.lb for v in columns], dtype=np.float64)
    upper = np.array([np.inf if v.ub is None else v.ub for v in columns], dtype=np.float64)
    integer = np.array([v.is_integer() or v.is_binary() for v in columns], dtype=bool)
    rhs = np.asarray(form.rhs, dtype=np.float64)
    kind = np.array([entry.bound_type for entry in form.rows], dtype=np.int64)
    row_lower = np.where(kind <= 0, rhs, -np.inf)  # -1: ">=", 0: "=="
    row_upper = np.where(kind >= 0, rhs, np.inf)  # 1: "<=", 0: "=="
    sense, offset, cost = "min", 0.0, np.zeros(n)
    if form.objectives:
        sense = "max" if form.objectives[0].sense == pyo.maximize else "min"
        cost = np.asarray(form.c.toarray()[0], dtype=np.float64)
        offset = float(form.c_offset[0])
    milp = MILP(col_lower=lower, col_upper=upper, integrality=integer, A=sp.csr_array(form.A),
                row_lower=row_lower, row_upper=row_upper, node_columns={}, binaries={}, row_ranges={},
                input_name="", output_name="", objective=cost, sense=sense)
    start = None
    if warmstart and any(v.value is not None for v in columns):
        start = np.clip([0.0 if v.value is None else float(v.value) for v in columns], lower, upper)
    solution = solve_milp(milp, deadline=deadline, mip_rel_gap=gap, threads=threads, log=log, start=start,
                          options=highs_options)
    result = SolveResult(status=solution.status, notes=list(solution.notes),
                         stats={"numerics": solution.numerics, "nodes": solution.nodes})
    if solution.x is not None:
        # HiGHS's values may pass a bound or an integer by its tolerances: the user's model gets them
        # snapped (a Var never holds a value its own bounds refuse)
        x = np.clip(solution.x, lower, upper)
        nearest = np.round(x)
        x = np.where(integer & (np.abs(x - nearest) <= INTEGER_SNAP), nearest, x)
        for var, value in zip(columns, x):
            var.set_value(float(value), skip_validation=True)
        # an unbounded model has points but no optimum: its objective value means nothing
        result.objective = None if solution.status == "unbounded" else float(cost @ x) + offset
    if solution.bound is not None:
        result.bound = solution.bound + offset
    return result


def _solve_with_pyomo(model, solver, deadline, gap, log) -> SolveResult:
    """Solve with any Pyomo solver (a name for ``SolverFactory``, or a solver object), mapping its
    termination condition onto relumilp's status names."""
    import pyomo.environ as pyo

    from pyomo.opt import TerminationCondition as Condition

    opt = pyo.SolverFactory(solver) if isinstance(solver, str) else solver
    if not opt.available(exception_flag=False):
        raise SolveError(f"the solver {solver!r} is not available here")
    limit = max(deadline.remaining(), 0.01) if deadline.limited else None
    if hasattr(opt, "config"):  # appsi and current solver interfaces take their settings there, by these names
        for keys, value in ((("time_limit",), limit), (("mip_gap", "rel_gap"), 0.5 * gap)):
            for key in keys:
                if value is not None and key in opt.config:
                    setattr(opt.config, key, value)
    else:  # legacy shell interfaces: the option names differ by solver; these are the common ones
        names = {"cbc": ("seconds", "ratioGap"), "glpk": ("tmlim", "mipgap"), "gurobi": ("TimeLimit", "MIPGap"),
                 "cplex": ("timelimit", "mipgap"), "scip": ("limits/time", "limits/gap")}.get(str(solver).lower())
        if names is not None:
            if limit is not None:
                opt.options[names[0]] = limit
            opt.options[names[1]] = 0.5 * gap
    results = opt.solve(model, load_solutions=False, tee=log)
    status = {Condition.optimal: "optimal", Condition.maxTimeLimit: "time_limit",
              Condition.infeasible: "infeasible", Condition.unbounded: "unbounded",
              Condition.userInterrupt: "interrupted"}.get(results.solver.termination_condition, "unknown")
    result = SolveResult(status=status)
    objective = next(model.component_data_objects(pyo.Objective, active=True), None)
    if len(results.solution) > 0:
        model.solutions.load_from(results)
        if objective is not None:
            result.objective = float(pyo.value(objective))
            maximize = objective.sense == pyo.maximize
            bound = results.problem.upper_bound if maximize else results.problem.lower_bound
            if bound is not None and math.isfinite(float(bound)):
                result.bound = float(bound)
    return result


def _certify_model(result: SolveResult, gap: float) -> None:
    """No ``optimal`` unless every block matches its network and the bound supports the objective."""
    mismatched = [b["block"] for b in result.blocks if not b["matches"]]
    if result.bound is not None and not math.isfinite(result.bound):
        result.bound = None
    if result.bound is not None:
        result.gap = abs(result.bound - result.objective) / max(1.0, abs(result.objective))
    if result.status != "optimal":
        return
    if mismatched:
        result.notes.append(f"network block(s) {', '.join(mismatched)} do not match their network's forward pass: "
                            "no certificate")
        result.status = "unknown"
    elif result.gap is None or result.gap > gap * (1.0 + 1e-9):
        result.notes.append(f"the solver reported optimal with a gap of {result.gap}: no certificate")
        result.status = "unknown"


def _start_network_blocks(model) -> None:
    """Fill the variables of every network block that has no start yet from a forward pass."""
    import pyomo.environ as pyo

    from .api import network_blocks

    for block in network_blocks(model):
        binaries = [v for v in block.component_data_objects(pyo.Var, descend_into=True) if v.is_binary()]
        if any(v.value is not None for v in binaries):
            continue  # started by the caller (or by optimize): keep it
        block.warm_start()


def _check_blocks(model, result: SolveResult, check: str, tolerance: float) -> None:
    from .api import network_blocks

    for block in network_blocks(model):
        report = block.check()
        matches = report.matches(tolerance)
        result.blocks.append({"block": block.name, "x": report.x, "y": report.y, "y_milp": report.y_milp,
                              "discrepancy": report.max_error, "matches": matches})
        if not matches and check != "off":
            reason = ("its network has a smooth activation, whose MILP is a piecewise-linear relaxation: the "
                      "objective bounds what the network attains" if block.compiled.network.has_smooth else
                      "the big-M coefficients may be too large for the solver tolerances (tighten bounds or scale)")
            message = f"block {block.name}: MILP outputs differ from the forward pass by {report.max_error:.3g}; {reason}"
            if check == "raise":
                raise SolveError(message)
            warnings.warn(message, stacklevel=3)
    if result.blocks:
        first = result.blocks[0]
        result.x, result.y, result.y_milp, result.discrepancy = first["x"], first["y"], first["y_milp"], first["discrepancy"]


def output_objective(size: int, maximize: int | None = None, minimize: int | None = None, objective=None):
    """``(coefficients, sense)`` from the CLI-style choice of one output index, or a coefficient vector."""

    chosen = [v is not None for v in (maximize, minimize, objective)]
    if sum(chosen) != 1:
        raise RelumilpError("give exactly one of maximize=K, minimize=K or objective=(coefficients, sense)")
    if objective is not None:
        coefficients, sense = objective
        try:
            coefficients = np.asarray(coefficients, dtype=np.float64).ravel()
        except (TypeError, ValueError):
            raise RelumilpError(f"objective coefficients must be {size} numbers") from None
        if coefficients.size != size or sense not in ("min", "max"):
            raise RelumilpError(f"objective must be ({size} coefficients, 'min' or 'max')")
        if not np.isfinite(coefficients).all():
            raise RelumilpError(f"objective coefficients must be finite, got {coefficients.tolist()}")
        return coefficients, sense
    index = maximize if maximize is not None else minimize
    if isinstance(index, (bool, np.bool_)) or not isinstance(index, (int, np.integer)):
        raise RelumilpError(f"maximize / minimize take one output index (an integer), got {type(index).__name__}; "
                            "for a weighted sum of outputs give objective=(coefficients, 'max' or 'min')")
    if not (0 <= int(index) < size):
        raise RelumilpError(f"output index {index} is out of range: the network has {size} outputs (0..{size - 1})")
    coefficients = np.zeros(size)
    coefficients[int(index)] = 1.0
    return coefficients, "max" if maximize is not None else "min"


def _best_sample(compiled, coefficients: np.ndarray, sense: str, samples: int = 256) -> np.ndarray:
    """The best of the domain's centre and ``samples`` random domain points: a MIP start for HiGHS,
    whose own heuristics can fail to find any feasible point of a large big-M model."""
    domain = compiled.domain
    points = np.vstack([(domain.lower + domain.upper) / 2, domain.sample(samples, np.random.default_rng(0))])
    points = points[domain.contains(points)] if domain.A is not None else points
    if len(points) == 0:
        return (domain.lower + domain.upper) / 2
    values = compiled.network.forward(points) @ coefficients
    return points[int(np.argmax(values) if sense == "max" else np.argmin(values))]


def optimize(
    network,
    input_bounds,
    maximize: int | None = None,
    minimize: int | None = None,
    objective=None,
    *,
    tighten: str = "interval",
    scale: bool | str = False,
    bounds=None,
    time_limit: float | None = None,
    mip_gap: float | None = None,
    threads: int | None = None,
    log: bool = False,
    check: str = "warn",
    method: str = "auto",
    progress: bool = False,
    formulation: str = "bigm",
    branching: str = "auto",
    **bound_options,
) -> SolveResult:
    """Globally minimise or maximise an output of ``network`` over ``input_bounds``, with a certificate.

    ``method`` is ``"milp"`` (one big-M MILP, below), ``"bab"`` (branch and bound over input boxes,
    :func:`relumilp.bab.branch_and_bound`: batched bounds per box, small MILPs at the leaves; box
    domains only) or ``"auto"`` (the default): ``bab`` for networks with at most
    :data:`~relumilp.choices.BAB_MAX_INPUTS` inputs over a box and more than
    :data:`~relumilp.choices.MILP_MAX_NEURONS` activation neurons, ``milp`` otherwise (the rule the
    benchmarks in ``docs/benchmarks.md`` support).
    ``progress`` shows a tqdm bar on stderr (branch and bound: open boxes, incumbent, bound, gap).
    ``branching`` (branch and bound only) is ``"input"`` (halve input boxes), ``"relu"`` (split
    unstable neurons, with optimised slopes) or ``"auto"`` (input boxes up to
    :data:`relumilp.bab.INPUT_BRANCHING_MAX_INPUTS` inputs, neurons beyond).

    The big-M MILP is solved by HiGHS through :func:`relumilp.backends.highs.solve_milp` (exact
    power-of-two equilibration, no absolute gap), and the answer is certified by
    :func:`certify`: the objective is the float64 forward pass at the returned input, and ``optimal``
    means the (margin-widened) solver bound lies within ``mip_gap`` (default 1e-6) of it, relative to
    ``max(1, |objective|)``. Anything the forward pass does not support is reported as ``unknown``.

    ``progress`` shows bound tightening and the solver's incumbent, bound and gap on stderr.

    Networks with smooth activations (sigmoid, tanh, ...) have no exact MILP; the answer is a certified
    interval on the optimum (the forward value at ``x`` and a sound bound) with status ``optimal`` when
    the gap is at most ``mip_gap`` (default :data:`relumilp.smooth.SMOOTH_GAP`), else ``feasible``.
    ``bab`` (``auto`` on few inputs) bounds boxes with the activations' linear relaxations;
    ``milp`` is :func:`relumilp.smooth.optimize_smooth` (MILPs over certified PWL sandwiches, refined;
    ``tighten="interval"`` becomes ``"symbolic"`` there).

    ``formulation="ideal_cuts"`` first strengthens the big-M MILP by rounds of ideal ReLU cuts at its LP
    relaxation (:func:`relumilp.formulation.ideal.root_cuts`; valid inequalities, so the optimum is
    unchanged); ``stats["cuts"]`` then reports rounds, cuts added and the root LP bound before and after.

    Returns a :class:`SolveResult` with ``times`` for ``bounds``, ``build``, ``solve`` and ``total``
    and ``stats`` on model size, neuron stability, the coefficient range handed to HiGHS, and
    ``bounds_complete`` (False when the time limit cut the bound pass short). ``time_limit`` covers
    all of it; Ctrl-C returns status ``interrupted`` with the best point known (none before the solve).
    """
    from .backends.highs import OPTIMALITY_GAP, MilpSolution, solve_milp
    from .formulation.bigm import start_vector
    from .limits import Deadline
    from .pipeline import compile_network
    from .smooth import SMOOTH_GAP, certified_interval, optimize_smooth

    started = time.perf_counter()
    if check not in ("warn", "raise", "off"):
        raise RelumilpError("check must be 'warn', 'raise' or 'off'")
    if formulation not in FORMULATIONS:
        raise RelumilpError(f"formulation must be 'bigm' or 'ideal_cuts', got {formulation!r}")
    gap = OPTIMALITY_GAP if mip_gap is None else _check_gap(mip_gap)
    deadline = Deadline.of(time_limit)
    if method not in METHODS:
        raise RelumilpError(f"unknown method {method!r}; choose one of {', '.join(METHODS)}")
    if method == "bab" and formulation != "bigm":
        raise RelumilpError("formulation= (--formulation) applies to method='milp' (--method milp) only: branch and bound "
                            "solves its own leaf MILPs")
    net, domain = _problem(network, input_bounds)
    if net.has_smooth:  # no exact MILP: a certified interval (relumilp.smooth)
        gap = SMOOTH_GAP if mip_gap is None else gap
        if method == "bab" or (method == "auto" and net.input_size <= BAB_MAX_INPUTS and domain.A is None):
            # no LP polishing over activation patterns (a sandwich MILP of the whole box): L-BFGS-B instead
            result = _optimize_bab(net, domain, (maximize, minimize, objective), tighten, bounds, deadline, gap,
                                   branching, threads, log, check, started, progress, bound_options, polish=False)
            coefficients, sense = output_objective(net.output_size, maximize, minimize, objective)
            return certified_interval(result, gap, net, domain, coefficients, sense)
        coefficients, sense = output_objective(net.output_size, maximize, minimize, objective)
        return optimize_smooth(net, domain, coefficients, sense, gap=gap, deadline=deadline, bounds=bounds,
                               threads=threads, log=log, tighten="symbolic" if tighten == "interval" else tighten)
    network, input_bounds = net, domain
    if method == "bab" or (method == "auto" and formulation == "bigm"):
        neurons = sum(node.size for node in net.activations)
        if method == "bab" or (net.input_size <= BAB_MAX_INPUTS and domain.A is None and neurons > MILP_MAX_NEURONS):
            return _optimize_bab(net, domain, (maximize, minimize, objective), tighten, bounds, deadline, gap, branching,
                                 threads, log, check, started, progress, bound_options)
    try:
        if progress and tighten in SOLVER_BOUND_METHODS:
            bound_options.setdefault("progress", True)
        compiled = compile_network(network, input_bounds, tighten=tighten, scale=scale, bounds=bounds,
                                   time_limit=deadline, **bound_options)
        coefficients, sense = output_objective(compiled.network.output_size, maximize, minimize, objective)
        milp = compiled.milp.with_objective(coefficients, sense)
        first_guess = _best_sample(compiled, coefficients, sense)
    except KeyboardInterrupt:  # before the solve there is no incumbent to report
        return SolveResult(status="interrupted", times={"total": time.perf_counter() - started})
    built = time.perf_counter()
    cuts = None
    if formulation == "ideal_cuts":
        from .formulation.ideal import root_cuts

        milp, cuts = root_cuts(compiled.network, milp, deadline=deadline, threads=threads)
    if cuts is not None and cuts["interrupted"]:  # Ctrl-C in the cut loop: only the sampled guess is known
        solution = MilpSolution("interrupted")
    else:
        solution = solve_milp(milp, deadline=deadline, mip_rel_gap=gap, threads=threads, log=log,
                              start=start_vector(compiled.network, milp, first_guess), progress=progress)
    result = certify(compiled, solution, coefficients, sense, gap, [first_guess], check)
    bound_seconds = compiled.times.get("bounds", 0.0) + compiled.times.get("scaling", 0.0)
    result.times = {
        "bounds": bound_seconds,
        "build": built - started - bound_seconds,
        **({"cuts": cuts["seconds"]} if cuts is not None else {}),
        "solve": solution.seconds,
        "total": time.perf_counter() - started,
    }
    result.stats = {**compiled.stats(), "numerics": solution.numerics, "nodes": solution.nodes,
                    "bounds_complete": compiled.bounds.complete, "method": "milp"}
    if cuts is not None:
        result.stats["cuts"] = cuts
        result.stats.update(milp.size_report())  # the model solved, cuts included
    return result




def _problem(network, input_bounds):
    from .domain import InputDomain
    from .frontends import load_network
    from .ir import Network

    net = network if isinstance(network, Network) else load_network(network)
    domain = InputDomain.of(input_bounds, net.input_size)
    from .bounds import check_valid_domain

    check_valid_domain(net, domain)  # a pruned network's domain, also when bounds are given
    return net, domain


def _optimize_bab(net, domain, choice, tighten, bounds, deadline, gap, branching, threads, log, check, started, progress,
                  bound_options, polish: bool = True):
    """:func:`optimize` by branch and bound (``bounds``, or ``tighten`` beyond symbolic, seed the root)."""
    from .bab import branch_and_bound, certified
    from .bounds import compute_bounds

    coefficients, sense = output_objective(net.output_size, *choice)
    try:
        if bounds is None and tighten not in ("interval", "symbolic"):
            bounds = compute_bounds(net, domain, tighten, time_limit=deadline, progress=progress, **bound_options)
    except KeyboardInterrupt:
        return SolveResult(status="interrupted", times={"total": time.perf_counter() - started})
    searched = time.perf_counter()
    solution, x, stats = branch_and_bound(net, domain, coefficients, sense, gap=gap, deadline=deadline,
                                          root_bounds=bounds, threads=threads, log=log, progress=progress,
                                          branching=branching, polish=polish, workers=bound_options.get("workers") or 1,
                                          executor=bound_options.get("executor"))
    result = certified(net, domain, solution, x, coefficients, sense, gap, check)
    solved = time.perf_counter()
    result.times = {"bounds": searched - started, "build": solved - searched - stats["seconds"],
                    "solve": stats["seconds"], "total": solved - started}
    result.stats = {"method": "bab", **stats, "bounds_complete": bounds is None or bounds.complete}
    return result


#: integer columns of a solved Pyomo model within this of an integer are loaded as that integer
INTEGER_SNAP = 1e-6
#: the smallest relative gap that can be certified: HiGHS stops at half the gap and its bound gets a
#: relative margin of :data:`~relumilp.backends.highs.BOUND_MARGIN` (1e-8) on top
MIN_GAP = 1e-7


def _check_gap(mip_gap) -> float:
    try:
        gap = float(mip_gap)
    except (TypeError, ValueError):
        raise RelumilpError(f"the MIP gap must be a number, got {mip_gap!r}") from None
    if not gap >= MIN_GAP or math.isinf(gap):
        raise RelumilpError(f"the MIP gap must be a finite number of at least {MIN_GAP:g} (a relative gap; "
                            f"HiGHS's bound carries a safety margin of 1e-8, so a smaller one is never certified), "
                            f"got {mip_gap!r}")
    return gap


def _into_domain(domain, x: np.ndarray, inside: np.ndarray) -> np.ndarray | None:
    """``x`` clipped into the box and, if it breaks a row ``A x <= b``, pulled towards ``inside`` (a point
    of the domain) until every row holds exactly in float64; None if that fails."""
    x = np.clip(x, domain.lower, domain.upper)
    if domain.A is None or np.all(domain.A @ x <= domain.b):
        return x
    # the furthest point towards x that the rows allow (exact arithmetic), then closer to ``inside`` by
    # growing fractions until float64 agrees: a solver's point that breaks a row by rounding barely moves
    direction = x - inside
    rate, slack = domain.A @ direction, domain.b - domain.A @ inside
    with np.errstate(divide="ignore", invalid="ignore"):
        reach = np.where(rate > 0.0, slack / rate, np.inf)
    furthest = float(np.clip(np.min(reach), 0.0, 1.0))
    for shrink in (0.0, *(2.0 ** -k for k in range(52, 0, -1))):
        candidate = np.clip(inside + furthest * (1.0 - shrink) * direction, domain.lower, domain.upper)
        if np.all(domain.A @ candidate <= domain.b):
            return candidate
    return None


def certify(compiled, solution, coefficients: np.ndarray, sense: str, gap: float, guesses=(),
            check: str = "warn") -> SolveResult:
    """Turn a solver's answer into a :class:`SolveResult` that the float64 forward pass supports.

    * The returned point is the best, by the forward pass, of the solver's input (clipped into the
      domain) and the ``guesses``; ``objective`` is ``coefficients @ net(x)`` in float64.
    * The solver's ``bound`` is kept only if no evaluated point beats it; a refuted bound makes the
      answer ``unknown`` (the model was numerically unsafe), never a certificate.
    * ``optimal`` needs the solver's word *and* ``|bound - objective| <= gap * max(1, |objective|)``.
    """
    network = compiled.original or compiled.network
    domain = compiled.domain
    sign = 1.0 if sense == "max" else -1.0
    result = SolveResult(status=solution.status, notes=list(solution.notes))
    candidates = [np.asarray(g, dtype=np.float64) for g in guesses]
    milp_x = None
    if solution.x is not None:
        milp_x = solution.x[compiled.milp.input_columns]
        repaired = _into_domain(domain, milp_x, candidates[0] if candidates else (domain.lower + domain.upper) / 2)
        if repaired is not None:
            candidates.insert(0, repaired)
    feasible = [x for x in candidates if domain.contains(x, tol=0.0)[0]]
    if feasible:
        values = [float(coefficients @ network.forward(x)) for x in feasible]
        best = int(np.argmax(sign * np.asarray(values)))
        result.x = feasible[best]
        result.y = network.forward(result.x)
        result.objective = values[best]
    if solution.x is not None:
        y_milp = solution.x[compiled.milp.output_columns]
        result.y_milp = y_milp
        y_at_milp_x = network.forward(np.clip(milp_x, domain.lower, domain.upper))
        result.discrepancy = float(np.max(np.abs(y_at_milp_x - y_milp)))
        scale_y = 1.0 + float(np.max(np.abs(y_at_milp_x)))
        if result.discrepancy > 1e-6 * scale_y and check != "off":
            message = (f"the MILP's outputs differ from the forward pass at its input by {result.discrepancy:.3g}; "
                       "its answer is not trusted beyond what the forward pass confirms")
            if check == "raise":
                raise SolveError(message)
            warnings.warn(message, stacklevel=3)
    bound = solution.bound
    if bound is not None and result.objective is not None and sign * (result.objective - bound) > 0.0:
        result.notes.append(f"the solver's bound {bound:.17g} is beaten by the forward pass ({result.objective:.17g}): "
                            "numerically unsafe model, no certificate")
        bound = None
        result.status = "unknown"
    result.bound = bound
    if bound is not None and result.objective is not None:
        result.gap = abs(bound - result.objective) / max(1.0, abs(result.objective))
    if result.status == "optimal":
        if result.gap is None or result.gap > gap * (1.0 + 1e-9):
            result.notes.append(f"the solver reported optimal, but the forward pass leaves a gap of {result.gap}: "
                                "no certificate")
            result.status = "unknown"
    elif result.status == "infeasible" and feasible:
        result.notes.append("the solver reported infeasible, but the domain has feasible points: no certificate")
        result.status = "unknown"
    return result
