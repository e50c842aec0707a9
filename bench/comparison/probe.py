"""A bare timer thread in the process under test: how late it wakes on the control grid.

It does nothing but sleep to a deadline once a period and note how late it got to run. Started
from the event-loop thread during the measured window, it inherits that thread's nice value
and scheduling policy (Linux: a new thread takes its creator's), so it waits for a CPU as the
loop would, and for the GIL and the garbage collector as any thread of the process does.
Its lateness is the floor a tick thread of its own (ticks off the I/O loop) would start
from on this machine, before any tick work: what moving ticks off the loop could gain.
Only meaningful where the sessions run in the bench's process (the stack designs), and no
floor under a real-time loop thread: it would be a second thread of the same priority, which
the first is never preempted for.

It wakes half a period off the grid: at the grid instant the loop's own pass holds the GIL,
and a tick thread would not wait for that pass (it would run it). Half a period later the
loop is doing what it would still do with ticks moved off it: sends, joint readings, video
packets, inference replies.

Each late wake-up is split in two (Linux schedstat of the probe thread): the time it was
ready to run with no CPU free, and the rest, which is mostly waiting for the GIL (another
thread's Python, a garbage collection).
"""

from __future__ import annotations

import sys
import threading
import time
from typing import Any

from .measure import percentiles, runqueue_wait_s

LATE_MS = 2.0  # the N=32 jitter target


class TimerProbe:
    def __init__(self, rate_hz: float) -> None:
        self.rate_hz = rate_hz
        self.lateness_ms: list[float] = []
        self.cpu_wait_ms: list[float] = []  # of each wake-up's lateness: waiting for a CPU
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.native_id: int | None = None  # the probe thread's, once it runs
        self._running = threading.Event()

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="bench-timer-probe",
                                        daemon=True)
        self._thread.start()
        self._running.wait(timeout=2.0)

    def _run(self) -> None:
        self.native_id = threading.get_native_id()
        self._running.set()
        rate, now = self.rate_hz, time.monotonic
        g = int(now() * rate) + 1
        while not self._stop.is_set():
            deadline = (g + 0.5) / rate
            delay = deadline - now()
            wait0 = runqueue_wait_s()
            if delay > 0:
                time.sleep(delay)
            woke = now()
            wait1 = runqueue_wait_s()
            self.lateness_ms.append((woke - deadline) * 1000.0)
            if wait0 is not None and wait1 is not None:
                self.cpu_wait_ms.append((wait1 - wait0) * 1000.0)
            g = max(g + 1, int(woke * rate) + 1)  # a late wake-up skips, as the scheduler

    def halt(self) -> None:
        """End the thread (also where a run failed before ``stop``)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=2.0)

    def stop(self) -> dict[str, Any]:
        self.halt()
        late, cpu = self.lateness_ms, self.cpu_wait_ms
        out: dict[str, Any] = {
            "lateness_ms": percentiles(late),
            f"over_{LATE_MS:g}ms": sum(1 for x in late if x > LATE_MS),
            "switch_interval_ms": round(sys.getswitchinterval() * 1000.0, 3)}
        if len(cpu) == len(late):
            out["waiting_for_a_cpu_ms"] = percentiles(cpu)
            out["waiting_for_the_gil_and_rest_ms"] = percentiles(
                max(0.0, x - c) for x, c in zip(late, cpu, strict=True))
        return out
