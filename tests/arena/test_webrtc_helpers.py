"""Pure helpers of the WebRTC plumbing: candidate validation, SDP candidate handling."""

from __future__ import annotations

import pytest
from aiortc import RTCIceCandidate

from orchestrator.arena.candidates import (
    END_OF_CANDIDATES,
    parse_candidate,
    sdp_candidates,
    strip_candidates,
)
from orchestrator.arena.webrtc import backoff_delay, http_to_ws

SDP = (
    "v=0\r\no=- 1 1 IN IP4 0.0.0.0\r\ns=-\r\nt=0 0\r\n"
    "m=audio 9 UDP/TLS/RTP/SAVPF 0\r\nc=IN IP4 0.0.0.0\r\n"
    "a=candidate:a 1 udp 2130706431 10.0.0.1 5000 typ host\r\na=mid:au\r\n"
    "m=video 9 UDP/TLS/RTP/SAVPF 96\r\nc=IN IP4 0.0.0.0\r\na=mid:vi\r\n"
    "a=candidate:b 1 udp 2130706431 10.0.0.1 5002 typ host\r\n"
    "a=candidate:c 1 udp 1694498815 1.2.3.4 6000 typ srflx raddr 10.0.0.1 rport 5002\r\n"
    "a=end-of-candidates\r\n"
)


def test_parse_candidate_browser_form() -> None:
    c = parse_candidate({"candidate": "candidate:c 1 udp 1694498815 1.2.3.4 6000 typ srflx "
                         "raddr 10.0.0.1 rport 5002", "sdpMid": "0", "sdpMLineIndex": 0})
    assert isinstance(c, RTCIceCandidate)
    assert (c.ip, c.port, c.type, c.relatedAddress, c.relatedPort) == (
        "1.2.3.4", 6000, "srflx", "10.0.0.1", 5002)
    assert (c.sdpMid, c.sdpMLineIndex) == ("0", 0)


def test_empty_candidate_is_end_of_candidates() -> None:
    assert parse_candidate({"candidate": "", "sdpMid": "0"}) is END_OF_CANDIDATES


@pytest.mark.parametrize("obj", [
    None, "candidate:x", {"candidate": 5, "sdpMid": "0"},
    {"candidate": "candidate:1 1 udp 1 1.2.3.4 9 typ host"},  # no sdpMid / sdpMLineIndex
    {"candidate": "candidate:bogus", "sdpMid": "0"},
    {"candidate": "candidate:1 x udp 1 1.2.3.4 9 typ host", "sdpMid": "0"},
    {"candidate": "candidate:1 1 udp 1 1.2.3.4 9 typ host", "sdpMLineIndex": -1},
    {"candidate": "candidate:1 1 udp 1 1.2.3.4 9 typ host", "sdpMLineIndex": True},
    {"candidate": "candidate:1 1 udp 1 1.2.3.4 9 typ host", "sdpMid": 3},
    {"candidate": "x" * 2000, "sdpMid": "0"},
])
def test_malformed_candidates_give_none(obj: object) -> None:
    assert parse_candidate(obj) is None


def test_sdp_candidates_per_section_with_mid_and_index() -> None:
    got = sdp_candidates(SDP)
    assert [(c["candidate"].split()[0], c["sdpMid"], c["sdpMLineIndex"]) for c in got] == [
        ("candidate:a", "au", 0), ("candidate:b", "vi", 1), ("candidate:c", "vi", 1)]
    assert all(parse_candidate(c) is not None for c in got)


def test_strip_candidates() -> None:
    stripped = strip_candidates(SDP)
    assert "a=candidate" not in stripped and "end-of-candidates" not in stripped
    assert stripped.count("m=") == 2 and "a=mid:vi" in stripped


def test_backoff_grows_and_is_capped() -> None:
    assert 0.05 <= backoff_delay(0, 0.1, 5.0) <= 0.1
    assert all(backoff_delay(n, 0.1, 5.0) <= 5.0 for n in range(100))
    assert backoff_delay(10, 0.1, 5.0) >= 2.5


def test_http_to_ws() -> None:
    assert http_to_ws("http://h:8000/") == "ws://h:8000"
    assert http_to_ws("https://h") == "wss://h"
    with pytest.raises(ValueError):
        http_to_ws("h:8000")
