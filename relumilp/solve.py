"""Solve with HiGHS through Pyomo, and check the answer against the network's own forward pass.

:func:`solve` solves any Pyomo model that contains network blocks (from :func:`relumilp.add_network`);
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

import contextlib
import logging
import math
import time
import warnings
from dataclasses import dataclass, field

import highspy
import numpy as np
import pyomo.environ as pyo
from pyomo.contrib.appsi.base import TerminationCondition
from pyomo.contrib.appsi.solvers import Highs

from .api import add_network, network_blocks, warm_start
from .errors import RelumilpError, SolveError
from .backends.highs import _Cancel, call_interruptibly, swallow_banner
from .limits import Deadline

_STATUS = {
    TerminationCondition.optimal: "optimal",
    TerminationCondition.maxTimeLimit: "time_limit",
    TerminationCondition.infeasible: "infeasible",
    TerminationCondition.unbounded: "unbounded",
    TerminationCondition.infeasibleOrUnbounded: "infeasible_or_unbounded",
    TerminationCondition.maxIterations: "iteration_limit",
    TerminationCondition.interrupted: "interrupted",
}


@dataclass
class SolveResult:
    """The answer of a solve.

    ``status`` is ``optimal``, ``time_limit``, ``infeasible``, ``unbounded``, ... ; ``objective`` the
    incumbent's objective (None without one); ``bound`` the best proven bound; ``gap`` the relative gap.
    For the first network block: ``x`` its input, ``y`` the forward pass of the network at ``x``,
    ``y_milp`` the MILP's output values, ``discrepancy`` ``max|y - y_milp|``. ``blocks`` has the same
    for every network block in the model.
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


def _values(variables) -> np.ndarray:
    return np.array([pyo.value(variables[i]) for i in variables.index_set()], dtype=np.float64)


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
) -> SolveResult:
    """Solve ``model`` with HiGHS (Pyomo's appsi interface over highspy) and check every network block.

    With ``warmstart``, variable values already set (e.g. by :func:`relumilp.api.warm_start`) are
    handed to HiGHS as a MIP start. A network block none of whose binaries has a value is first
    filled from the forward pass at its input values (or, where they are unset, at its domain's
    centre): HiGHS fixes the start's integers and completes the rest by an LP, so a large big-M model
    rarely lacks an incumbent.

    ``time_limit`` is seconds (or a :class:`relumilp.limits.Deadline`) for the call. Ctrl-C stops HiGHS
    promptly; the result then has status ``interrupted`` and carries the incumbent, if any.
    ``mip_gap`` is the relative gap to stop at (default 1e-6, tighter than HiGHS's own 1e-4).
    ``check`` is ``"warn"``, ``"raise"`` or ``"off"``: what to do when a block's MILP outputs differ
    from the forward pass at its input by more than ``tolerance * (1 + max|y|)``.
    """
    if check not in ("warn", "raise", "off"):
        raise RelumilpError("check must be 'warn', 'raise' or 'off'")
    swallow_banner()
    solver = Highs()
    if not solver.available():
        raise SolveError("HiGHS (highspy) is not available: pip install highspy")
    solver.config.load_solution = False
    solver.config.stream_solver = bool(log)
    solver.config.warmstart = bool(warmstart)
    deadline = Deadline.of(time_limit)
    if deadline.limited:
        solver.config.time_limit = max(deadline.remaining(), 0.01)
    # HiGHS stops at a relative gap of 1e-4 by default; a "global optimum" here means 1e-6.
    solver.config.mip_gap = 1e-6 if mip_gap is None else float(mip_gap)
    options = {"mip_feasibility_tolerance": 1e-9, "primal_feasibility_tolerance": 1e-9}
    if threads:
        # HiGHS fixes its thread pool at the first run in a process (e.g. during bound tightening);
        # a different count is only accepted after the global scheduler is reset.
        highspy.Highs.resetGlobalScheduler(True)
        options["threads"] = int(threads)
    options.update(highs_options or {})
    solver.highs_options = options
    if warmstart:
        _start_network_blocks(model)
    start = time.perf_counter()
    results = _solve_interruptibly(solver, model)
    elapsed = time.perf_counter() - start
    status = _STATUS.get(results.termination_condition, str(results.termination_condition).split(".")[-1])
    result = SolveResult(status=status, times={"solve": elapsed})
    result.bound = results.best_objective_bound
    if results.best_feasible_objective is not None:
        results.solution_loader.load_vars()
        result.objective = results.best_feasible_objective
        if result.bound is not None and math.isfinite(result.bound):
            result.gap = abs(result.objective - result.bound) / max(1e-10, abs(result.objective))
        _check_blocks(model, result, check, tolerance)
    return result


