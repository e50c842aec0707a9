"""Reconnect after a real server crash: the server is a subprocess, SIGKILLed and restarted."""

from __future__ import annotations

import asyncio

from orchestrator.arena.rest import ArenaRest, new_workspace
from orchestrator.arena.robotics import RoboticsConsumer, RoboticsProducer
from tests.support.arena import ArenaServerProcess
from tests.support.processes import stopped

from .conftest import eventually


async def test_clients_rejoin_after_server_restart_and_joints_flow_again() -> None:
    server = ArenaServerProcess()
    await asyncio.to_thread(server.start)
    workspace = new_workspace()
    rest = ArenaRest(server.base_url, timeout_s=5.0)
    await rest.create_robotics_room(workspace, "joints")
    # The consumer owns the room (recreates it if the server lost it); the producer only retries.
    consumer = RoboticsConsumer(server.base_url, workspace, "joints", recreate_room=True,
                                reconnect_min_s=0.05, reconnect_max_s=0.5)
    producer = RoboticsProducer(server.base_url, workspace, "joints",
                                reconnect_min_s=0.05, reconnect_max_s=0.5)
    try:
        await consumer.start()
        await producer.start()
        await producer.send_joints({"a": 1.0, "b": 2.0})
        await eventually(lambda: consumer.joints == {"a": 1.0, "b": 2.0}, "before crash")

        await asyncio.to_thread(server.kill)
        await eventually(lambda: not consumer.connected and not producer.connected, "drop seen")
        assert await producer.send_joints({"a": 5.0}) is False  # nothing to send through
        assert consumer.joints == {"a": 1.0, "b": 2.0}  # known state survives the drop

        await asyncio.to_thread(server.start)  # same port, empty server: rooms are gone
        await eventually(lambda: consumer.connected and producer.connected, "re-joined", 30)
        assert consumer.stats.reconnects >= 1 and producer.stats.reconnects >= 1
        assert consumer.joints == {"a": 1.0, "b": 2.0}  # empty state_sync did not wipe it

        async def flows() -> bool:
            await producer.send_joints({"a": 3.0, "b": 2.0})
            return consumer.joints == {"a": 3.0, "b": 2.0}

        async with asyncio.timeout(30):
            while not await flows():
                await asyncio.sleep(0.05)
        assert consumer.stats.readings >= 2
    finally:
        await producer.stop()
        await consumer.stop()
        await rest.aclose()
        await asyncio.to_thread(server.stop)


async def test_silent_server_is_detected_by_liveness_timeout() -> None:
    """A frozen server (SIGSTOP: real, no mock) keeps TCP open but answers nothing."""
    server = ArenaServerProcess()
    await asyncio.to_thread(server.start)
    workspace = new_workspace()
    rest = ArenaRest(server.base_url, timeout_s=5.0)
    await rest.create_robotics_room(workspace, "r")
    consumer = RoboticsConsumer(server.base_url, workspace, "r", heartbeat_interval_s=0.1,
                                liveness_timeout_s=0.5, join_timeout_s=0.5,
                                reconnect_min_s=0.05, reconnect_max_s=0.2)
    assert server.proc is not None
    try:
        await consumer.start()
        with stopped(server.proc.pid):
            await eventually(lambda: not consumer.connected, "liveness timeout")
            assert "liveness" in (consumer.stats.last_error or "") or \
                consumer.stats.connect_failures > 0
        await eventually(lambda: consumer.connected, "re-joined after thaw", 30)
    finally:
        await consumer.stop()
        await rest.aclose()
        await asyncio.to_thread(server.stop)
