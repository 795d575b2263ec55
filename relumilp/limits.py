"""Time limits over a whole call, and clean interruption.

A :class:`Deadline` is created once per public call (``optimize``, ``solve``, ``verify``,
``compute_bounds``, a CLI command) from its ``time_limit`` and handed down to every phase: bound
tightening, model building, solving. Each phase asks :meth:`Deadline.remaining` before starting work
and gives the solver at most that long, so the limit covers the whole call rather than the last solve.

Interruption: Python turns Ctrl-C (SIGINT) into ``KeyboardInterrupt`` in the main thread; the CLI maps
SIGTERM onto the same path (:func:`terminate_as_interrupt`). Code that blocks in native solvers runs
them so that the interrupt is seen promptly (see :func:`relumilp.backends.highs.run`).
"""

from __future__ import annotations

import contextlib
import math
import os
import signal
import threading
import time
from dataclasses import dataclass, field

from .errors import RelumilpError


#: a time limit beyond this many seconds (about 30 years) is no limit: the time left is handed to
#: ``threading`` / ``concurrent.futures`` waits, which overflow (OverflowError) beyond about 9.2e9 s
UNLIMITED_AFTER = 1e9


class _Stop:
    """The early end of a :meth:`Deadline.stoppable` deadline: set by its own :meth:`set`, or by its
    parent's (a deadline made stoppable again ends with the one it came from)."""

    def __init__(self, parent: "_Stop | None" = None):
        self._own = threading.Event()
        self._parent = parent

    def set(self) -> None:
        self._own.set()

    def is_set(self) -> bool:
        return self._own.is_set() or (self._parent is not None and self._parent.is_set())


@dataclass(frozen=True)
class Deadline:
    """An absolute point on the ``time.perf_counter`` clock (``inf``: no limit).

    A :meth:`stoppable` deadline can also be ended early, from any thread (:meth:`end`): so one half of a
    portfolio stops the other once it has the answer. Every deadline derived from it (:meth:`share`,
    :meth:`earlier`) ends with it, and a HiGHS run under it stops at its next interrupt check
    (:func:`relumilp.backends.highs.run`)."""

    at: float = math.inf
    stop: _Stop | None = field(default=None, compare=False, repr=False)

    @classmethod
    def after(cls, seconds: float | None) -> "Deadline":
        """A deadline ``seconds`` from now; ``None`` (or more than :data:`UNLIMITED_AFTER`) means no limit."""
        seconds = None if seconds is None else check_time_limit(seconds)
        if seconds is None or seconds > UNLIMITED_AFTER:
            return cls()
        return cls(time.perf_counter() + seconds)

    @classmethod
    def since_process_start(cls, seconds: float | None) -> "Deadline":
        """A deadline ``seconds`` after this process started (the CLI: its limit includes start-up)."""
        seconds = None if seconds is None else check_time_limit(seconds)
        if seconds is None or seconds > UNLIMITED_AFTER:
            return cls()
        return cls(time.perf_counter() - process_age() + seconds)

    @classmethod
    def of(cls, value: "Deadline | float | None") -> "Deadline":
        """A deadline from a :class:`Deadline`, a time limit in seconds, or ``None``."""
        return value if isinstance(value, Deadline) else cls.after(value)

    @property
    def limited(self) -> bool:
        return math.isfinite(self.at)

    @property
    def ended(self) -> bool:
        """Whether :meth:`end` was called (on this deadline or the one it derives from)."""
        return self.stop is not None and self.stop.is_set()

    def stoppable(self) -> "Deadline":
        """This deadline, which :meth:`end` can also bring forward to now; it still ends with this one
        (ending it does not end this one)."""
        return Deadline(self.at, _Stop(self.stop))

    def end(self) -> None:
        """Pass this deadline now, and every deadline derived from it (a :meth:`stoppable` one only)."""
        if self.stop is None:
            raise RelumilpError("internal: only a stoppable deadline can be ended early")
        self.stop.set()

    def remaining(self) -> float:
        """Seconds left (``inf`` without a limit, 0 once passed or ended)."""
        if self.ended:
            return 0.0
        return max(0.0, self.at - time.perf_counter()) if self.limited else math.inf

    def expired(self) -> bool:
        return self.ended or (self.limited and time.perf_counter() >= self.at)

    def cap(self, seconds: float | None) -> float | None:
        """The smaller of ``seconds`` and the time left (``None`` when both are unlimited)."""
        left = self.remaining()
        if seconds is None:
            return None if math.isinf(left) else left
        return min(float(seconds), left)

    def share(self, fraction: float) -> "Deadline":
        """The deadline after ``fraction`` of the time left (this one when unlimited)."""
        return self.earlier(fraction * self.remaining())

    def earlier(self, seconds: float | None) -> "Deadline":
        """This deadline, or ``seconds`` from now if that comes first."""
        if seconds is None or float(seconds) > UNLIMITED_AFTER:
            return self
        return Deadline(min(self.at, time.perf_counter() + float(seconds)), self.stop)


def process_age() -> float:
    """Seconds since this process started (Linux ``/proc``; 0 where that cannot be read)."""
    try:
        with open("/proc/self/stat") as handle:
            fields = handle.read().rsplit(")", 1)[1].split()
        with open("/proc/uptime") as handle:
            uptime = float(handle.read().split()[0])
        return max(0.0, uptime - float(fields[19]) / os.sysconf("SC_CLK_TCK"))
    except (OSError, ValueError, IndexError):
        return 0.0


def check_time_limit(seconds, what: str = "the time limit") -> float:
    """``seconds`` as a float, or a clear error for negative, zero, NaN or non-numeric values."""
    try:
        value = float(seconds)
    except (TypeError, ValueError):
        raise RelumilpError(f"{what} must be a number of seconds, got {seconds!r}") from None
    if not value > 0.0:  # also catches NaN
        raise RelumilpError(f"{what} must be a positive number of seconds, got {seconds!r}")
    return value


@contextlib.contextmanager
def terminate_as_interrupt():
    """Within the block, SIGTERM raises ``KeyboardInterrupt`` in the main thread like Ctrl-C does.

    Used by the CLI so that ``kill`` gets the same clean shutdown (workers stopped, no partial files,
    the best answer so far printed) as Ctrl-C. Outside the main thread this is a no-op.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum, frame):
        raise KeyboardInterrupt(f"signal {signum}")

    previous = signal.signal(signal.SIGTERM, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)
