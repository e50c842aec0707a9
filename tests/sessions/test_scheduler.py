"""The shared tick scheduler (the outbox alone: test_outbox.py).

Real parts: real control loops on a real local Triton (a tiny model without cameras; the
joint state is given through the loop's own ``on_joints`` input), and, for the blocked
publish, a real connection whose far end stops reading (a socket pair: the writer's
``drain`` then waits on the kernel's full buffer, as a stalled WebSocket does). Nothing
here asserts a duration: counts of ticks and commands only.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import socket
import time
import weakref
from collections.abc import AsyncIterator, Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest

from orchestrator.sessions.collector import PACED
from orchestrator.sessions.config import LoopSettings
from orchestrator.sessions.loop import ControlLoop
from orchestrator.sessions.policy import PolicyRef
from orchestrator.sessions.scheduler import Outbox, TickScheduler, scheduler_for
from orchestrator.triton.client import TritonClient
from orchestrator.triton.launcher import LocalTriton
from orchestrator.triton.model_contract import ModelContract
from tests.support.triton import local_triton, tiny_contract, write_tiny_model

RATE = 30.0


async def wait_until(predicate: Callable[[], bool], timeout_s: float = 30.0) -> None:
    async with asyncio.timeout(timeout_s):
        while not predicate():
            await asyncio.sleep(0.01)


def scheduler_tasks() -> list[asyncio.Task[Any]]:
    return [t for t in asyncio.all_tasks() if t.get_name().startswith("tick-scheduler")
            and not t.done() and not t.cancelling()]


class Member:
    def __init__(self, name: str, log: list[tuple[int, str]]) -> None:
        self.name, self.log = name, log

    def on_grid_tick(self, g: int, now: float) -> None:
        self.log.append((g, self.name))


async def test_one_pass_per_period_in_a_stable_order() -> None:
    scheduler = TickScheduler(RATE)
    log: list[tuple[int, str]] = []
    members = [Member(f"m{i}", log) for i in range(6)]
    for m in members:
        scheduler.add(m)
    await wait_until(lambda: scheduler.stats.passes >= 10)
    late = Member("late", log)
    scheduler.add(late)  # joins at the end of the order
    passes = scheduler.stats.passes
    await wait_until(lambda: scheduler.stats.passes >= passes + 5)
    for m in [*members, late]:
        scheduler.remove(m)
    assert not scheduler_tasks()  # no member: no timer left running
    by_tick: dict[int, list[str]] = {}
    for g, name in log:
        by_tick.setdefault(g, []).append(name)
    ticks = sorted(by_tick)
    assert len(ticks) == scheduler.stats.passes  # one pass per grid tick, never two
    assert ticks[-1] - ticks[0] + 1 == len(ticks) + scheduler.stats.missed_passes
    names = [m.name for m in members]
    for g in ticks:
        assert by_tick[g] in (names, [*names, "late"]), (g, by_tick[g])
    assert by_tick[ticks[-1]] == [*names, "late"]


async def test_a_member_removed_during_a_pass_is_not_ticked() -> None:
    scheduler = TickScheduler(RATE)
    log: list[tuple[int, str]] = []
    second = Member("second", log)

    class Remover(Member):
        def on_grid_tick(self, g: int, now: float) -> None:
            super().on_grid_tick(g, now)
            scheduler.remove(second)

    first = Remover("first", log)
    scheduler.add(first)
    scheduler.add(second)
    await wait_until(lambda: scheduler.stats.passes >= 3)
    scheduler.remove(first)
    assert [name for _, name in log].count("second") == 0


def _loop(name: str, contract: ModelContract, triton: TritonClient,
          publish: Callable[[Mapping[str, float]], Any], mode: str = "shared",
          rate: float = RATE) -> ControlLoop:
    loop = ControlLoop(
        session_id=name, contract=contract, policy=PolicyRef(contract.name, ""),
        settings=LoopSettings(rate_hz=rate, tick_scheduler=mode,  # type: ignore[arg-type]
                              latency_prior_s=0.05, inference_timeout_s=10.0),
        aliases={}, triton=triton, cameras={}, publish=publish, joints_alive=lambda: True,
    )
    loop.on_joints({j: 1.0 for j in contract.state_names})
    return loop


async def _fast(_: Mapping[str, float]) -> bool:
    return True


@pytest.mark.parametrize("mode", ["shared", "per_session"])
async def test_one_timer_per_rate_drives_every_session(mode: str) -> None:
    contract = tiny_contract("nothing_served", cameras=())
    async with TritonClient("127.0.0.1:1", timeout_s=0.5) as triton:  # never answers
        loops = [_loop(f"s{i}", contract, triton, _fast, mode) for i in range(8)]
        loops += [_loop(f"slow{i}", contract, triton, _fast, mode, rate=10.0) for i in range(2)]
        for loop in loops:
            await loop.start()
        try:
            await wait_until(lambda: all((lp.core.last_tick or 0) > 5 for lp in loops))
            if mode == "shared":
                assert len(scheduler_tasks()) == 2  # one per rate, not one per session
                assert len(scheduler_for(RATE)) == 8
                assert len(scheduler_for(10.0)) == 2
                # Between two passes every session at a rate has run the same grid tick:
                # their last ticks were due at the same instant.
                deadlines = {round(lp._clock.deadline(lp.core.last_tick or 0), 6)
                             for lp in loops[:8] if lp._clock is not None}
                assert len(deadlines) == 1, deadlines
            else:
                assert not scheduler_tasks()  # the earlier design: a timer in every session
        finally:
            for loop in loops:
                await loop.stop()
        assert not scheduler_tasks()


class StalledConnection:
    """A real connection whose reader never reads: once the kernel's buffers are full,
    every write waits in ``drain`` (what a robot or network that stopped reading does)."""

    payload = b"x" * (256 * 1024)

    def __init__(self) -> None:
        self._socks = socket.socketpair()
        self.started = self.finished = 0
        self.writer: asyncio.StreamWriter | None = None

    async def open(self) -> None:
        self._socks[0].setblocking(False)
        _, self.writer = await asyncio.open_connection(sock=self._socks[0])

    async def publish(self, _: Mapping[str, float]) -> bool:
        assert self.writer is not None
        self.started += 1
        self.writer.write(self.payload)
        await self.writer.drain()
        self.finished += 1
        return True

    def close(self) -> None:
        if self.writer is not None:
            self.writer.transport.abort()
        for s in self._socks:
            s.close()


@pytest.fixture(scope="module")
def triton_no_cameras(tmp_path_factory: pytest.TempPathFactory
                      ) -> Iterator[tuple[LocalTriton, ModelContract]]:
    contract = tiny_contract("sched_tiny", cameras=(), chunk_size=30)
    repo: Path = tmp_path_factory.mktemp("sched_repo")
    write_tiny_model(repo, contract)
    with local_triton(repo, work_dir=tmp_path_factory.mktemp("sched_triton")) as server:
        yield server, contract


@pytest.fixture
async def stalled() -> AsyncIterator[StalledConnection]:
    conn = StalledConnection()
    await conn.open()
    try:
        yield conn
    finally:
        conn.close()


@pytest.mark.parametrize("mode", ["shared", "per_session"])
async def test_a_blocked_publish_delays_no_tick(
    mode: str, triton_no_cameras: tuple[LocalTriton, ModelContract],
    stalled: StalledConnection,
) -> None:
    server, contract = triton_no_cameras
    async with TritonClient(server.grpc_url, timeout_s=10.0) as triton:
        sent_b: list[Mapping[str, float]] = []

        async def publish_b(command: Mapping[str, float]) -> bool:
            sent_b.append(command)
            return True

        a = _loop("blocked", contract, triton, stalled.publish, mode)
        b = _loop("free", contract, triton, publish_b, mode)
        await a.start()
        await b.start()
        try:
            # A's connection is stuck once a write never finishes.
            await wait_until(lambda: stalled.started > stalled.finished and len(sent_b) > 3)
            await asyncio.sleep(0.2)
            a0, b0, sent0 = a.core.last_tick or 0, b.core.last_tick or 0, len(sent_b)
            handed0 = a.outbox.stats.handed
            await wait_until(lambda: (b.core.last_tick or 0) >= b0 + 15)
            assert stalled.started > stalled.finished  # still stuck the whole time
            assert len(sent_b) > sent0  # B kept publishing
            if mode == "shared":
                # A's own ticks go on too; its newest command waits, the replaced ones are
                # counted.
                assert (a.core.last_tick or 0) >= a0 + 10
                assert a.outbox.stats.handed > handed0
                assert a.outbox.stats.superseded >= 10
                assert a.stats()["outbox"]["superseded"] == a.outbox.stats.superseded
            else:
                # The earlier design: the session's tick waits for its own publish.
                assert (a.core.last_tick or 0) == a0
        finally:
            await a.stop()
            await b.stop()
        assert not a.outbox.pending  # a stop forgets what waited


async def test_late_passes_still_let_every_outbox_send() -> None:
    # A pass that takes longer than a period (a slow member, for real: it holds the CPU)
    # makes the next pass late; the scheduler still yields between passes, so each
    # outbox's own task sends its command before the next pass would replace it. (Without
    # the yield the late passes run back to back forever: the loop, this test included,
    # starves and the test times out.)
    sent: list[Mapping[str, float]] = []

    async def send(command: Mapping[str, float]) -> bool:
        sent.append(command)
        return True

    outbox = Outbox(send, lambda *_: None)
    drain = asyncio.create_task(outbox.run())

    class Slow:
        def on_grid_tick(self, g: int, now: float) -> None:
            outbox.put({"g": float(g)}, now)
            deadline = time.perf_counter() + 1.5 / RATE
            while time.perf_counter() < deadline:  # busy: longer than a period
                pass

    scheduler = TickScheduler(RATE)
    slow = Slow()
    scheduler.add(slow)
    try:
        await wait_until(lambda: scheduler.stats.passes >= 8)
    finally:
        scheduler.remove(slow)
        drain.cancel()
    assert scheduler.stats.missed_passes > 0  # it really ran late
    assert outbox.stats.superseded == 0
    assert outbox.stats.sent >= scheduler.stats.passes - 1


class Stamp:
    def __init__(self) -> None:
        self.seen: list[tuple[int, float]] = []

    def on_grid_tick(self, g: int, now: float) -> None:
        self.seen.append((g, now))


@pytest.mark.parametrize("loop_kind", ["asyncio", "uvloop"])
def test_no_pass_runs_before_its_tick_is_due(loop_kind: str) -> None:
    """uvloop (the loop of uvicorn and of Ray's async actors) keeps timers in whole
    milliseconds of a cached clock, so about a fifth of its wake-ups come up to 1 ms early;
    a tick published before its deadline is jitter like a late one."""
    scheduler, stamp = TickScheduler(RATE), Stamp()

    async def body() -> None:
        scheduler.add(stamp)
        await wait_until(lambda: scheduler.stats.passes >= 60)
        scheduler.remove(stamp)

    if loop_kind == "uvloop":
        import uvloop

        uvloop.run(body())
    else:
        asyncio.run(body())
    early = [(g, scheduler.clock.deadline(g) - now) for g, now in stamp.seen
             if now < scheduler.clock.deadline(g)]
    assert len(stamp.seen) >= 60
    assert early == []


class Cycle:
    def __init__(self) -> None:
        self.me = self


class Allocator:
    """A member whose tick leaves cyclic garbage, past generation 0's threshold each time,
    and notes every collection that starts while it ticks."""

    def __init__(self) -> None:
        self.ticking = False
        self.inside: list[int] = []  # generations of collections started inside its tick
        self.between = 0
        self.first: weakref.ref[Cycle] | None = None

    def on_gc(self, phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            if self.ticking:
                self.inside.append(info["generation"])
            else:
                self.between += 1

    def on_grid_tick(self, g: int, now: float) -> None:
        self.ticking = True
        garbage = [Cycle() for _ in range(2 * gc.get_threshold()[0])]
        del garbage
        if self.first is None:
            # Made last, after the young collections this tick set off: it is garbage in
            # generation 0 from the start, so the next young collection must take it (one
            # made first in the tick can reach generation 2 while the list is alive).
            marker = Cycle()
            self.first = weakref.ref(marker)
            del marker
        self.ticking = False


@pytest.mark.parametrize("paced", [True, False])
async def test_garbage_is_collected_between_passes_never_inside_one(paced: bool) -> None:
    scheduler, member = TickScheduler(RATE), Allocator()
    before, PACED.enabled = PACED.enabled, paced
    gc.callbacks.append(member.on_gc)
    try:
        scheduler.add(member)
        await wait_until(lambda: scheduler.stats.passes >= 30)
        disabled_while_ticking = not gc.isenabled()
        task = scheduler._task
        scheduler.remove(member)
        assert task is not None
        with contextlib.suppress(asyncio.CancelledError):
            await task
    finally:
        gc.callbacks.remove(member.on_gc)
        PACED.enabled = before
    assert member.first is not None and member.first() is None  # the first tick's cycle
    if paced:
        assert member.inside == [] and member.between >= 20
        assert disabled_while_ticking and gc.isenabled()  # automatic again once it stops
    else:  # the collector left to itself: it starts wherever an allocation crosses 700
        assert len(member.inside) >= 20 and not disabled_while_ticking
