"""A session that must not ask for a chunk, or cannot tick, holds and says why in its status;
it carries on once the cause is gone. No chunk is asked from an observation past the
staleness limit (CONTROL.md), whether its newest usable frame arrived long ago or it shows a
moment long gone. A real session, robot, room server and Triton; the fault is injected where
each test says, and why."""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator
from dataclasses import replace
from typing import Any

import pytest

from orchestrator.arena.robotics import RoboticsProducer
from orchestrator.triton.launcher import LocalTriton
from tests.e2e.conftest import e2e_settings
from tests.e2e.test_sessions import ROBOT_JOINTS, driven_loop, robot_for, session_body
from tests.support.arena import ArenaServerProcess
from tests.support.orchestrator import Orchestrator, run_orchestrator, wait_for


async def test_no_chunk_is_asked_from_a_frame_past_the_staleness_limit(
    orchestrator: Orchestrator, arena: ArenaServerProcess, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Frames keep arriving (the watchdog sees them: fresh) but none can be used, so the
    last good one stays the newest usable. Injected: the conversion's result, as if every
    new frame had a pixel format PyAV cannot convert (a producer we cannot make here). The
    model was asked about that frame for as long as it lasted."""
    async with driven_loop(orchestrator, arena, "stale") as loop:
        camera = loop._cameras["front"]
        good = camera.latest()
        assert good is not None
        old = replace(good, arrived_at=good.arrived_at - 10 * loop.settings.stale_after_s)
        monkeypatch.setattr(camera, "latest", lambda: old)
        await wait_for(lambda: loop.counters.errors["stale_frame"] >= 1, 30, "a refusal")
        chunks = loop.core.stats().chunks
        await asyncio.sleep(1.0)
        assert loop.core.stats().chunks == chunks  # nothing asked from it
        assert "stale_frame" in (await orchestrator.status(loop.session_id))["error_message"]
        monkeypatch.undo()
        await wait_for(lambda: loop.core.stats().chunks >= chunks + 3, 30, "chunks again")


async def test_no_chunk_is_asked_from_an_observation_captured_past_the_staleness_limit(
    orchestrator: Orchestrator, arena: ArenaServerProcess, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Frames arrive on time but show a moment long gone, as a stream whose sender reports
    date them well before their arrival (a camera's own buffer) says. Injected: that
    capture time (aiortc, which the simulated robot sends with, stamps its reports after
    encoding). Only arrivals were checked: the model was asked about the past, and its chunk
    aligned as if that past were at most the limit ago."""
    async with driven_loop(orchestrator, arena, "gone") as loop:
        camera = loop._cameras["front"]
        real, limit = camera.latest, loop.settings.stale_after_s

        def long_ago() -> Any:
            frame = real()
            return None if frame is None else replace(
                frame, captured_at=frame.arrived_at - 3 * limit)

        monkeypatch.setattr(camera, "latest", long_ago)
        await wait_for(lambda: loop.counters.errors["stale_observation"] >= 1, 30, "a refusal")
        chunks = loop.core.stats().chunks
        await asyncio.sleep(1.0)
        assert loop.core.stats().chunks == chunks  # nothing asked from it
        assert loop.counters.errors["stale_frame"] == 0  # every frame arrived on time
        message = (await orchestrator.status(loop.session_id))["error_message"]
        assert "stale_observation" in message and "captured" in message, message
        monkeypatch.undo()
        await wait_for(lambda: loop.core.stats().chunks >= chunks + 3, 30, "chunks again")


async def test_a_tick_that_keeps_failing_shows_in_the_status(
    orchestrator: Orchestrator, arena: ArenaServerProcess, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Every tick raising (a bug: injected, nothing real makes it) was counted and logged
    only: the session showed "running" with no error while it published nothing."""
    async with driven_loop(orchestrator, arena, "tickfail") as loop:
        def broken(*args: Any, **kwargs: Any) -> Any:
            raise RuntimeError("injected")

        monkeypatch.setattr(loop.core, "on_tick", broken)
        await wait_for(lambda: loop.counters.errors["tick"] >= 3, 30, "failing ticks")
        status = await orchestrator.status(loop.session_id)
        assert status["status"] == "running"
        assert "tick: RuntimeError: injected" in (status["error_message"] or ""), status
        monkeypatch.undo()

        async def clear() -> bool:
            return (await orchestrator.status(loop.session_id))["error_message"] is None
        await wait_for(clear, 30, "the error cleared by a chunk")


@contextlib.asynccontextmanager
async def joints_into(created: dict[str, Any], arena: ArenaServerProcess
                      ) -> AsyncIterator[RoboticsProducer]:
    """A producer in the session's joint-input room, as a page's robot joins it."""
    producer = RoboticsProducer(arena.base_url, created["workspace_id"],
                                created["joint_input_room_id"], "page-robot")
    await producer.start()
    try:
        yield producer
    finally:
        await producer.stop()


async def test_a_robot_that_sent_only_some_joints_is_told_which_are_missing(
    orchestrator: Orchestrator, arena: ArenaServerProcess
) -> None:
    """The RobotHub page sends a joint only once it moves (a slider), and the room server
    forwards only changes: the session held, "running" with no error, until every joint
    had moved once. The status now names the joints it waits for."""
    sid = f"partial-{uuid.uuid4().hex[:6]}"
    created = await orchestrator.create_session(**session_body(sid, arena))
    async with joints_into(created, arena) as robot:
        assert (await orchestrator.http.post(f"/sessions/{sid}/start")).status_code == 200
        await robot.send_joints({"shoulder_pan": 12.0})

        async def says(what: str | None) -> bool:
            message = (await orchestrator.status(sid))["error_message"]
            return message is None if what is None else what in (message or "")
        await wait_for(lambda: says("waiting_for_joints: no reading yet of"), 30,
                       "the missing joints named")
        message = (await orchestrator.status(sid))["error_message"]
        assert "shoulder_lift" in message and "shoulder_pan" not in message, message
        await robot.send_joints({j: 1.0 for j in ROBOT_JOINTS})
        await wait_for(lambda: says(None), 30, "the message gone once all were read")
    assert (await orchestrator.http.delete(f"/sessions/{sid}")).status_code == 200


async def test_with_unread_joints_set_the_page_s_robot_is_driven_from_its_first_joint(
    e2e_triton: LocalTriton, arena: ArenaServerProcess
) -> None:
    """``ORCHESTRATOR_UNREAD_JOINTS=0``: the joints the page never sent read as 0, where its
    robot starts, as the server it replaces read them. One slider moved, and the robot gets
    commands for every joint, under the page's names."""
    async with run_orchestrator(e2e_settings(e2e_triton, unread_joints=0.0)) as orch:
        sid = f"unread-{uuid.uuid4().hex[:6]}"
        created = await orch.create_session(**session_body(sid, arena))
        async with joints_into(created, arena) as page, \
                robot_for(created, arena, joints=False) as robot:  # cameras, commands
            assert (await orch.http.post(f"/sessions/{sid}/start")).status_code == 200
            await page.send_joints({"Pitch": 12.0})
            await wait_for(lambda: len(robot.received) >= 5, 30, "commands")
            named = set().union(*(c.values for c in robot.received))
            assert named == {"Rotation", "Pitch", "Elbow", "Wrist_Pitch", "Wrist_Roll",
                             "Jaw"}, named
            assert (await orch.status(sid))["error_message"] is None
        assert (await orch.http.delete(f"/sessions/{sid}")).status_code == 200
