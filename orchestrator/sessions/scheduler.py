"""One tick timer per event loop and rate, and the hand-off of commands to their connection.

``TickScheduler`` wakes once per period on the process-wide grid (tick ``g`` is due at
``g / rate`` on the monotonic clock) and runs the tick of every member, synchronously, in
the order they joined: nothing inside the pass awaits, so a session's tick never waits on
another session's I/O, and each session sits at the same place in the pass every period
(stable order: its period does not depend on who else woke first). Refill requests decided
in a pass are started as tasks that all reach Triton right after it, together, so the
dynamic batcher still merges them.

``Outbox`` takes a session's command at its tick and sends it from the session's own task:
latest wins when a send is still pending, and every command replaced that way is counted.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import time
import weakref
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

from orchestrator.control.timing import TickClock
from orchestrator.sessions.collector import PACED

log = logging.getLogger(__name__)


class TickMember(Protocol):
    def on_grid_tick(self, g: int, now: float) -> None:
        """Run the tick due at grid index ``g`` (``g / rate`` s); must not block or await."""


@dataclass
class SchedulerStats:
    passes: int = 0
    missed_passes: int = 0  # grid ticks skipped because the timer woke up a period late
    member_ticks: int = 0
    pass_cpu_s: float = 0.0  # thread CPU spent inside passes (the tick path of every member)
    errors: int = 0


class TickScheduler:
    """Drives every member at one rate from a single timer task."""

    def __init__(self, rate_hz: float) -> None:
        self.clock = TickClock(0.0, rate_hz)
        self.rate_hz = rate_hz
        self._members: dict[int, TickMember] = {}  # insertion order is the tick order
        self._task: asyncio.Task[None] | None = None
        self.stats = SchedulerStats()

    def __len__(self) -> int:
        return len(self._members)

    def add(self, member: TickMember) -> None:
        self._members[id(member)] = member
        if self._task is None or self._task.done():
            self._task = asyncio.get_running_loop().create_task(
                self._run(), name=f"tick-scheduler-{self.rate_hz:g}Hz")

    def remove(self, member: TickMember) -> None:
        """Synchronous: a member removed is never ticked again, even in a pass under way."""
        self._members.pop(id(member), None)
        if not self._members and self._task is not None:
            self._task.cancel()
            self._task = None

    def order(self) -> list[TickMember]:
        return list(self._members.values())

    async def _run(self) -> None:
        clock, now = self.clock, time.monotonic
        g = clock.due_tick(now())
        paced = PACED.hold()  # garbage collections between passes, never inside one
        try:
            while self._members:
                nxt = clock.next_tick(g, now())
                self.stats.missed_passes += max(0, nxt - g - 1) if self.stats.passes else 0
                g = nxt
                # Always yield, even when late: the outboxes must get to send between two
                # passes (a late pass run at once would replace every command not sent yet).
                deadline = clock.deadline(g)
                await asyncio.sleep(max(0.0, deadline - now()))
                # uvloop (uvicorn's, Ray actors') keeps timers in whole ms of a cached clock:
                # a fifth of its wake-ups are up to 1 ms early. Yield until due.
                while now() < deadline:
                    await asyncio.sleep(0)
                self._pass(g)
                if paced:
                    await asyncio.sleep(0)  # the outboxes write the pass's commands first
                    PACED.between_passes()
        finally:
            if paced:
                PACED.release()

    def _pass(self, g: int) -> None:
        cpu0 = time.thread_time()
        members = list(self._members.items())
        for key, member in members:
            if key not in self._members:  # removed by an earlier member's tick
                continue
            try:
                member.on_grid_tick(g, time.monotonic())
            except Exception:  # members catch their own errors: this one is a bug
                self.stats.errors += 1
                log.exception("tick scheduler %g Hz: member tick failed", self.rate_hz)
        self.stats.passes += 1
        self.stats.member_ticks += len(members)
        self.stats.pass_cpu_s += time.thread_time() - cpu0

    def describe(self) -> dict[str, Any]:
        s = self.stats
        return {"rate_hz": self.rate_hz, "members": len(self._members), "passes": s.passes,
                "missed_passes": s.missed_passes, "member_ticks": s.member_ticks,
                "cpu_per_member_tick_ms": round(s.pass_cpu_s / s.member_ticks * 1000, 4)
                if s.member_ticks else None, "errors": s.errors}


_SCHEDULERS: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, dict[float, TickScheduler]] = (
    weakref.WeakKeyDictionary())


def scheduler_for(rate_hz: float) -> TickScheduler:
    """The running event loop's scheduler for this rate (created on first use)."""
    if not math.isfinite(rate_hz) or rate_hz <= 0:
        raise ValueError(f"rate must be a finite number > 0, got {rate_hz}")
    by_rate = _SCHEDULERS.setdefault(asyncio.get_running_loop(), {})
    scheduler = by_rate.get(rate_hz)
    if scheduler is None:
        scheduler = by_rate[rate_hz] = TickScheduler(rate_hz)
    return scheduler


