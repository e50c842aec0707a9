"""CPU priority for the thread that ticks the sessions (``ORCHESTRATOR_CONTROL_NICE``,
``ORCHESTRATOR_CONTROL_REALTIME_PRIORITY``).

Where Triton, the room server or robots share the machine, they and the sessions' ticks
fall due around the same instants, and the event loop waits for a CPU in bursts: every
wait is a late tick. A lower nice value for the loop's thread lets the kernel run the ticks
first; inference is what waits then, and the plan holds actions for that. Linux keeps a
nice value per thread, so only this thread is raised, plus the threads it starts afterwards
(they inherit it: video decoding, asyncio's worker threads) and any process it spawns,
which is why the local stack starts its servers before the API.

A real-time priority (SCHED_FIFO, as ros2_control gives its controller thread) goes
further: the loop preempts every ordinary thread the moment its timer fires, instead of
being weighed against them. It is set with SCHED_RESET_ON_FORK, so the threads and
processes the loop starts afterwards (video decoding among them) run as ordinary threads,
at nice 0: only the ticks and the loop's own I/O are real time. One loop thread uses at
most one core, and the kernel keeps 5 % of every second for the rest
(``sched_rt_runtime_us``).

Both need CAP_SYS_NICE (docker: ``cap_add: [SYS_NICE]``) or root, the nice value only
below the current one. Without it the loop keeps its priority and says so (a warning, and
``/health``).
"""

from __future__ import annotations

import logging
import os
import sys
import threading
from typing import Any

log = logging.getLogger(__name__)

_PRIVILEGE = "it needs CAP_SYS_NICE (docker: cap_add SYS_NICE) or root"


class ControlPriority:
    """The priority asked for the event loop's thread, applied once per thread."""

    def __init__(self, nice: int | None, realtime: int | None = None) -> None:
        self.nice = nice  # None: leave the thread's nice value as it is
        self.realtime = realtime  # SCHED_FIFO priority 1-99; None: the ordinary scheduler
        self.thread: int | None = None  # native id of the thread it was applied to
        self.error: str | None = None

    def apply(self) -> None:
        """Call on the event loop's thread (the one the tick scheduler runs on)."""
        tid = threading.get_native_id()
        if self.thread == tid:
            return
        self.thread, self.error = tid, None  # also when nothing is asked: describe() tells
        if self.nice is None and self.realtime is None:
            return
        if sys.platform != "linux":  # elsewhere PRIO_PROCESS with a thread id is no thread
            self.error = "a priority per thread needs Linux"
        else:
            self.error = "; ".join(e for e in (self._set_nice(tid), self._set_realtime(tid))
                                   if e) or None
        if self.error is not None:
            log.warning("control loop priority: %s; ticks run at %s", self.error,
                        self._summary())
        else:
            log.info("control loop priority: the event loop's thread %d runs at %s", tid,
                     self._summary())

    def _set_nice(self, tid: int) -> str | None:
        if self.nice is None:
            return None
        try:
            os.setpriority(os.PRIO_PROCESS, tid, self.nice)
        except OSError as exc:
            return f"nice {self.nice} refused ({exc.strerror}): {_PRIVILEGE}"
        return None

    def _set_realtime(self, tid: int) -> str | None:
        if self.realtime is None:
            return None
        try:
            os.sched_setscheduler(tid, os.SCHED_FIFO | os.SCHED_RESET_ON_FORK,
                                  os.sched_param(self.realtime))
        except OSError as exc:
            return f"SCHED_FIFO {self.realtime} refused ({exc.strerror}): {_PRIVILEGE}"
        return None

    def current(self) -> int | None:
        """The nice value the applied thread runs at now (None before ``apply``)."""
        if self.thread is None or sys.platform != "linux":
            return None
        try:
            return os.getpriority(os.PRIO_PROCESS, self.thread)
        except OSError:  # the thread is gone
            return None

    def current_realtime(self) -> int | None:
        """The applied thread's SCHED_FIFO priority now; None when it is an ordinary thread."""
        if self.thread is None or sys.platform != "linux":
            return None
        try:
            policy = os.sched_getscheduler(self.thread) & ~os.SCHED_RESET_ON_FORK
            if policy != os.SCHED_FIFO:
                return None
            return os.sched_getparam(self.thread).sched_priority
        except OSError:  # the thread is gone
            return None

    def _summary(self) -> str:
        realtime = self.current_realtime()
        return f"SCHED_FIFO {realtime}" if realtime is not None else f"nice {self.current()}"

    def describe(self) -> dict[str, Any]:
        return {"nice_requested": self.nice, "nice": self.current(),
                "realtime_requested": self.realtime, "realtime": self.current_realtime(),
                "error": self.error}
