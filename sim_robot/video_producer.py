"""A camera producer in a video room, behaving like the stock producers of the protocol.

It offers to each consumer that joins, and to the consumers already present right after its
own join (one peer connection per consumer). ICE behaviours (``ice_mode``), because all
exist in the field and a consumer must cope with each:

* ``"gathered"``: the offer is the gathered local description, candidates included;
* ``"trickle"`` (like browsers): the offer carries no candidates; they follow one by one as
  ``ice`` signals;
* ``"none"`` (like the stock aiortc producer): the offer carries no candidates and nothing is
  trickled, so only a consumer whose answer carries candidates can connect.

``use_answer_candidates=False`` makes the producer ignore the candidates in the consumer's
answer, like a peer that cannot reach the consumer's addresses: the connection then depends
on the consumer using the producer's (trickled) candidates. Tests use it to prove that.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Literal

from aiortc import RTCIceCandidate, RTCIceServer, RTCPeerConnection, RTCSessionDescription

from orchestrator.arena.candidates import (
    EndOfCandidates,
    add_candidate,
    ice_candidate,
    sdp_candidates,
    strip_candidates,
)
from orchestrator.arena.messages import ParticipantEvent, VideoMessage, WebRTCAnswer, WebRTCIce
from orchestrator.arena.rest import ArenaError, ArenaUnavailable
from orchestrator.arena.webrtc import Role, RoomStats, VideoRoomClient, close_pc, rtc_configuration
from sim_robot.camera import CameraSource, CameraTrack

logger = logging.getLogger(__name__)

IceMode = Literal["gathered", "trickle", "none"]


@dataclass
class ProducerStats(RoomStats):
    offers: int = 0
    answers: int = 0
    connected_peers: int = 0
    candidates_sent: int = 0


@dataclass(eq=False)
class _Peer:
    consumer_id: str
    pc: RTCPeerConnection
    remote_set: bool = False
    pending: list[RTCIceCandidate | EndOfCandidates] = field(default_factory=list)
    connected: bool = False
    from_listing: bool = False  # offered because the consumer was present when we joined


class CameraProducer(VideoRoomClient):
    role: Role = "producer"

    def __init__(
        self,
        base_url: str,
        workspace: str,
        room_id: str,
        participant_id: str,
        source: CameraSource,
        *,
        ice_mode: IceMode = "gathered",
        use_answer_candidates: bool = True,
        timeout_s: float = 5.0,
        backoff_initial_s: float = 0.2,
        backoff_max_s: float = 5.0,
        ice_servers: Sequence[RTCIceServer] = (),
    ) -> None:
        self.stats = ProducerStats()
        super().__init__(
            base_url, workspace, room_id, participant_id, timeout_s=timeout_s,
            backoff_initial_s=backoff_initial_s, backoff_max_s=backoff_max_s,
            ice_servers=ice_servers, stats=self.stats,
        )
        self.source = source
        if ice_mode not in ("gathered", "trickle", "none"):
            raise ValueError(f"unknown ice_mode {ice_mode!r}")
        self.ice_mode = ice_mode
        self.use_answer_candidates = use_answer_candidates
        self._peers: dict[str, _Peer] = {}

    async def _on_joined(self) -> None:
        self._spawn(self._offer_to_present())

    async def _offer_to_present(self) -> None:
        try:
            room = await self.rest.get_video_room(self.workspace, self.room_id)
            consumers = room["participants"]["consumers"]
        except (ArenaError, ArenaUnavailable, KeyError, TypeError) as exc:
            logger.warning("camera %s: cannot list consumers: %r", self.room_id, exc)
            return
        for consumer in consumers:
            if isinstance(consumer, str) and consumer not in self._peers:
                await self._offer(consumer, from_listing=True)

    async def _handle(self, msg: VideoMessage) -> bool:
        if isinstance(msg, ParticipantEvent):
            if msg.type == "participant_joined" and msg.role == "consumer":
                peer = self._peers.get(msg.participant_id)
                # Our post-join listing may already have seen this very join and offered;
                # a second offer would cross the first one's answer.
                if peer is None or not peer.from_listing or peer.remote_set:
                    self._spawn(self._offer(msg.participant_id))
                else:
                    peer.from_listing = False  # only once: a later join gets a new offer
            elif msg.type == "participant_left":
                peer = self._peers.pop(msg.participant_id, None)
                if peer is not None:
                    await self._drop(peer)
        elif isinstance(msg, WebRTCAnswer):
            if msg.answer.type != "answer" or not msg.from_consumer:
                return False
            self._spawn(self._on_answer(msg.from_consumer, msg.answer.sdp))
        elif isinstance(msg, WebRTCIce):
            if not msg.from_consumer:
                return False
            candidate = ice_candidate(msg)
            if candidate is None:
                return False
            peer = self._peers.get(msg.from_consumer)
            if peer is not None:
                if peer.remote_set:
                    await add_candidate(peer.pc, candidate)
                else:
                    peer.pending.append(candidate)
        return True  # everything else needs no action from a producer

    async def _offer(self, consumer: str, *, from_listing: bool = False) -> None:
        old = self._peers.pop(consumer, None)
        if old is not None:
            await self._drop(old)
        pc = RTCPeerConnection(rtc_configuration(self.ice_servers))
        peer = _Peer(consumer, pc, from_listing=from_listing)
        self._peers[consumer] = peer
        pc.addTransceiver(CameraTrack(self.source), direction="sendonly")

        @pc.on("connectionstatechange")
        def on_state() -> None:
            state = pc.connectionState
            logger.info("camera %s: peer %s %s", self.room_id, consumer, state)
            if state == "connected" and not peer.connected:
                peer.connected = True
                self.stats.connected_peers += 1
            elif state in ("failed", "closed") and self._peers.get(consumer) is peer:
                # The consumer re-joins after a failure, and gets a fresh offer then.
                del self._peers[consumer]
                self._spawn(self._drop(peer))

        try:
            async with asyncio.timeout(self.timeout_s * 2):
                offer = await pc.createOffer()
                await pc.setLocalDescription(offer)  # gathers candidates
        except TimeoutError:
            logger.warning("camera %s: offer to %s timed out", self.room_id, consumer)
            if self._peers.get(consumer) is peer:
                del self._peers[consumer]
                await self._drop(peer)
            return
        gathered = pc.localDescription.sdp
        sdp = gathered if self.ice_mode == "gathered" else strip_candidates(offer.sdp)
        self.stats.offers += 1
        await self.signal({"type": "offer", "sdp": sdp, "target_consumer": consumer})
        if self.ice_mode == "trickle":
            for candidate in sdp_candidates(gathered):
                self.stats.candidates_sent += 1
                await self.signal(
                    {"type": "ice", "candidate": candidate, "target_consumer": consumer}
                )

    async def _on_answer(self, consumer: str, sdp: str) -> None:
        peer = self._peers.get(consumer)
        if peer is None or peer.remote_set:
            logger.info("camera %s: unexpected answer from %s", self.room_id, consumer)
            return
        if not self.use_answer_candidates:
            sdp = strip_candidates(sdp)
        try:
            async with asyncio.timeout(self.timeout_s):
                await peer.pc.setRemoteDescription(RTCSessionDescription(sdp=sdp, type="answer"))
        except Exception as exc:  # aiortc raises assorted types on an SDP it cannot use
            logger.warning("camera %s: bad answer from %s: %r", self.room_id, consumer, exc)
            return
        peer.remote_set = True
        self.stats.answers += 1
        for candidate in peer.pending:
            await add_candidate(peer.pc, candidate)
        peer.pending.clear()

    async def drop_peer_connections(self) -> int:
        """Close every peer connection but stay in the room: a media failure, for tests.

        Consumers see their connection end and must rebuild it (by re-joining, which makes
        this producer offer again). Returns how many connections were closed.
        """
        peers = list(self._peers.values())
        for peer in peers:
            await peer.pc.close()
        return len(peers)

    async def _drop(self, peer: _Peer) -> None:
        if peer.connected:
            peer.connected = False
            self.stats.connected_peers -= 1
        await close_pc(peer.pc, self.timeout_s)

    async def _close_peers(self) -> None:
        peers = list(self._peers.values())
        self._peers.clear()
        for peer in peers:
            await self._drop(peer)
