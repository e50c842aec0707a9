"""ICE candidates as the video rooms carry them: validated from trickled messages, read
from and stripped out of an SDP (as a browser trickles them), handed to aiortc."""

from __future__ import annotations

import logging
from typing import Any

from aiortc import RTCIceCandidate, RTCPeerConnection
from aiortc.sdp import candidate_from_sdp

from orchestrator.arena.messages import WebRTCIce

logger = logging.getLogger(__name__)


class EndOfCandidates:
    """Marker for a trickled end-of-candidates (an empty candidate string)."""


END_OF_CANDIDATES = EndOfCandidates()


def parse_candidate(obj: Any) -> RTCIceCandidate | EndOfCandidates | None:
    """A trickled `{candidate, sdpMid, sdpMLineIndex}` as aiortc wants it; None if malformed."""
    if not isinstance(obj, dict):
        return None
    text, mid, index = obj.get("candidate"), obj.get("sdpMid"), obj.get("sdpMLineIndex")
    if not isinstance(text, str) or len(text) > 1024:
        return None
    if mid is not None and not isinstance(mid, str):
        return None
    if index is not None and (not isinstance(index, int) or isinstance(index, bool) or index < 0):
        return None
    if mid is None and index is None:
        return None
    text = text.strip()
    if text.startswith("a="):
        text = text[2:]
    if text.startswith("candidate:"):
        text = text[len("candidate:") :]
    if not text:
        # Browsers signal end-of-candidates with an empty candidate.
        return END_OF_CANDIDATES
    try:
        candidate = candidate_from_sdp(text)
    except (AssertionError, ValueError, IndexError):
        return None
    candidate.sdpMid = mid
    candidate.sdpMLineIndex = index
    return candidate


def ice_candidate(msg: WebRTCIce) -> RTCIceCandidate | EndOfCandidates | None:
    """The candidate of a `webrtc_ice` message; a null candidate is how a browser says
    end-of-candidates. None if malformed."""
    if msg.candidate is None:
        return END_OF_CANDIDATES
    return parse_candidate(msg.candidate.model_dump())


def sdp_candidates(sdp: str) -> list[dict[str, Any]]:
    """The `a=candidate` lines of an SDP as trickle messages, the way a browser sends them."""
    out: list[dict[str, Any]] = []
    sections = sdp.split("\nm=")[1:]  # media sections, in m-line order
    for index, section in enumerate(sections):
        lines = [ln.strip() for ln in section.splitlines()]
        mid = next((ln[len("a=mid:") :] for ln in lines if ln.startswith("a=mid:")), None)
        out.extend(
            {"candidate": ln[2:], "sdpMid": mid, "sdpMLineIndex": index}
            for ln in lines
            if ln.startswith("a=candidate:")
        )
    return out


def strip_candidates(sdp: str) -> str:
    """An SDP without candidates, as a browser's first offer looks before trickling."""
    lines = [
        ln
        for ln in sdp.splitlines()
        if not ln.startswith("a=candidate:") and not ln.startswith("a=end-of-candidates")
    ]
    return "\r\n".join(lines) + "\r\n"


async def add_candidate(
    pc: RTCPeerConnection, candidate: RTCIceCandidate | EndOfCandidates
) -> None:
    try:
        await pc.addIceCandidate(None if isinstance(candidate, EndOfCandidates) else candidate)
    except ValueError as exc:  # e.g. a candidate after end-of-candidates
        logger.info("remote candidate rejected: %r", exc)
    except OSError as exc:  # e.g. aioice's mDNS socket: that candidate only, not the room
        logger.info("remote candidate unusable: %r", exc)