def schedulers() -> list[TickScheduler]:
    """Every scheduler of the running event loop (for stats and benches)."""
    return list(_SCHEDULERS.get(asyncio.get_running_loop(), {}).values())


# (command, time it was handed over, whether it was sent, context given with it)
SentCallback = Callable[[Mapping[str, float], float, bool, Any], None]


@dataclass
class OutboxStats:
    handed: int = 0
    sent: int = 0
    not_sent: int = 0  # the connection refused it (disconnected): the sender's own count too
    superseded: int = 0  # replaced by a newer command before it could be sent
    dropped_on_stop: int = 0  # still waiting when the session stopped
    failed: int = 0  # the send raised
    repeated: int = 0  # sent, equal to the previous command sent (a room forwards no change)


class Outbox:
    """One pending command for one connection, sent by that connection's own task."""

    def __init__(self, send: Callable[[Mapping[str, float]], Awaitable[object]],
                 on_done: SentCallback, name: str = "") -> None:
        self._send, self._on_done, self.name = send, on_done, name
        self._pending: tuple[Mapping[str, float], float, Any] | None = None
        self._last_sent: Mapping[str, float] | None = None
        self._wake = asyncio.Event()
        self.stats = OutboxStats()

    @property
    def pending(self) -> bool:
        return self._pending is not None

    def put(self, command: Mapping[str, float], at: float, context: Any = None) -> None:
        """Hand a command over (never blocks). A command still waiting is replaced: the
        robot wants the newest one, and the replaced one is counted, not lost silently."""
        if self._pending is not None:
            self.stats.superseded += 1
            old, old_at, old_ctx = self._pending
            self._on_done(old, old_at, False, old_ctx)
        self._pending = (command, at, context)
        self.stats.handed += 1
        self._wake.set()

    def clear(self) -> None:
        """Forget a waiting command (stop, emergency stop): it must never go out later."""
        if self._pending is not None:
            self.stats.dropped_on_stop += 1
            self._pending = None
        self._wake.clear()

    async def send_pending(self) -> None:
        item, self._pending = self._pending, None
        if item is None:
            return
        command, at, context = item
        try:
            sent = bool(await self._send(command))
        except asyncio.CancelledError:
            raise
        except Exception:
            self.stats.failed += 1
            log.exception("outbox %s: send failed", self.name)
            sent = False
        if sent:
            self.stats.sent += 1
            if command == self._last_sent:
                self.stats.repeated += 1
            self._last_sent = command
        else:
            self.stats.not_sent += 1
        self._on_done(command, at, sent, context)

    async def run(self) -> None:
        """Send what is handed over, until cancelled."""
        while True:
            await self._wake.wait()
            self._wake.clear()
            while self._pending is not None:
                await self.send_pending()

    def describe(self) -> dict[str, Any]:
        s = self.stats
        return {"handed": s.handed, "sent": s.sent, "not_sent": s.not_sent,
                "superseded": s.superseded, "dropped_on_stop": s.dropped_on_stop,
                "failed": s.failed, "repeated": s.repeated}


@contextlib.contextmanager
def membership(scheduler: TickScheduler, member: TickMember) -> Any:
    scheduler.add(member)
    try:
        yield scheduler
    finally:
        scheduler.remove(member)