def _solve_interruptibly(solver: Highs, model):
    """``solver.solve(model)`` so that Ctrl-C stops HiGHS and returns its result (status interrupted).

    appsi runs highspy in the calling thread, where a signal is seen only after the run; so the solve
    runs in a helper thread, and a Ctrl-C asks the highspy object appsi holds to stop (its own
    user-interrupt callback, which appsi subscribes through ``HandleKeyboardInterrupt``).
    """
    def stop():
        highs = getattr(solver, "_solver_model", None)
        if highs is not None:  # None until appsi has built the model: asked again on the next poll
            highs.cancelSolve()

    with _quiet_about_interrupts():
        results, _ = call_interruptibly(lambda: solver.solve(model), _Cancel(hook=stop))
    # appsi (Pyomo 6.x) reports HiGHS's kInterrupt as "unknown" without the incumbent; a solve that
    # ended by itself before the request reached HiGHS keeps its own status
    highs = solver._solver_model
    if highs is not None and highs.getModelStatus() == highspy.HighsModelStatus.kInterrupt:
        results.termination_condition = TerminationCondition.interrupted
        if solver._sol is not None and solver._sol.value_valid and solver._objective is not None:
            results.best_feasible_objective = highs.getInfo().objective_function_value
    return results


@contextlib.contextmanager
def _quiet_about_interrupts():
    """Drop appsi's "unhandled status kInterrupt" warning, which :func:`_solve_interruptibly` handles."""
    log = logging.getLogger("pyomo.contrib.appsi.solvers.highs")
    drop = lambda record: "kInterrupt" not in record.getMessage()
    log.addFilter(drop)
    try:
        yield
    finally:
        log.removeFilter(drop)


def _start_network_blocks(model) -> None:
    """Fill the variables of every network block that has no start yet from a forward pass."""
    for block in network_blocks(model):
        binaries = [v for v in block.component_data_objects(pyo.Var, descend_into=True) if v.is_binary()]
        if any(v.value is not None for v in binaries):
            continue  # started by the caller (or by optimize): keep it
        domain = block.compiled.domain
        x = np.array([block.inputs[i].value for i in block.inputs.index_set()], dtype=object)
        unset = np.array([value is None for value in x])
        x[unset] = ((domain.lower + domain.upper) / 2)[unset]
        warm_start(block, x.astype(np.float64))


