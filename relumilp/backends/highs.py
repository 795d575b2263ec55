"""The one HiGHS session: process-wide state, per-run limits, interruption and status names.

Everything relumilp does with highspy goes through here:

* **Process-wide state.** HiGHS prints a banner on file descriptor 1 when a process creates its first
  instance (:func:`swallow_banner` keeps it off stdout, so ``--json`` stays clean), and it fixes its
  thread pool at the first run (:func:`new_highs` resets the scheduler when a thread count is asked).
* **Per-run time limits.** HiGHS 1.16 measures an LP's ``time_limit`` against the *total* run time of
  the model object, but a MIP's from the start of each run; :func:`set_run_time_limit` hides that.
* **Interruption.** :func:`run` runs HiGHS in a helper thread while the main thread waits in Python, so
  Ctrl-C (``KeyboardInterrupt``) is seen within a tenth of a second: the solve is cancelled through
  HiGHS's user-interrupt callback, the best solution so far stays loaded, and the interrupt is re-raised
  (or reported as status ``interrupted``).
* **One status vocabulary** (:data:`STATUSES`), used by every result type of relumilp.
"""

from __future__ import annotations

import contextlib
import math
import os
import signal
import sys
import threading
import time
from dataclasses import dataclass, field

import highspy
import numpy as np

from .._progress import progress_bar
from ..errors import RelumilpError, SolveError
from ..formulation.milp import MILP
from ..limits import Deadline
from ..parallel import check_parallel

INF = highspy.kHighsInf

#: the status names every relumilp result uses
STATUSES = ("optimal", "infeasible", "unbounded", "time_limit", "interrupted", "unknown", "error")

_MODEL_STATUS = {
    highspy.HighsModelStatus.kOptimal: "optimal",
    highspy.HighsModelStatus.kInfeasible: "infeasible",
    highspy.HighsModelStatus.kUnbounded: "unbounded",
    highspy.HighsModelStatus.kUnboundedOrInfeasible: "unknown",
    highspy.HighsModelStatus.kTimeLimit: "time_limit",
    highspy.HighsModelStatus.kIterationLimit: "time_limit",
    highspy.HighsModelStatus.kSolutionLimit: "time_limit",
    highspy.HighsModelStatus.kInterrupt: "interrupted",
    highspy.HighsModelStatus.kObjectiveBound: "time_limit",
    highspy.HighsModelStatus.kObjectiveTarget: "time_limit",
}


def status_name(status: highspy.HighsModelStatus) -> str:
    """The relumilp status name of a HiGHS model status (anything unexpected is ``error``)."""
    return _MODEL_STATUS.get(status, "error")


_BANNER_SHOWN = False


def swallow_banner() -> None:
    """Create the process's first HiGHS instance with file descriptor 1 pointed at /dev/null.

    HiGHS prints its banner when a process creates its first instance, before any option can be set;
    doing that once here (also in pool and dask workers) keeps stdout clean for ``--json`` output.
    """
    global _BANNER_SHOWN
    if not _BANNER_SHOWN:
        _BANNER_SHOWN = True
        try:
            sys.stdout.flush()
            saved, null = os.dup(1), os.open(os.devnull, os.O_WRONLY)
        except (OSError, ValueError):  # no real stdout (embedded interpreter): nothing to protect
            pass
        else:
            try:
                os.dup2(null, 1)
                highspy.Highs()
            finally:
                os.dup2(saved, 1)
                os.close(saved)
                os.close(null)


def set_threads(threads: int | None) -> None:
    """Make the next HiGHS run use ``threads`` threads (None: keep the process-wide pool as it is).

    HiGHS fixes its thread pool at the first run in a process; a different count is accepted only
    after the global scheduler is reset.
    """
    if threads:
        highspy.Highs.resetGlobalScheduler(True)


def new_highs(log: bool = False, threads: int | None = None) -> highspy.Highs:
    """A silent (unless ``log``) ``highspy.Highs`` instance."""
    swallow_banner()
    h = highspy.Highs()
    h.setOptionValue("output_flag", bool(log))
    if threads:
        threads = check_parallel(threads)
        set_threads(threads)
        h.setOptionValue("threads", threads)
    return h


def _finite(values: np.ndarray) -> np.ndarray:
    return np.clip(values, -INF, INF)


#: HiGHS's infinity: a bound at or beyond it is infinite, a coefficient there is refused
HIGHS_INFINITY = 1e20


