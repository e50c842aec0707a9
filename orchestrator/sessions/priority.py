"""CPU priority for the thread that ticks the sessions (``ORCHESTRATOR_CONTROL_NICE``).

Where Triton, the room server or robots share the machine, they and the sessions' ticks
fall due around the same instants, and the event loop waits for a CPU in bursts: every
wait is a late tick. A lower nice value for the loop's thread lets the kernel run the ticks
first; inference is what waits then, and the plan holds actions for that. Linux keeps a
nice value per thread, so only this thread is raised, plus the threads it starts afterwards
(they inherit it: video decoding, asyncio's worker threads) and any process it spawns,
which is why the local stack starts its servers before the API.

Going below the current nice value needs CAP_SYS_NICE (docker: ``cap_add: [SYS_NICE]``) or
root. Without it the loop keeps its priority and says so (a warning, and ``/health``).
"""

from __future__ import annotations

import logging
import os
import sys
import threading
from typing import Any

log = logging.getLogger(__name__)


class ControlPriority:
    """The nice value asked for the event loop's thread, applied once per thread."""

    def __init__(self, nice: int | None) -> None:
        self.nice = nice  # None: leave the thread as it is
        self.thread: int | None = None  # native id of the thread it was applied to
        self.error: str | None = None

    def apply(self) -> None:
        """Call on the event loop's thread (the one the tick scheduler runs on)."""
        tid = threading.get_native_id()
        if self.thread == tid:
            return
        self.thread, self.error = tid, None  # also when nothing is asked: describe() tells
        if self.nice is None:
            return
        if sys.platform != "linux":  # elsewhere PRIO_PROCESS with a thread id is no thread
            self.error = "a nice value per thread needs Linux"
        else:
            try:
                os.setpriority(os.PRIO_PROCESS, tid, self.nice)
            except OSError as exc:
                self.error = (f"nice {self.nice} refused ({exc.strerror}): it needs "
                              f"CAP_SYS_NICE (docker: cap_add SYS_NICE) or root")
        if self.error is not None:
            log.warning("control loop priority: %s; ticks run at nice %s", self.error,
                        self.current())
        else:
            log.info("control loop priority: the event loop's thread %d runs at nice %d",
                     tid, self.nice)

    def current(self) -> int | None:
        """The nice value the applied thread runs at now (None before ``apply``)."""
        if self.thread is None or sys.platform != "linux":
            return None
        try:
            return os.getpriority(os.PRIO_PROCESS, self.thread)
        except OSError:  # the thread is gone
            return None

    def describe(self) -> dict[str, Any]:
        return {"nice_requested": self.nice, "nice": self.current(), "error": self.error}
