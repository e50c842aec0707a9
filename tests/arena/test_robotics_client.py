"""RoboticsConsumer / RoboticsProducer against the room server over loopback."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable

import pytest
from websockets.asyncio.server import ServerConnection

from orchestrator.arena.messages import (
    MAX_JOINT_ENTRIES,
    EmergencyStop,
    parse_robotics,
    parse_video,
)
from orchestrator.arena.rest import ArenaRest, ArenaUnavailable, JoinRefused
from orchestrator.arena.robotics import MAX_JOINT_NAMES, RoboticsConsumer, RoboticsProducer
from tests.support.arena import ArenaServerThread, free_port

from .conftest import Handler, eventually


async def test_joint_round_trip_and_partial_updates_merged(
    arena: ArenaServerThread, rest: ArenaRest, workspace: str
) -> None:
    await rest.create_robotics_room(workspace, "r")
    changes: list[dict[str, float]] = []
    consumer = RoboticsConsumer(arena.base_url, workspace, "r", "r-consumer",
                                on_joints=changes.append)
    producer = RoboticsProducer(arena.base_url, workspace, "r", "r-producer")
    await consumer.start()
    await producer.start()
    try:
        assert consumer.joints == {} and consumer.last_reading_at is None
        assert consumer.stats.readings == 0  # the empty state_sync on join is not a reading

        assert await producer.send_joints({"a": 1.0, "b": 2.0, "c": 3.0})
        await eventually(lambda: consumer.joints == {"a": 1.0, "b": 2.0, "c": 3.0}, "first")
        first_at = consumer.last_reading_at
        assert first_at is not None

        # Only b changes: the server forwards [b] alone; the consumer keeps a and c.
        assert await producer.send_joints({"a": 1.0, "b": -7.5, "c": 3.0})
        await eventually(lambda: consumer.joints["b"] == -7.5, "partial update")
        assert consumer.joints == {"a": 1.0, "b": -7.5, "c": 3.0}
        assert consumer.last_reading_at is not None and consumer.last_reading_at >= first_at
        assert consumer.stats.readings == 2 and consumer.stats.malformed == 0
        assert producer.stats.sent == 2
        assert changes == [{"a": 1.0, "b": 2.0, "c": 3.0}, {"b": -7.5}]  # what changed, each time

        # A REST command merges the same way.
        await rest.send_command(workspace, "r", {"c": 9.0})
        await eventually(lambda: consumer.joints["c"] == 9.0, "api command")
        assert consumer.joints == {"a": 1.0, "b": -7.5, "c": 9.0}
    finally:
        await producer.stop()
        await consumer.stop()
    assert not consumer.connected and not producer.connected


async def test_a_flood_of_new_joint_names_stays_bounded(
    arena: ArenaServerThread, rest: ArenaRest, workspace: str
) -> None:
    await rest.create_robotics_room(workspace, "flood")
    consumer = RoboticsConsumer(arena.base_url, workspace, "flood", "flood-consumer")
    producer = RoboticsProducer(arena.base_url, workspace, "flood", "flood-producer")
    await consumer.start()
    await producer.start()
    try:
        await producer.send_joints({"a": 1.0})
        await eventually(lambda: consumer.joints == {"a": 1.0}, "first reading")
        for batch in range(3):  # 3 x 200 fresh names: more than the cap
            await producer.send_joints({f"junk{batch}_{i}": 1.0 for i in range(200)})
        await eventually(lambda: consumer.stats.dropped_names == 601 - MAX_JOINT_NAMES,
                         "the floods")
        assert len(consumer.joints) == MAX_JOINT_NAMES
        await producer.send_joints({"a": 2.0})  # known names still update
        await eventually(lambda: consumer.joints["a"] == 2.0, "a known joint after the flood")
    finally:
        await producer.stop()
        await consumer.stop()


async def test_late_consumer_takes_non_empty_state_sync_as_reading(
    arena: ArenaServerThread, rest: ArenaRest, workspace: str
) -> None:
    await rest.create_robotics_room(workspace, "r")
    async with RoboticsProducer(arena.base_url, workspace, "r") as producer:
        assert isinstance(producer, RoboticsProducer)
        await producer.send_joints({"x": 4.0})
        async with asyncio.timeout(10):
            while (await rest.get_robotics_state(workspace, "r"))["joints"] != {"x": 4.0}:
                await asyncio.sleep(0.01)
        async with RoboticsConsumer(arena.base_url, workspace, "r") as consumer:
            assert isinstance(consumer, RoboticsConsumer)
            await eventually(lambda: consumer.stats.readings == 1, "state_sync reading")
            assert consumer.joints == {"x": 4.0} and consumer.last_reading_at is not None


async def test_emergency_stop_is_surfaced_to_both_ends(
    arena: ArenaServerThread, rest: ArenaRest, workspace: str
) -> None:
    await rest.create_robotics_room(workspace, "r")
    seen: list[tuple[str, str]] = []
    consumer = RoboticsConsumer(arena.base_url, workspace, "r",
                                on_emergency_stop=lambda why: seen.append(("consumer", why)))
    producer = RoboticsProducer(arena.base_url, workspace, "r",
                                on_emergency_stop=lambda why: seen.append(("producer", why)))
    await consumer.start()
    await producer.start()
    try:
        assert await producer.emergency_stop("operator pressed stop")
        await eventually(lambda: len(seen) == 2, "both callbacks")
        assert sorted(seen) == [("consumer", "operator pressed stop"),
                                ("producer", "operator pressed stop")]
        assert consumer.stats.emergency_stops == 1 == producer.stats.emergency_stops
    finally:
        await producer.stop()
        await consumer.stop()


@pytest.mark.parametrize("extra", [{"reason": 42}, {"reason": {"why": "bumped"}}])
async def test_an_emergency_stop_with_odd_fields_still_latches(
    arena: ArenaServerThread, rest: ArenaRest, workspace: str, extra: dict[str, object]
) -> None:
    """The room server forwards a sender's reason as given: a number or an object must
    stop the robot like a string does (a stop dropped as malformed fails open)."""
    await rest.create_robotics_room(workspace, "r")
    seen: list[str] = []
    consumer = RoboticsConsumer(arena.base_url, workspace, "r", on_emergency_stop=seen.append)
    producer = RoboticsProducer(arena.base_url, workspace, "r")
    await consumer.start()
    await producer.start()
    try:
        assert await producer._publish(json.dumps({"type": "emergency_stop", **extra}))
        await eventually(lambda: len(seen) == 1, "the consumer's callback")
        assert consumer.stats.emergency_stops == 1 and consumer.stats.malformed == 0
    finally:
        await producer.stop()
        await consumer.stop()


@pytest.mark.parametrize("parse", [parse_robotics, parse_video])
def test_an_emergency_stop_from_another_server_parses_whatever_its_stamp_and_source(
    parse: Callable[[str], object],
) -> None:
    """This room server writes its own timestamp and source; another may send an epoch
    number and an object."""
    text = json.dumps({"type": "emergency_stop", "timestamp": 1.7e9, "source": {"id": 7}})
    msg = parse(text)
    assert isinstance(msg, EmergencyStop)
    assert msg.timestamp == "1700000000.0" and msg.source == '{"id": 7}'


async def test_refused_join_and_unreachable_server_raise_typed_errors(
    arena: ArenaServerThread, rest: ArenaRest, workspace: str
) -> None:
    with pytest.raises(JoinRefused, match="Cannot join room"):
        await RoboticsConsumer(arena.base_url, workspace, "missing").start()
    await rest.create_robotics_room(workspace, "r")
    async with RoboticsProducer(arena.base_url, workspace, "r"):
        with pytest.raises(JoinRefused):
            await RoboticsProducer(arena.base_url, workspace, "r").start()
    with pytest.raises(ArenaUnavailable):
        await RoboticsConsumer(f"http://127.0.0.1:{free_port()}", workspace, "r").start()


async def test_owner_recreates_a_missing_room_when_asked(
    arena: ArenaServerThread, rest: ArenaRest, workspace: str
) -> None:
    await rest.create_robotics_room(workspace, "r")
    consumer = RoboticsConsumer(arena.base_url, workspace, "r", recreate_room=True,
                                reconnect_min_s=0.05)
    await consumer.start()
    try:
        await rest.delete_robotics_room(workspace, "r")
        # A deleted room keeps our socket open; a lost connection must re-create and re-join.
        assert consumer._ws is not None
        await consumer._ws.close()
        await eventually(lambda: consumer.stats.reconnects == 1, "re-joined")
        room = await rest.get_robotics_room(workspace, "r")
        assert room["participants"]["consumers"] == [consumer.participant_id]
    finally:
        await consumer.stop()


async def test_heartbeats_are_sent_and_acknowledged(
    arena: ArenaServerThread, rest: ArenaRest, workspace: str
) -> None:
    await rest.create_robotics_room(workspace, "r")
    async with RoboticsProducer(arena.base_url, workspace, "r",
                                heartbeat_interval_s=0.05) as producer:
        await eventually(lambda: producer.stats.heartbeats_sent >= 3, "heartbeats")
        await eventually(lambda: producer.stats.messages >= 3, "acks")
        assert producer.connected and producer.stats.reconnects == 0


async def test_send_joints_rejects_bad_input_and_reports_disconnection(
    arena: ArenaServerThread, rest: ArenaRest, workspace: str
) -> None:
    await rest.create_robotics_room(workspace, "r")
    producer = RoboticsProducer(arena.base_url, workspace, "r")
    assert await producer.send_joints({"a": 1.0}) is False  # not started: not sent
    assert producer.stats.send_dropped == 1
    await producer.start()
    try:
        for bad in ({"a": float("nan")}, {"a": "1"}, {"": 1.0}, {"a": True}, {}):
            with pytest.raises(ValueError):
                await producer.send_joints(bad)  # type: ignore[arg-type]
        assert producer.stats.sent == 0
    finally:
        await producer.stop()


async def test_malformed_messages_are_dropped_and_counted(
    fake_server: Callable[[Handler], Awaitable[str]],
) -> None:
    async def handler(ws: ServerConnection) -> None:
        await ws.recv()  # join frame
        await ws.send(json.dumps({"type": "state_sync", "data": {}}))
        await ws.send(json.dumps({"type": "joined", "room_id": "r", "role": "consumer"}))
        junks: list[str | bytes] = [
            "{oops", "[1, 2]", b"\x00binary", json.dumps({"no": "type"}),
            json.dumps({"type": "joint_update", "data": {"a": 1.0}}),  # the seed's dict shape
            json.dumps({"type": "joint_update", "data": [{"name": "a", "value": "1"}]}),
            json.dumps({"type": "state_sync", "data": {"a": None}}),
        ]
        for junk in junks:
            await ws.send(junk)
        await ws.send(json.dumps({"type": "mystery"}))
        await ws.send(json.dumps({"type": "joint_update", "data": [
            {"name": "a", "value": 1.5, "extra": True}]}))
        await ws.wait_closed()

    url = await fake_server(handler)
    consumer = RoboticsConsumer(url, "w", "r")
    await consumer.start()
    try:
        await eventually(lambda: consumer.joints == {"a": 1.5}, "good message after junk")
        assert consumer.stats.malformed == 7
        assert consumer.stats.ignored == 1
        assert consumer.stats.readings == 1
    finally:
        await consumer.stop()


async def test_join_times_out_when_server_never_answers(
    fake_server: Callable[[Handler], Awaitable[str]],
) -> None:
    async def silent(ws: ServerConnection) -> None:
        await ws.wait_closed()

    url = await fake_server(silent)
    consumer = RoboticsConsumer(url, "w", "r", join_timeout_s=0.2)
    with pytest.raises(ArenaUnavailable, match="join"):
        await consumer.start()
    assert consumer.stats.connect_failures == 1 and not consumer.connected


async def test_stop_cancels_and_awaits_the_background_task(
    arena: ArenaServerThread, rest: ArenaRest, workspace: str
) -> None:
    await rest.create_robotics_room(workspace, "r")
    consumer = RoboticsConsumer(arena.base_url, workspace, "r")
    await consumer.start()
    task = consumer._task
    assert task is not None and not task.done()
    await consumer.stop()
    assert task.done() and consumer._task is None
    await consumer.start()  # restartable
    await consumer.stop()
    names = {t.get_name() for t in asyncio.all_tasks()}
    assert not any(n.startswith("arena-consumer") for n in names)


async def test_a_message_nested_too_deep_is_dropped_and_the_stop_after_it_latches(
    fake_server: Callable[[Handler], Awaitable[str]],
) -> None:
    """JSON nested deeper than the parser's stack raised RecursionError (no ValueError):
    the receive loop ended for good, still showing connected, and the emergency stop that
    followed was never seen."""
    async def handler(ws: ServerConnection) -> None:
        await ws.recv()  # join frame
        await ws.send(json.dumps({"type": "state_sync", "data": {}}))
        await ws.send(json.dumps({"type": "joined", "room_id": "r", "role": "consumer"}))
        deep = "[" * 100_000 + "]" * 100_000  # 200 kB: under the size limit
        await ws.send('{"type": "emergency_stop", "reason": ' + deep + "}")
        await ws.send(json.dumps({"type": "emergency_stop", "reason": "after the deep one"}))
        await ws.wait_closed()

    stops: list[str] = []
    url = await fake_server(handler)
    consumer = RoboticsConsumer(url, "w", "r", on_emergency_stop=stops.append)
    await consumer.start()
    try:
        await eventually(lambda: stops == ["after the deep one"], "the stop after it")
        assert consumer.stats.malformed == 1
        assert consumer.connected
    finally:
        await consumer.stop()


async def test_an_error_in_the_receive_loop_costs_one_connection_not_the_client(
    arena: ArenaServerThread, rest: ArenaRest, workspace: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An error no handler expects inside the receive loop ended it for good: the client
    showed connected and never delivered another reading. Injected (once, in the parser):
    the parser's own faults are all caught now, so none can be caused for real; this stands
    for the next one. The client re-joins instead."""
    import orchestrator.arena.robotics_connection as robotics

    await rest.create_robotics_room(workspace, "r")
    real, failed = robotics.parse_robotics, []

    def once_failing(raw: str | bytes) -> object:
        parsed = real(raw)
        if not failed and getattr(parsed, "type", None) == "joint_update":
            failed.append(True)
            raise RuntimeError("a fault in the receive loop")
        return parsed

    monkeypatch.setattr(robotics, "parse_robotics", once_failing)
    seen: list[dict[str, float]] = []
    consumer = RoboticsConsumer(arena.base_url, workspace, "r", on_joints=seen.append)
    producer = RoboticsProducer(arena.base_url, workspace, "r")
    await consumer.start()
    await producer.start()
    try:
        assert await producer.send_joints({"a": 1.0})
        await eventually(lambda: bool(failed), "the injected fault")
        await eventually(lambda: consumer.stats.reconnects >= 1 and consumer.connected,
                         "a re-join")
        assert await producer.send_joints({"a": 2.0})
        await eventually(lambda: any(c.get("a") == 2.0 for c in seen), "readings after it")
        assert "a fault in the receive loop" in (consumer.stats.last_error or "")
    finally:
        await producer.stop()
        await consumer.stop()


