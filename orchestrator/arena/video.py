"""Video consumer: one camera's room, received over WebRTC, kept as the latest RGB frame.

The producer always offers (one peer connection per consumer). We add a receive-only video
transceiver, answer from `pc.localDescription` after ICE gathering (so the answer carries our
candidates: stock Python producers put no candidates in their offers and never trickle) and
also accept trickled candidates (browsers). Frames are never queued for the caller: a reader
task overwrites a single slot, `latest()` returns it.

Recovery: the producer leaving closes its peer connection and we wait for its next offer (a
producer offers to the consumers present when it joins); a failed connection, a track that
ends, or a connection that does not come up in time makes us re-join the room (the producer
offers to every consumer that joins); a dropped socket is reopened with backoff.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import av
import numpy as np
from aiortc import (
    MediaStreamTrack,
    RTCIceCandidate,
    RTCIceServer,
    RTCPeerConnection,
    RTCRtpTransceiver,
    RTCSessionDescription,
)
from aiortc.mediastreams import MediaStreamError

from orchestrator.arena.candidates import EndOfCandidates, add_candidate, ice_candidate
from orchestrator.arena.messages import (
    EmergencyStop,
    ErrorMessage,
    ParticipantEvent,
    VideoMessage,
    WebRTCIce,
    WebRTCOffer,
    deliver_emergency_stop,
)
from orchestrator.arena.stream_clock import SenderClock, StreamTiming
from orchestrator.arena.webrtc import Role, RoomStats, VideoRoomClient, close_pc, rtc_configuration

logger = logging.getLogger(__name__)

_MAX_EARLY_CANDIDATES = 64


@dataclass(frozen=True, slots=True)
class Frame:
    rgb: np.ndarray  # H x W x 3 uint8
    arrived_at: float  # time.monotonic() when the decoded frame reached us
    seq: int  # 1, 2, ... over the consumer's lifetime
    # time.monotonic() of its capture from the stream's own timing (RTCP sender reports,
    # see stream_clock), or None when the stream gives no trustworthy one.
    captured_at: float | None = None


@dataclass
class VideoStats(RoomStats):
    frames: int = 0
    connected: bool = False  # a peer connection to a producer is up
    offers: int = 0
    remote_candidates: int = 0  # trickled candidates received
    peer_failures: int = 0
    stalls: int = 0  # connections re-built because no frame came for stall_timeout_s
    emergency_stops: int = 0


@dataclass(eq=False)
class _Peer:
    producer_id: str
    pc: RTCPeerConnection
    transceiver: RTCRtpTransceiver = field(init=False)
    timing: StreamTiming | None = None
    remote_set: bool = False
    pending: list[RTCIceCandidate | EndOfCandidates] = field(default_factory=list)
    connected: asyncio.Event = field(default_factory=asyncio.Event)


class VideoConsumer(VideoRoomClient):
    """`await start()`, then `latest()` any time; `await stop()` cleans everything up."""

    role: Role = "consumer"

    def __init__(
        self,
        base_url: str,
        workspace: str,
        room_id: str,
        participant_id: str,
        *,
        timeout_s: float = 5.0,
        connect_timeout_s: float = 10.0,
        stall_timeout_s: float | None = 10.0,
        backoff_initial_s: float = 0.2,
        backoff_max_s: float = 5.0,
        ice_servers: Sequence[RTCIceServer] = (),
        on_emergency_stop: Callable[[str], None] | None = None,
        sender_clock: SenderClock = "auto",
    ) -> None:
        self.stats = VideoStats()
        # Whether the producer's clock dates our frames: "auto" trusts a producer on this
        # host only, "trust" any (NTP-synced lab machines), "ignore" none.
        self.sender_clock: SenderClock = sender_clock
        # Called synchronously with the reason when anyone in the room sends emergency_stop.
        self.on_emergency_stop = on_emergency_stop
        super().__init__(
            base_url, workspace, room_id, participant_id, timeout_s=timeout_s,
            backoff_initial_s=backoff_initial_s, backoff_max_s=backoff_max_s,
            ice_servers=ice_servers, stats=self.stats,
        )
        self.connect_timeout_s = connect_timeout_s
        self.stall_timeout_s = stall_timeout_s  # None: never re-join over missing frames
        self._latest: Frame | None = None
        # The newest decoded frame, converted to RGB only when someone asks for it: a
        # consumer that looks rarely never pays for the frames it skips.
        self._pending: tuple[av.VideoFrame, float, int, float | None] | None = None
        self._seq = 0
        self._peers: dict[str, _Peer] = {}
        self._early: dict[str, list[RTCIceCandidate | EndOfCandidates]] = {}

    def latest(self) -> Frame | None:
        """The newest decoded frame (None until the first one)."""
        pending, self._pending = self._pending, None
        if pending is not None:
            frame, arrived, seq, captured = pending
            try:
                # One swscale thread: PyAV keeps a converter per thread (thread-local), and
                # one with slice threads, freed in a child forked by another thread (Ray
                # starting its daemons), waits forever for threads the fork did not copy.
                # Cost here: 0.025 vs 0.06 ms at 128x96, 0.19-0.23 vs 0.11-0.21 ms at
                # 640x480, once per observation taken.
                rgb = frame.to_ndarray(format="rgb24", threads=1)
            except ValueError as exc:  # e.g. a pixel format PyAV cannot convert
                logger.warning("video %s: unusable frame: %r", self.room_id, exc)
            else:
                self._latest = Frame(rgb=rgb, arrived_at=arrived, seq=seq, captured_at=captured)
        return self._latest

    def newest_arrival(self) -> float | None:
        """When the newest frame arrived, without converting it (the watchdog asks every
        tick; the pixels are needed only when an observation is taken)."""
        pending = self._pending
        if pending is not None:
            return pending[1]
        return None if self._latest is None else self._latest.arrived_at

    def describe(self) -> dict[str, Any]:
        """Status for APIs and logs: ids, counters, age of the newest frame."""
        newest = self.newest_arrival()
        return {
            "room_id": self.room_id, "participant_id": self.participant_id,
            **asdict(self.stats),
            "last_frame_age_s": None if newest is None else time.monotonic() - newest,
        }

    # -- messages ---------------------------------------------------------------------------

    async def _handle(self, msg: VideoMessage) -> bool:
        if isinstance(msg, WebRTCOffer):
            if msg.offer.type != "offer" or not msg.from_producer:
                return False
            await self._on_offer(msg.from_producer, msg.offer.sdp)
        elif isinstance(msg, WebRTCIce):
            if not msg.from_producer:
                return False
            candidate = ice_candidate(msg)
            if candidate is None:
                return False
            await self._on_candidate(msg.from_producer, candidate)
        elif isinstance(msg, ParticipantEvent):
            if msg.type == "participant_left":
                await self._on_left(msg.participant_id)
        elif isinstance(msg, EmergencyStop):
            self._on_emergency_stop(msg)
        elif isinstance(msg, ErrorMessage):
            logger.warning("video %s: server error: %r", self.room_id, msg.message)
        return True

    def _on_emergency_stop(self, msg: EmergencyStop) -> None:
        self.stats.emergency_stops += 1
        deliver_emergency_stop(msg, self.on_emergency_stop, self.room_id)

    async def _on_left(self, participant: str) -> None:
        self._early.pop(participant, None)
        peer = self._peers.pop(participant, None)
        if peer is not None:
            logger.info("video %s: producer %s left", self.room_id, participant)
            await close_pc(peer.pc, self.timeout_s)
            self.stats.connected = False

    async def _on_offer(self, producer: str, sdp: str) -> None:
        self.stats.offers += 1
        old = self._peers.pop(producer, None)
        if old is not None:
            await close_pc(old.pc, self.timeout_s)
        pc = RTCPeerConnection(rtc_configuration(self.ice_servers))
        peer = _Peer(producer, pc)
        peer.pending.extend(self._early.pop(producer, []))
        self._peers[producer] = peer
        peer.transceiver = pc.addTransceiver("video", direction="recvonly")
        # Hooked before the connection comes up, so the first sender report is seen.
        peer.timing = StreamTiming(peer.transceiver.receiver, self.sender_clock)

        @pc.on("track")
        def on_track(track: MediaStreamTrack) -> None:
            # Only our transceiver's track: it takes the offer's first video section.
            if track is peer.transceiver.receiver.track:
                self._spawn(self._read_track(peer, track))

        @pc.on("connectionstatechange")
        def on_state() -> None:
            state = pc.connectionState
            logger.info("video %s: peer %s %s", self.room_id, producer, state)
            if self._peers.get(producer) is not peer:
                return
            if state == "connected":
                peer.connected.set()
                self.stats.connected = True
            elif state == "failed":
                self.stats.connected = False
                self.stats.peer_failures += 1
                self.rejoin(f"peer connection to {producer} failed")

        self._spawn(self._negotiate(peer, sdp))

    async def _negotiate(self, peer: _Peer, sdp: str) -> None:
        pc = peer.pc
        try:
            async with asyncio.timeout(self.timeout_s):
                await pc.setRemoteDescription(RTCSessionDescription(sdp=sdp, type="offer"))
                if peer.transceiver.mid is None:
                    raise ValueError("the offer has no video")
                # Decline any other section (audio, a second video): nobody would read its
                # frames, and aiortc would queue them without bound.
                for transceiver in pc.getTransceivers():
                    if transceiver is not peer.transceiver:
                        transceiver.direction = "inactive"
                peer.remote_set = True
                for candidate in peer.pending:
                    await add_candidate(pc, candidate)
                peer.pending.clear()
                # aiortc gathers inside setLocalDescription: localDescription has candidates.
                await pc.setLocalDescription(await pc.createAnswer())
        except TimeoutError:
            self._negotiation_failed(peer, "answering timed out")
            return
        except OSError as exc:  # the network (gathering, a socket), not the SDP: try again
            self._negotiation_failed(peer, repr(exc))
            return
        except Exception as exc:  # aiortc raises assorted types on an SDP it cannot use
            if self._peers.get(peer.producer_id) is not peer:
                return  # closed meanwhile (a newer offer, the producer left): not the SDP
            logger.warning("video %s: unusable offer from %s: %r", self.room_id,
                           peer.producer_id, exc)
            self.stats.malformed += 1
            del self._peers[peer.producer_id]
            await close_pc(pc, self.timeout_s)
            return
        if self._peers.get(peer.producer_id) is not peer:
            return  # superseded by a newer offer while gathering: its answer would mislead
        answer = {"type": "answer", "sdp": pc.localDescription.sdp,
                  "target_producer": peer.producer_id}
        if not await self.signal(answer):
            self._negotiation_failed(peer, "answer not delivered")
            return
        try:
            async with asyncio.timeout(self.connect_timeout_s):
                await peer.connected.wait()
        except TimeoutError:
            self._negotiation_failed(peer, f"not connected within {self.connect_timeout_s} s")

    def _negotiation_failed(self, peer: _Peer, why: str) -> None:
        if self._peers.get(peer.producer_id) is peer:
            self.stats.peer_failures += 1
            self.rejoin(f"negotiation with {peer.producer_id} failed: {why}")

    async def _on_candidate(
        self, producer: str, candidate: RTCIceCandidate | EndOfCandidates
    ) -> None:
        if not isinstance(candidate, EndOfCandidates):
            self.stats.remote_candidates += 1
        peer = self._peers.get(producer)
        if peer is None:
            # Signals travel as separate HTTP requests: a candidate may overtake its offer.
            early = self._early.setdefault(producer, [])
            if len(early) < _MAX_EARLY_CANDIDATES:
                early.append(candidate)
        elif not peer.remote_set:
            peer.pending.append(candidate)
        else:
            await add_candidate(peer.pc, candidate)

    # -- media ------------------------------------------------------------------------------

    async def _read_track(self, peer: _Peer, track: MediaStreamTrack) -> None:
        why = "ended"
        while True:
            try:
                # The first frame too: a connection that comes up and never delivers one
                # (a producer whose camera never started) is rebuilt like a stalled one.
                async with asyncio.timeout(self.stall_timeout_s):
                    frame = await track.recv()
            except MediaStreamError:
                break
            except TimeoutError:
                # Connected but silent: a re-join gets a fresh offer, which may revive it.
                self.stats.stalls += 1
                why = f"stalled for {self.stall_timeout_s} s"
                break
            arrived = time.monotonic()
            if not isinstance(frame, av.VideoFrame):
                continue
            # Overwrite the slot: frames never wait for the caller.
            self._seq += 1
            captured = None if peer.timing is None else peer.timing.capture_time(frame.pts,
                                                                                 arrived)
            self._pending = (frame, arrived, self._seq, captured)
            self.stats.frames += 1
        if self._peers.get(peer.producer_id) is peer and not self._stopping:
            self.stats.connected = False
            self.rejoin(f"track from {peer.producer_id} {why}")

    async def _close_peers(self) -> None:
        peers = list(self._peers.values())
        self._peers.clear()
        self._early.clear()
        for peer in peers:
            await close_pc(peer.pc, self.timeout_s)
        self.stats.connected = False
