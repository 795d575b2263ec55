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

import highspy

from ..limits import Deadline

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
        set_threads(threads)
        h.setOptionValue("threads", int(threads))
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

    def __init__(self, hook=None):
        self.requested = False
        self.hook = hook

    def __call__(self, event) -> None:
        if self.requested:
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
    cancel = _Cancel()
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
    return "interrupted" if interrupted else name
