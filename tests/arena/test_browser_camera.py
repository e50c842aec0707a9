"""A browser's camera into a video room, as the RobotHub front-end streams one: headless
Chromium (getUserMedia on its fake camera), the page's own WebSocket join and REST
signaling, trickled ICE candidates, offers to consumers already there and to those that
join later. Received by the orchestrator's own VideoConsumer."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Iterator

import pytest
from playwright.async_api import Browser

from orchestrator.arena.rest import ArenaRest
from orchestrator.arena.video import VideoConsumer
from tests.arena.conftest import eventually
from tests.arena.video_helpers import pid, running
from tests.support.arena import ArenaServerThread
from tests.support.browser import FAKE_CAMERA_ARGS, blank_page, chromium

# What a page does to stream its camera: join as producer, offer to every consumer (those in
# the room at its join, then each participant_joined), send candidates as they come.
PRODUCER_JS = """
async ([base, ws, room, me]) => {
  const stream = await navigator.mediaDevices.getUserMedia(
    {video: {width: 320, height: 240, frameRate: 15}, audio: false});
  const rooms = `${base}/video/workspaces/${ws}/rooms/${room}`;
  const peers = new Map();
  window.cameraLog = [];
  const signal = (message) => fetch(`${rooms}/webrtc/signal`, {method: "POST",
    headers: {"Content-Type": "application/json"}, body: JSON.stringify({client_id: me, message})});
  async function offer(consumer) {
    if (peers.has(consumer)) peers.get(consumer).close();
    const pc = new RTCPeerConnection({iceServers: []});
    peers.set(consumer, pc);
    for (const track of stream.getTracks()) pc.addTrack(track, stream);
    pc.onicecandidate = (e) => {
      if (e.candidate) {
        signal({type: "ice", candidate: e.candidate.toJSON(), target_consumer: consumer});
      }
    };
    pc.onconnectionstatechange = () => window.cameraLog.push(`${consumer} ${pc.connectionState}`);
    const description = await pc.createOffer();
    await pc.setLocalDescription(description);
    await signal({type: "offer", sdp: description.sdp, target_consumer: consumer});
  }
  const socket = new WebSocket(`${rooms.replace(/^http/, "ws")}/ws`);
  socket.onmessage = async (event) => {
    const msg = JSON.parse(event.data);
    if (msg.type === "joined") {
      const info = await (await fetch(rooms)).json();
      for (const consumer of info.room.participants.consumers) await offer(consumer);
    } else if (msg.type === "participant_joined" && msg.role === "consumer") {
      await offer(msg.participant_id);
    } else if (msg.type === "webrtc_answer" && peers.has(msg.from_consumer)) {
      await peers.get(msg.from_consumer).setRemoteDescription(msg.answer);
    } else if (msg.type === "webrtc_ice" && peers.has(msg.from_consumer)) {
      await peers.get(msg.from_consumer).addIceCandidate(msg.candidate);
    }
  };
  await new Promise((resolve, reject) => { socket.onerror = reject; socket.onopen = () => {
    socket.send(JSON.stringify({participant_id: me, role: "producer"})); resolve(null); }; });
}
"""


@pytest.fixture
async def browser() -> AsyncIterator[Browser]:
    async with chromium(FAKE_CAMERA_ARGS) as launched:
        yield launched


@pytest.fixture
def page_server() -> Iterator[str]:
    with blank_page() as url:
        yield url


async def test_a_browser_camera_reaches_the_consumer_in_both_join_orders(
    browser: Browser, page_server: str, arena: ArenaServerThread, rest: ArenaRest,
    workspace: str
) -> None:
    room = await rest.create_video_room(workspace, "browser-cam")
    first = VideoConsumer(arena.base_url, workspace, room, pid("consumer"))
    page = await browser.new_page()
    await page.goto(page_server)  # another origin: the room server allows any (CORS)
    async with running(first):  # the session is there before the page's camera
        await page.evaluate(PRODUCER_JS, [arena.base_url, workspace, room, pid("page-camera")])
        await eventually(lambda: first.stats.frames >= 10, "10 frames from the browser", 30)
        frame = first.latest()
        assert frame is not None and frame.rgb.shape == (240, 320, 3), (
            None if frame is None else frame.rgb.shape)
        assert first.stats.remote_candidates >= 1  # they came trickled, not in the offer
    # A consumer that joins after the camera (a session created later, or re-joining).
    later = VideoConsumer(arena.base_url, workspace, room, pid("consumer"))
    async with running(later):
        await eventually(lambda: later.stats.frames >= 10, "10 frames after joining late", 30)
        assert later.stats.offers == 1
    log = await page.evaluate("window.cameraLog")
    assert sum(entry.endswith(" connected") for entry in log) == 2, json.dumps(log)
    await page.close()