def _check_blocks(model, result: SolveResult, check: str, tolerance: float) -> None:
    for block in network_blocks(model):
        compiled = block.compiled
        x = _values(block.inputs)
        y_milp = _values(block.outputs)
        y = compiled.network.forward(x)
        discrepancy = float(np.max(np.abs(y - y_milp)))
        result.blocks.append({"block": block.name, "x": x, "y": y, "y_milp": y_milp, "discrepancy": discrepancy})
        if discrepancy > tolerance * (1.0 + float(np.max(np.abs(y)))) and check != "off":
            message = (
                f"block {block.name}: MILP outputs differ from the forward pass by {discrepancy:.3g}; "
                "the big-M coefficients may be too large for the solver tolerances (tighten bounds or scale)"
            )
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
        coefficients = np.asarray(coefficients, dtype=np.float64).ravel()
        if coefficients.size != size or sense not in ("min", "max"):
            raise RelumilpError(f"objective must be ({size} coefficients, 'min' or 'max')")
        return coefficients, sense
    index = maximize if maximize is not None else minimize
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
    **bound_options,
) -> SolveResult:
    """Globally minimise or maximise an output of ``network`` over ``input_bounds``, with a certificate.

    The big-M MILP is solved by HiGHS through :func:`relumilp.backends.highs.solve_milp` (exact
    power-of-two equilibration, no absolute gap), and the answer is certified by
    :func:`certify`: the objective is the float64 forward pass at the returned input, and ``optimal``
    means the (margin-widened) solver bound lies within ``mip_gap`` (default 1e-6) of it, relative to
    ``max(1, |objective|)``. Anything the forward pass does not support is reported as ``unknown``.

    Returns a :class:`SolveResult` with ``times`` for ``bounds``, ``build``, ``solve`` and ``total``
    and ``stats`` on model size, neuron stability, the coefficient range handed to HiGHS, and
    ``bounds_complete`` (False when the time limit cut the bound pass short). ``time_limit`` covers
    all of it; Ctrl-C returns status ``interrupted`` with the best point known (none before the solve).
    """
    from .backends.highs import OPTIMALITY_GAP, solve_milp
    from .formulation.bigm import start_vector
    from .limits import Deadline
    from .pipeline import compile_network

    started = time.perf_counter()
    if check not in ("warn", "raise", "off"):
        raise RelumilpError("check must be 'warn', 'raise' or 'off'")
    gap = OPTIMALITY_GAP if mip_gap is None else _check_gap(mip_gap)
    deadline = Deadline.of(time_limit)
    try:
        compiled = compile_network(network, input_bounds, tighten=tighten, scale=scale, bounds=bounds,
                                   time_limit=deadline, **bound_options)
        coefficients, sense = output_objective(compiled.network.output_size, maximize, minimize, objective)
        milp = compiled.milp.with_objective(coefficients, sense)
        first_guess = _best_sample(compiled, coefficients, sense)
    except KeyboardInterrupt:  # before the solve there is no incumbent to report
        return SolveResult(status="interrupted", times={"total": time.perf_counter() - started})
    built = time.perf_counter()
    solution = solve_milp(milp, deadline=deadline, mip_rel_gap=gap, threads=threads, log=log,
                          start=start_vector(compiled.network, milp, first_guess))
    result = certify(compiled, solution, coefficients, sense, gap, [first_guess], check)
    bound_seconds = compiled.times.get("bounds", 0.0) + compiled.times.get("scaling", 0.0)
    result.times = {
        "bounds": bound_seconds,
        "build": built - started - bound_seconds,
        "solve": solution.seconds,
        "total": time.perf_counter() - started,
    }
    result.stats = {**compiled.stats(), "numerics": solution.numerics, "nodes": solution.nodes,
                    "bounds_complete": compiled.bounds.complete}
    return result


def _check_gap(mip_gap) -> float:
    gap = float(mip_gap)
    if not gap >= 0.0:
        raise RelumilpError(f"the MIP gap must be a non-negative number, got {mip_gap!r}")
    return gap


def _into_domain(domain, x: np.ndarray, inside: np.ndarray) -> np.ndarray | None:
    """``x`` clipped into the box and, if it breaks a row ``A x <= b``, pulled towards ``inside`` (a point
    of the domain) until every row holds exactly in float64; None if that fails."""
    x = np.clip(x, domain.lower, domain.upper)
    if domain.A is None or np.all(domain.A @ x <= domain.b):
        return x
    for t in (1.0 - 2.0 ** -k for k in range(1, 60)):
        candidate = np.clip(inside + t * (x - inside), domain.lower, domain.upper)
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
