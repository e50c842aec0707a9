"""The gRPC channel's settings, and one request's time budget across the calls it makes."""

from __future__ import annotations

import asyncio
from typing import Any
from urllib.parse import urlsplit

from tritonclient.grpc import KeepAliveOptions

from orchestrator.triton.errors import InferenceTimeout

_LOCAL_HOSTS = {"127.0.0.1", "localhost", "::1"}
_GRPC_MAX_MESSAGE = 2**31 - 1


def is_local(url: str) -> bool:
    return (urlsplit("//" + url).hostname or "") in _LOCAL_HOSTS


def channel_args(keepalive_s: float = 0.0) -> list[tuple[str, Any]]:
    """``keepalive_s`` > 0: ping that often, idle or not, and give up on the connection when
    a ping is not answered within as long (at least 1 s)."""
    ping: list[tuple[str, Any]] = []
    if keepalive_s > 0:
        ms = max(1, round(keepalive_s * 1000))
        timeout_ms = max(1000, ms)
        keepalive = KeepAliveOptions(keepalive_time_ms=ms, keepalive_timeout_ms=timeout_ms,
                                     keepalive_permit_without_calls=True,
                                     http2_max_pings_without_data=0)
        # gRPC 1.85 waits for a ping's answer this long (default 1 min), whatever the
        # keepalive timeout says: measured against a SIGSTOPped server.
        ping = [("grpc.http2.ping_timeout_ms", timeout_ms)]
    else:
        keepalive = KeepAliveOptions()  # gRPC's defaults: no pings
    return [
        ("grpc.max_send_message_length", _GRPC_MAX_MESSAGE),
        ("grpc.max_receive_message_length", _GRPC_MAX_MESSAGE),
        ("grpc.keepalive_time_ms", keepalive.keepalive_time_ms),
        ("grpc.keepalive_timeout_ms", keepalive.keepalive_timeout_ms),
        ("grpc.keepalive_permit_without_calls", keepalive.keepalive_permit_without_calls),
        ("grpc.http2.max_pings_without_data", keepalive.http2_max_pings_without_data),
        # Reconnect quickly after a restart: gRPC's default backoff grows to 2 min,
        # and channels to one target otherwise share (and inherit) that backoff.
        ("grpc.initial_reconnect_backoff_ms", 100),
        ("grpc.min_reconnect_backoff_ms", 100),
        ("grpc.max_reconnect_backoff_ms", 1000),
        ("grpc.use_local_subchannel_pool", 1),
        *ping,
    ]


class Deadline:
    """What is left of one request's timeout, for each call it makes in turn (metadata,
    shared-memory registration, the inference): an answer past it is a stale one."""

    def __init__(self, what: str, timeout_s: float) -> None:
        self.what, self.timeout_s = what, timeout_s
        self._clock = asyncio.get_running_loop().time
        self._at = self._clock() + timeout_s

    def left(self) -> float:
        remaining = self._at - self._clock()
        if remaining <= 0:
            raise InferenceTimeout(f"{self.what}: no answer within {self.timeout_s:.3g} s")
        return remaining