def to_highs(milp: MILP, log: bool = False, threads: int | None = None, names: bool | tuple = False) -> highspy.Highs:
    """A ``highspy.Highs`` instance holding ``milp`` (objective included when set).

    With ``names``, columns and rows carry :meth:`MILP.column_names` / :meth:`MILP.row_names` (for
    written models; solves do not need them)."""
    h = new_highs(log, threads)
    lp = highspy.HighsLp()
    lp.num_col_ = milp.num_columns
    lp.num_row_ = milp.num_rows
    lp.col_cost_ = milp.objective if milp.objective is not None else np.zeros(milp.num_columns)
    lp.col_lower_ = _finite(milp.col_lower)
    lp.col_upper_ = _finite(milp.col_upper)
    lp.row_lower_ = _finite(milp.row_lower)
    lp.row_upper_ = _finite(milp.row_upper)
    csc = milp.A.tocsc()
    csc.sort_indices()
    lp.a_matrix_.format_ = highspy.MatrixFormat.kColwise
    lp.a_matrix_.start_ = csc.indptr.astype(np.int32)
    lp.a_matrix_.index_ = csc.indices.astype(np.int32)
    lp.a_matrix_.value_ = csc.data
    lp.a_matrix_.num_col_ = milp.num_columns
    lp.a_matrix_.num_row_ = milp.num_rows
    if milp.sense == "max":
        lp.sense_ = highspy.ObjSense.kMaximize
    if milp.integrality.any():
        lp.integrality_ = [
            highspy.HighsVarType.kInteger if flag else highspy.HighsVarType.kContinuous for flag in milp.integrality
        ]
    if names:  # True: the MILP's own names; or a pair (column names, row names) chosen by the caller
        columns, rows = names if isinstance(names, tuple) else (milp.column_names(), milp.row_names())
        lp.col_names_ = list(columns)
        lp.row_names_ = list(rows)
    bad = int(np.count_nonzero(~np.isfinite(csc.data)))
    if milp.objective is not None:  # a NaN cost made HiGHS ignore its time limit
        bad += int(np.count_nonzero(~np.isfinite(milp.objective)))
    bad += int(np.count_nonzero(np.isnan(milp.col_lower) | np.isnan(milp.col_upper)))
    bad += int(np.count_nonzero(np.isnan(milp.row_lower) | np.isnan(milp.row_upper)))
    if bad:  # never hand a solver a model whose numbers are not numbers
        raise SolveError(f"the MILP has {bad} non-finite coefficients or bounds (NaN or inf): its bounds are "
                         "unusable; bound the input domain more tightly, or report the network")
    huge = max(np.abs(csc.data).max(initial=0.0),
               0.0 if milp.objective is None else np.abs(milp.objective).max(initial=0.0))
    if huge >= HIGHS_INFINITY:  # HiGHS refuses such coefficients (it reads 1e20 as infinity)
        raise SolveError(f"the MILP has a coefficient of {huge:.3g}, beyond what HiGHS accepts ({HIGHS_INFINITY:g}): "
                         "bound the input domain more tightly, or rescale the network")
    status = h.passModel(lp)
    if status == highspy.HighsStatus.kError:
        raise SolveError("HiGHS rejected the model (inconsistent bounds or coefficients)")
    return h


def set_run_time_limit(h: highspy.Highs, seconds: float | None, mip: bool) -> None:
    """Limit the next :func:`run` of ``h`` to ``seconds`` (None: no limit).

    HiGHS (1.16) measures an LP's ``time_limit`` against the total run time of the model object, so
    for LPs the limit is offset by the time already used; a MIP's limit counts from the start of its
    run. Both behaviours are pinned by ``tests/test_bounds_obbt.py``.
    """
    if seconds is None or math.isinf(seconds):
        h.setOptionValue("time_limit", INF)
        return
    seconds = max(float(seconds), 1e-3)
    h.setOptionValue("time_limit", seconds if mip else h.getRunTime() + seconds)


def is_mip(h: highspy.Highs) -> bool:
    """Whether the model loaded in ``h`` has integer columns."""
    lp = h.getLp()
    return any(t != highspy.HighsVarType.kContinuous for t in lp.integrality_)


class _Cancel:
    """A user-interrupt callback that fires once :attr:`requested` is set (a plain bool: the GIL orders it).

    ``hook`` (optional) is called by :func:`call_interruptibly` while a requested cancellation waits
    for the solver to stop: for a solver whose callbacks relumilp does not own (Pyomo's appsi).
    """

    def __init__(self, hook=None, deadline: Deadline | None = None):
        self.requested = False
        self.hook = hook
        self.deadline = deadline  # a stoppable deadline ended from another thread stops the run too

    @property
    def ended(self) -> bool:
        return self.deadline is not None and self.deadline.ended

    def __call__(self, event) -> None:
        # the deadline too: HiGHS checks its own time limit less often than it calls back
        if self.requested or self.ended or (self.deadline is not None and self.deadline.expired()):
            event.interrupt()


