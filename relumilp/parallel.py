"""Worker processes shared by every parallel pass: bound tightening and branch and bound.

One local pool per size, started on first use and reused (:func:`shared_process_pool`); workers are
spawned, ignore Ctrl-C (the parent decides) and die with their parent; :func:`kill_pool` stops a pool
at once, running tasks included (a deadline or an interrupt leaves no process behind). Any
``concurrent.futures.Executor`` (e.g. ``dask.distributed.Client.get_executor()``) can stand in for the
local pool: callers submit the same tasks to either.
"""

from __future__ import annotations

import atexit
import math
import numbers
import ctypes
import multiprocessing as mp
import os
import signal
import sys
from concurrent.futures import ProcessPoolExecutor

from .errors import RelumilpError

_POOLS: dict[int, ProcessPoolExecutor] = {}

#: threads or worker processes per core beyond which a request is refused: thousands of HiGHS threads
#: (or processes) exhaust the machine before any solve starts, and HiGHS then aborts or hangs, deaf to the
#: time limit and to Ctrl-C
MAX_PER_CORE = 4


def max_parallel() -> int:
    """The most threads or worker processes relumilp starts for one request: :data:`MAX_PER_CORE` per core."""
    return MAX_PER_CORE * (os.cpu_count() or 1)


def parallel_rule() -> str:
    """What a thread or worker count must be, for messages."""
    return f"a whole number from 1 to {max_parallel()} ({MAX_PER_CORE} per core here)"


def check_parallel(count, what: str = "threads") -> int:
    """``count`` as a whole number from 1 to :func:`max_parallel`, or a one-line error naming ``what``."""
    if isinstance(count, bool) or not isinstance(count, numbers.Real) or not math.isfinite(count) \
            or count != int(count) or not 1 <= count <= max_parallel():
        raise RelumilpError(f"{what} must be {parallel_rule()}, got {count!r}")
    return int(count)


def shared_process_pool(workers: int) -> ProcessPoolExecutor:
    """A local pool of ``workers`` processes, started on first use and reused by later calls.

    Workers are *spawned*, never forked: a process forked after HiGHS has started its thread
    scheduler deadlocks in its first MIP solve (reproduced with highspy 1.16). Spawning re-imports the
    caller's main module, so a script that tightens bounds in parallel needs the usual
    ``if __name__ == "__main__":`` guard.
    """
    workers = check_parallel(workers, "workers")
    pool = _POOLS.get(workers)
    if pool is None or getattr(pool, "_broken", False):
        if not _POOLS:
            atexit.register(_shutdown_pools)
        pool = _POOLS[workers] = ProcessPoolExecutor(max_workers=workers, mp_context=mp.get_context("spawn"),
                                                     initializer=_init_worker, initargs=(os.getpid(),))
    return pool


def _init_worker(parent: int) -> None:
    """Worker set-up: only the parent decides about Ctrl-C, and a worker dies with its parent."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    if sys.platform.startswith("linux"):
        try:
            # PR_SET_PDEATHSIG (1): SIGTERM when the parent dies, even by SIGKILL
            ctypes.CDLL(None, use_errno=True).prctl(1, int(signal.SIGTERM), 0, 0, 0)
        except (OSError, AttributeError):
            pass
        if os.getppid() != parent:  # the parent died before prctl took effect
            os._exit(1)


def kill_pool(workers: int) -> None:
    """Stop the shared pool of ``workers`` now, running tasks included, and forget it."""
    pool = _POOLS.pop(workers, None)
    if pool is None:
        return
    # ProcessPoolExecutor has no public way to stop running tasks: terminate its processes directly
    processes = list((getattr(pool, "_processes", None) or {}).values())
    for process in processes:
        process.terminate()
    pool.shutdown(wait=False, cancel_futures=True)
    for process in processes:
        process.join(2.0)
        if process.is_alive():
            process.kill()
            process.join(1.0)


def _shutdown_pools() -> None:
    # explicitly, while the interpreter is intact (a pool collected during teardown prints noise);
    # the pools are idle at exit, but a worker may still be importing: stop it rather than wait
    for workers in list(_POOLS):
        kill_pool(workers)


_DEFAULT_WORKERS: int | None = None


def set_default_workers(workers: int | None) -> None:
    """Set the process-wide default of ``workers`` (``None`` restores the automatic rule of
    :func:`default_workers`). The CLI, whose entry point is guarded, sets it to every core."""
    global _DEFAULT_WORKERS
    if workers is not None and int(workers) < 1:
        raise RelumilpError(f"workers must be at least 1, got {workers}")
    _DEFAULT_WORKERS = None if workers is None else int(workers)


def default_workers() -> int:
    """Processes used when neither ``executor`` nor ``workers`` is given: the value set by
    :func:`set_default_workers`, else every core -- unless this is itself a child process, or the
    main module is a plain script (``python script.py``), which a spawned worker would re-execute:
    then 1 (pass ``workers`` explicitly from a script with a ``__main__`` guard)."""
    if _DEFAULT_WORKERS is not None:
        return _DEFAULT_WORKERS
    if mp.parent_process() is not None:
        return 1  # inside a worker (or a daemonic child, which may not have children): no nested pools
    main = sys.modules.get("__main__")
    is_script = getattr(main, "__file__", None) is not None and getattr(main, "__spec__", None) is None
    return 1 if is_script else max(1, os.cpu_count() or 1)
