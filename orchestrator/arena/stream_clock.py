"""A video frame's capture time from the stream's own timing (RTP + RTCP sender reports).

Every RTP packet carries a media timestamp (90 kHz for video); each RTCP sender report
(SR) pairs one RTP timestamp with the sender's wall clock (NTP format) at that moment. A
frame's sender time is then ``ntp_sr - (rtp_sr - rtp_frame) / 90000``. aiortc stamps its
SR pair when the packet leaves, after encoding, and its RTP timestamps follow the track's
``pts``: for a live camera the estimate is the capture plus that frame's delay to the
wire (drawing, encoding, a busy sender's queue). That delay varies per report, never goes
below zero, and the media clock runs with the wall clock, so the report that dates a frame
earliest (of the last ``reports`` ones) is the one nearest the capture: we use it.

The sender's wall clock means something here only when it agrees with ours. We trust it
when the peer is on this host (every host candidate it offers carries one of our own
addresses: loopback or one of this machine's interfaces) or when told to (lab machines
kept in sync by NTP/PTP); a remote peer is never trusted by default. Even a trusted
estimate is dropped when it is absurd (after the arrival, or more than ``max_delay_s``
before it): the caller then falls back to the arrival time minus a configured delay.

What aiortc 1.16 exposes: ``RTCRtpReceiver`` handles SRs in ``_handle_rtcp_packet`` (only
the NTP half reaches ``getStats()``), and decoded frames carry ``pts`` = RTP timestamp
minus the first frame's (its private timestamp mapper's ``_origin``). Both are read
through guarded hooks; without them there is no stream timing and the fallback applies.
"""

from __future__ import annotations

import ipaddress
import logging
import time
from collections import deque
from collections.abc import Iterable
from typing import Any, Literal

logger = logging.getLogger(__name__)

SenderClock = Literal["auto", "trust", "ignore"]

_NTP_UNIX_OFFSET = 2_208_988_800  # seconds from 1900-01-01 to 1970-01-01
_VIDEO_CLOCK = 90_000


def ntp_to_unix(ntp: int) -> float:
    return (ntp >> 32) - _NTP_UNIX_OFFSET + (ntp & 0xFFFFFFFF) / 2**32


def sender_time(ntp_sr: int, rtp_sr: int, rtp_frame: int, clock_rate: int = _VIDEO_CLOCK
                ) -> float:
    """Sender wall time (unix seconds) of the frame stamped ``rtp_frame``, from one SR."""
    diff = (rtp_sr - rtp_frame) % (1 << 32)
    if diff >= 1 << 31:  # the frame is newer than the report
        diff -= 1 << 32
    return ntp_to_unix(ntp_sr) - diff / clock_rate


def same_host(remote_addresses: Iterable[str], local_addresses: Iterable[str]) -> bool:
    """True when every address the peer offered is one of ours (at least one given)."""
    local: set[str] = set()
    for address in local_addresses:
        local.add(_normal(address))
    remote = [_normal(a) for a in remote_addresses]
    if not remote:
        return False
    return all(a in local or _is_loopback(a) for a in remote)


def _normal(address: str) -> str:
    try:
        return str(ipaddress.ip_address(address.split("%")[0]))
    except ValueError:
        return address


def _is_loopback(address: str) -> bool:
    try:
        return ipaddress.ip_address(address).is_loopback
    except ValueError:
        return False


class StreamTiming:
    """One receiver's SR pairs and what it needs to date its frames."""

    def __init__(self, receiver: Any, mode: SenderClock = "auto", max_delay_s: float = 2.0,
                 reports: int = 20) -> None:
        self.mode = mode
        self.max_delay_s = max_delay_s
        self._receiver = receiver
        self._sr: deque[tuple[int, int]] = deque(maxlen=reports)  # (ntp, rtp) of recent SRs
        self._trusted: bool | None = None if mode == "auto" else mode == "trust"
        self.rejected = 0  # estimates dropped as absurd (clocks that disagree)
        handle = getattr(receiver, "_handle_rtcp_packet", None)
        if mode != "ignore" and callable(handle):
            async def hooked(packet: Any) -> None:
                info = getattr(packet, "sender_info", None)
                if info is not None and info.ntp_timestamp:  # 0: nothing was sent yet
                    self._sr.append((int(info.ntp_timestamp), int(info.rtp_timestamp)))
                await handle(packet)

            receiver._handle_rtcp_packet = hooked

    def trusted(self) -> bool:
        if self._trusted is None:
            decided = self._peer_on_this_host()
            if decided is None:
                return False  # not connected yet: ask again with the next frame
            self._trusted = decided
            logger.info("video stream timing: sender clock %s",
                        "trusted (same host)" if decided else "not trusted (remote peer)")
        return self._trusted

    def _peer_on_this_host(self) -> bool | None:
        try:
            ice = self._receiver.transport.transport
            remote = [c.ip for c in ice.getRemoteCandidates() if c.type == "host"]
            local = [c.ip for c in ice.iceGatherer.getLocalCandidates()]
        except AttributeError:
            return None
        if not remote:
            return None
        return same_host(remote, local)

    def capture_time(self, pts: int | None, arrived_at: float) -> float | None:
        """Monotonic capture estimate of a frame with this ``pts`` (None: no usable one)."""
        if not self._sr or pts is None or not self.trusted():
            return None
        mapper = getattr(self._receiver, "_RTCRtpReceiver__timestamp_mapper", None)
        origin = getattr(mapper, "_origin", None)
        if not isinstance(origin, int):
            return None
        rtp = (pts + origin) % (1 << 32)
        wall = min(sender_time(ntp, rtp_sr, rtp) for ntp, rtp_sr in self._sr)
        captured = wall - (time.time() - time.monotonic())
        delay = arrived_at - captured
        if not -0.005 <= delay <= self.max_delay_s:
            self.rejected += 1
            return None
        return min(captured, arrived_at)


def url_on_this_host(url: str) -> bool:
    """True when ``url`` names this host by a loopback name or address (the room server's
    timestamps then come from our own wall clock)."""
    from urllib.parse import urlsplit

    host = (urlsplit(url).hostname or "").lower()
    return host == "localhost" or host.endswith(".localhost") or _is_loopback(host)


def wall_to_monotonic(iso: str | None, max_age_s: float = 2.0) -> float | None:
    """An ISO-8601 wall-clock stamp (a room server's ``timestamp``) on our monotonic clock;
    None when absent, unreadable, in the future or older than ``max_age_s`` (clocks that
    disagree)."""
    if not iso:
        return None
    from datetime import datetime

    try:
        stamp = datetime.fromisoformat(iso).timestamp()
    except (ValueError, TypeError, OverflowError):
        return None
    age = time.time() - stamp
    if not -0.005 <= age <= max_age_s:
        return None
    return time.monotonic() - max(0.0, age)