@contextlib.contextmanager
def _signals_cancel(cancel: _Cancel):
    """While HiGHS runs, Ctrl-C (and a SIGTERM that Python handles) only request cancellation.

    Raising ``KeyboardInterrupt`` at an arbitrary point of the waiting loop could leave HiGHS running
    in its thread while the interpreter unwinds (and aborts at exit); so the signal just sets the flag
    that the interrupt callback reads, and the caller raises once HiGHS has stopped. Signals that are
    ignored or left at their default action (e.g. SIGINT in an OBBT worker process) stay so.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = {}

    def request(signum, frame):
        cancel.requested = True

    for signum in (signal.SIGINT, signal.SIGTERM):
        handler = signal.getsignal(signum)
        if callable(handler):  # Python's own handlers only: SIG_IGN / SIG_DFL are not callable
            previous[signum] = signal.signal(signum, request)
    try:
        yield
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)


def call_interruptibly(target, cancel: _Cancel):
    """``target()`` (a HiGHS run) in a helper thread while this thread waits; returns ``(value, interrupted)``.

    Ctrl-C meanwhile sets ``cancel.requested`` (and calls ``cancel.hook`` until ``target`` returns);
    the caller decides what an interrupted run means.
    """
    outcome: dict = {}

    def body():
        try:
            outcome["value"] = target()
        except BaseException as exc:  # surfaced in the caller's thread below
            outcome["error"] = exc
        finally:
            # HiGHS's worker threads belong to the thread that ran it; without this reset the
            # process aborts at exit ("terminate called without an active exception")
            highspy.Highs.resetThreadScheduler(False)

    worker = threading.Thread(target=body, name="highs-run", daemon=True)
    with _signals_cancel(cancel):
        worker.start()
        while worker.is_alive():
            worker.join(0.05)
            if cancel.requested and cancel.hook is not None:
                cancel.hook()
    if "error" in outcome:
        raise outcome["error"]
    return outcome.get("value"), cancel.requested


def run(h: highspy.Highs, time_limit: float | None = None, deadline: Deadline | None = None,
        mip: bool | None = None, on_interrupt: str = "raise") -> str:
    """Run ``h`` for at most ``time_limit`` seconds and never past ``deadline``; returns the status name.

    The solve runs in a helper thread so that ``KeyboardInterrupt`` reaches the caller promptly: the
    solve is then cancelled (HiGHS stops at its next interrupt check and keeps its best solution), and
    the interrupt is re-raised (``on_interrupt="raise"``) or reported as ``"interrupted"``
    (``on_interrupt="status"``). A deadline already passed gives ``"time_limit"`` without running.
    """
    deadline = deadline or Deadline()
    seconds = deadline.cap(time_limit)
    if seconds is not None and seconds <= 0.0:
        return "time_limit"
    if mip is None:
        mip = is_mip(h)
    set_run_time_limit(h, seconds, mip)
    cancel = _Cancel(deadline=deadline)
    subscriptions = (h.cbSimplexInterrupt, h.cbIpmInterrupt, h.cbMipInterrupt)
    for callback in subscriptions:
        callback.subscribe(cancel)
    try:
        run_status, interrupted = call_interruptibly(h.run, cancel)
    finally:
        for callback in subscriptions:
            callback.unsubscribe(cancel)
    if interrupted and on_interrupt == "raise":
        raise KeyboardInterrupt
    if run_status == highspy.HighsStatus.kError:
        return "error"
    name = status_name(h.getModelStatus())
    if interrupted:
        return "interrupted"
    # stopped by the callback at the deadline, or at one ended early (another thread has the answer): a
    # time limit, not Ctrl-C
    return "time_limit" if name == "interrupted" and (cancel.ended or deadline.expired()) else name


#: HiGHS's MIP presolve neither checks the time limit nor calls back, and on dense layers it is slow:
#: on a leaf MILP of a 784-200-200-200-10 net (945 rows, 240,092 nonzeros, 11 binaries) it took 4.1 s of
#: a 12.4 s solve that takes 2.2 s without it, and made a 5 s verify call return after 6.2 s. A MIP run
#: with fewer seconds left than this many per nonzero skips presolve (overshoots: benchmarks/time_limits.py)
PRESOLVE_SECONDS_PER_NONZERO = 2e-5


#: relative MIP gap that "optimal" promises: ``|bound - objective| <= OPTIMALITY_GAP * max(1, |objective|)``
OPTIMALITY_GAP = 1e-6
#: feasibility and integrality tolerances of the equilibrated models (see :func:`solve_milp`)
FEASIBILITY_TOLERANCE = 1e-9
#: margin put on HiGHS's dual bound of an equilibrated model, relative to ``max(1, |bound|)`` in the
#: model's scaled units (columns, row terms and objective coefficients all about 1): ten times the
#: feasibility tolerance its node LPs are solved to. It is a safeguard, not a proof (a proof needs safe dual bounds at the deciding
#: nodes, which HiGHS does not expose). The forward-pass checks in :func:`relumilp.optimization.certify`
#: catch a bound that any evaluated point beats.
BOUND_MARGIN = 1e-8


@dataclass
class MilpSolution:
    """What a HiGHS run of a matrix-form MILP established, in the original model's units.

    ``status`` is one of :data:`STATUSES`; ``x`` the full column vector of the best solution found (or
    None); ``objective`` its objective value as HiGHS computed it; ``bound`` a bound on the optimum
    (HiGHS's dual bound widened by :data:`BOUND_MARGIN`; ``None`` when HiGHS has none); ``numerics``
    what the solver was handed (:meth:`~relumilp.formulation.numerics.Equilibrated.report`).
    """

    status: str
    x: np.ndarray | None = None
    objective: float | None = None
    bound: float | None = None
    nodes: int = 0
    seconds: float = 0.0
    numerics: dict = field(default_factory=dict)
    notes: list = field(default_factory=list)


@contextlib.contextmanager
def _progress_display(h: highspy.Highs, show: bool, sense: str, objective_scale: float):
    """A tqdm line on stderr with HiGHS's incumbent, bound and gap, refreshed at most twice a second
    from its MIP interrupt callback (which HiGHS calls often; the callback only reads numbers)."""
    if not show:
        yield
        return
    bar = progress_bar(True, "solve", " nodes")
    last = [0.0]

    def update(event) -> None:
        now = time.perf_counter()
        if now - last[0] < 0.5:
            return
        last[0] = now
        out = event.data_out
        primal, dual = out.mip_primal_bound / objective_scale, out.mip_dual_bound / objective_scale
        bar.n = int(out.mip_node_count)
        bar.set_postfix_str(f"incumbent {primal:.8g}  bound {dual:.8g}  gap {out.mip_gap:.2%}", refresh=True)

    h.cbMipInterrupt.subscribe(update)
    try:
        yield
    finally:
        h.cbMipInterrupt.unsubscribe(update)
        bar.close()


def solve_milp(milp: MILP, *, time_limit: float | None = None, deadline: Deadline | None = None,
               mip_rel_gap: float = OPTIMALITY_GAP, threads: int | None = None, log: bool = False,
               start: np.ndarray | None = None, options: dict | None = None,
               on_interrupt: str = "status", stop_at_first_solution: bool = False,
               progress: bool = False) -> MilpSolution:
    """Solve ``milp`` (with its objective and sense) by HiGHS on its exactly equilibrated form.

    The model is rescaled by powers of two and its negligible entries relaxed
    (:func:`relumilp.formulation.numerics.equilibrate`), so HiGHS's default absolute tolerances mean
    the same on every layer (tight tolerances on an *unscaled* model made HiGHS reject near-optimal
    points after postsolve while still pruning their nodes). HiGHS stops at half of ``mip_rel_gap`` with no
    absolute gap, which leaves room for the bound's margin and for the caller's forward-pass check
    within ``mip_rel_gap``. ``start`` (original column values) is handed over as a MIP start (to a MIP only: an LP
    started from a point ended ``kUnknown`` on a badly scaled model; a MIP that ends without a status from
    its start is solved once more without it). ``progress`` shows the incumbent, bound and gap on stderr while HiGHS runs.
    """
    from ..formulation.numerics import equilibrate

    started = time.perf_counter()
    scaled = equilibrate(milp)
    h = to_highs(scaled.milp, log=log, threads=threads)
    integer = bool(milp.integrality.any())
    # On the equilibrated model every column and row term is about 1, so tolerances of 1e-9 are
    # attainable (HiGHS's defaults 1e-7 / 1e-6 would let a bound drift by more than BOUND_MARGIN);
    # on an unscaled model the same values made HiGHS drop or reject points (issue #11).
    h.setOptionValue("primal_feasibility_tolerance", FEASIBILITY_TOLERANCE)
    h.setOptionValue("dual_feasibility_tolerance", FEASIBILITY_TOLERANCE)
    if integer:
        h.setOptionValue("mip_feasibility_tolerance", FEASIBILITY_TOLERANCE)
        h.setOptionValue("mip_rel_gap", 0.5 * float(mip_rel_gap))
        h.setOptionValue("mip_abs_gap", 0.0)
        if stop_at_first_solution:
            h.setOptionValue("mip_max_improving_sols", 1)
    for key, value in (options or {}).items():
        if h.setOptionValue(key, value) == highspy.HighsStatus.kError:  # HiGHS would go on without it
            raise RelumilpError(f"HiGHS rejects the option {key}={value!r}: check its name and the type of its "
                                "value (e.g. True, not 1, for a bool option)")
    notes = list(scaled.notes)
    seconds = (deadline or Deadline()).cap(time_limit)
    if integer and "presolve" not in (options or {}) and seconds is not None \
            and seconds < PRESOLVE_SECONDS_PER_NONZERO * scaled.milp.A.nnz:
        h.setOptionValue("presolve", "off")
        notes.append(f"HiGHS presolve skipped: {seconds:.3g} s left, less than it may take on "
                     f"{scaled.milp.A.nnz} nonzeros (it does not stop at the time limit)")
    if start is not None and integer:  # an LP gains little from a start, and HiGHS can end kUnknown from one
        solution = highspy.HighsSolution()
        solution.col_value = scaled.scale_columns(start).tolist()
        solution.value_valid = True
        h.setSolution(solution)
    with _progress_display(h, progress, milp.sense, scaled.objective_scale) if integer else contextlib.nullcontext():
        status = run(h, time_limit=time_limit, deadline=deadline, mip=integer, on_interrupt=on_interrupt)
    info = h.getInfo()
    if status == "error" and start is not None and integer and not (deadline or Deadline()).expired():
        # a MIP start HiGHS cannot use can leave it without a model status: once more from scratch
        retry = solve_milp(milp, time_limit=time_limit, deadline=deadline, mip_rel_gap=mip_rel_gap, threads=threads,
                           log=log, options=options, on_interrupt=on_interrupt,
                           stop_at_first_solution=stop_at_first_solution, progress=progress)
        retry.notes.append("HiGHS ended without a status from the MIP start; solved again without it")
        return retry
    result = MilpSolution(status, nodes=int(info.mip_node_count) if integer else 0, numerics=scaled.report(),
                          notes=notes)
    if info.primal_solution_status == 2:  # kSolutionStatusFeasible
        result.x = scaled.unscale(np.array(h.getSolution().col_value))
        result.objective = float(info.objective_function_value) / scaled.objective_scale
    if status == "unknown" and h.getModelStatus() == highspy.HighsModelStatus.kUnboundedOrInfeasible:
        # presolve tells no more; a feasible point settles which
        result.status = "unbounded" if result.x is not None else "unknown"
        result.notes.append("HiGHS found the model unbounded" if result.x is not None
                            else "HiGHS found the model unbounded or infeasible")
    if result.status == "unbounded" and not math.isfinite(scaled.max_widening):
        # the relaxation of a negligible entry freed a column: HiGHS's "unbounded" is the relaxation's
        result.status = "unknown"
        result.notes.append("the relaxed model is unbounded, which says nothing about the original one")
    dual = float(info.mip_dual_bound) if integer else (float(info.objective_function_value)
                                                     if status == "optimal" else math.nan)
    sign = 1.0 if milp.sense == "max" else -1.0
    if integer and math.isfinite(dual) and result.objective is not None:
        # HiGHS prunes nodes that cannot beat the incumbent by more than the gap and then reports the
        # incumbent as its dual bound: only "incumbent +- the gap allowance" is proven there
        incumbent = float(info.objective_function_value)
        allowance = 0.5 * float(mip_rel_gap) * max(1.0, abs(incumbent))
        dual = max(dual, incumbent + sign * allowance) if sign > 0 else min(dual, incumbent + sign * allowance)
    if math.isfinite(dual) and status != "error" and info.valid:  # not valid: HiGHS never ran
        result.bound = (dual + sign * BOUND_MARGIN * max(1.0, abs(dual))) / scaled.objective_scale
    result.seconds = time.perf_counter() - started
    return result