async def test_a_joint_message_keeps_its_valid_entries_and_a_huge_one_is_dropped(
    fake_server: Callable[[Handler], Awaitable[str]],
) -> None:
    """Another server forwards entries as the producer sent them, and only the joints that
    changed: one null among them dropped the whole message, and the good joints in it never
    came again (their old values passed for current). A message of thousands of entries
    took tens of ms to parse on the loop every session ticks on."""
    async def handler(ws: ServerConnection) -> None:
        await ws.recv()  # join frame
        await ws.send(json.dumps({"type": "joined", "room_id": "r", "role": "consumer"}))
        await ws.send(json.dumps({"type": "joint_update", "data": [
            {"name": "pan", "value": 40.0}, {"name": "lift", "value": None},
            {"name": "", "value": 1.0}, {"name": "roll", "value": float("nan")}]}))
        await ws.send(json.dumps({"type": "state_sync", "data": {"wrist": 3.0, "x": "1"}}))
        await ws.send(json.dumps({"type": "joint_update", "data": [
            {"name": f"j{i}", "value": 1.0} for i in range(MAX_JOINT_ENTRIES + 1)]}))
        await ws.send(json.dumps({"type": "joint_update", "data": [
            {"name": "lift", "value": 5.0}]}))
        await ws.wait_closed()

    url = await fake_server(handler)
    consumer = RoboticsConsumer(url, "w", "r")
    await consumer.start()
    try:
        await eventually(lambda: "lift" in consumer.joints, "the last reading")
        assert consumer.joints == {"pan": 40.0, "wrist": 3.0, "lift": 5.0}
        assert consumer.stats.invalid_entries == 4
        assert consumer.stats.malformed == 1  # the huge one
        assert consumer.stats.readings == 3
    finally:
        await consumer.stop()
