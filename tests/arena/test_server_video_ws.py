"""The room server's video WebSocket and the /webrtc/signal relay, over real sockets."""

from __future__ import annotations

import json

from orchestrator.arena.messages import WebRTCAnswer, WebRTCIce, WebRTCOffer, parse_video
from orchestrator.arena.rest import ArenaRest
from tests.support.arena import ArenaServerThread

from .conftest import assert_silent, join, recv_json


async def test_participant_events_relays_and_emergency_stop(
    arena: ArenaServerThread, rest: ArenaRest, workspace: str
) -> None:
    await rest.create_video_room(workspace, "cam")
    prod, got = await join(arena.base_url, "video", workspace, "cam", "cam-p", "producer")
    assert [m["type"] for m in got] == ["joined"]  # no state_sync on video rooms
    assert set(got[0]) == {"type", "room_id", "role", "timestamp"}

    cons, got = await join(arena.base_url, "video", workspace, "cam", "cam-c", "consumer")
    assert got[-1]["type"] == "joined"
    msg = await recv_json(prod)
    assert msg["type"] == "participant_joined"
    assert (msg["room_id"], msg["participant_id"], msg["role"]) == ("cam", "cam-c", "consumer")

    await prod.send(json.dumps({"type": "stream_started", "config": {"framerate": 30}}))
    msg = await recv_json(cons)
    assert msg["type"] == "stream_started" and msg["participant_id"] == "cam-p"
    assert msg["config"] == {"framerate": 30}
    await assert_silent(prod)  # relays skip the sender

    await prod.send(json.dumps({"type": "no_such_thing"}))  # unknown types are ignored
    await assert_silent(prod)

    await cons.send(json.dumps({"type": "emergency_stop", "reason": "stop"}))
    for ws in (prod, cons):
        msg = await recv_json(ws)
        assert msg["type"] == "emergency_stop" and msg["source"] == "cam-c"

    await cons.close()
    msg = await recv_json(prod)
    assert msg["type"] == "participant_left" and msg["participant_id"] == "cam-c"
    await prod.close()


async def test_signaling_relay_shapes(
    arena: ArenaServerThread, rest: ArenaRest, workspace: str
) -> None:
    await rest.create_video_room(workspace, "cam")
    prod, _ = await join(arena.base_url, "video", workspace, "cam", "sp", "producer")
    cons, _ = await join(arena.base_url, "video", workspace, "cam", "sc", "consumer")
    assert (await recv_json(prod))["type"] == "participant_joined"

    answer = await rest.signal(workspace, "cam", "sp",
                               {"type": "offer", "sdp": "v=0 offer", "target_consumer": "sc"})
    assert answer == {"success": True, "workspace_id": workspace,
                      "response": {"success": True, "message": "Offer forwarded to consumer"}}
    raw = await cons.recv()
    offer = parse_video(raw)
    assert isinstance(offer, WebRTCOffer), raw
    assert offer.offer.type == "offer" and offer.offer.sdp == "v=0 offer"
    assert offer.from_producer == "sp" and offer.timestamp

    await rest.signal(workspace, "cam", "sc",
                      {"type": "answer", "sdp": "v=0 answer", "target_producer": "sp"})
    ans = parse_video(await prod.recv())
    assert isinstance(ans, WebRTCAnswer)
    assert (ans.answer.type, ans.answer.sdp, ans.from_consumer) == ("answer", "v=0 answer", "sc")

    cand = {"candidate": "candidate:1 1 udp 2130706431 127.0.0.1 5000 typ host",
            "sdpMid": "0", "sdpMLineIndex": 0}
    await rest.signal(workspace, "cam", "sc",
                      {"type": "ice", "candidate": cand, "target_producer": "sp"})
    ice = parse_video(await prod.recv())
    assert isinstance(ice, WebRTCIce) and ice.candidate is not None
    assert (ice.from_consumer, ice.from_producer) == ("sc", None)
    assert ice.candidate.candidate == cand["candidate"] and ice.candidate.sdpMLineIndex == 0
    await rest.signal(workspace, "cam", "sp",
                      {"type": "ice", "candidate": cand, "target_consumer": "sc"})
    ice = parse_video(await cons.recv())
    assert isinstance(ice, WebRTCIce) and (ice.from_producer, ice.from_consumer) == ("sp", None)

    # An offer from a consumer is not forwarded (only producers offer).
    answer = await rest.signal(workspace, "cam", "sc",
                               {"type": "offer", "sdp": "v=0", "target_consumer": "sc"})
    assert answer["response"]["message"].startswith("Peer-to-peer mode")
    await assert_silent(cons)
    for ws in (prod, cons):
        await ws.close()
