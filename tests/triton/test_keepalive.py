"""gRPC keepalive (ORCHESTRATOR_TRITON_KEEPALIVE_S) against the local Triton, for real.

A Triton host lost without closing its connections (power, a cable, a partition) leaves a
channel that looks connected for TCP's minutes. A SIGSTOPped server is the same to its
clients on loopback: the connection stays open and nothing answers, pings included. The
channel's state is read through tritonclient's private ``_channel``: nothing public says
whether gRPC still trusts the connection."""

from __future__ import annotations

import asyncio
import time

import grpc

from orchestrator.triton.client import TritonClient
from orchestrator.triton.launcher import LocalTriton
from tests.support.processes import stopped


def _channel(client: TritonClient) -> grpc.aio.Channel:
    return client._grpc()._channel


async def _leaves_ready(client: TritonClient, within_s: float) -> float | None:
    """Seconds until the channel left READY, or None if it stayed READY throughout."""
    channel, began = _channel(client), time.monotonic()
    assert channel.get_state() == grpc.ChannelConnectivity.READY
    try:
        await asyncio.wait_for(channel.wait_for_state_change(grpc.ChannelConnectivity.READY),
                               within_s)
    except TimeoutError:
        return None
    return time.monotonic() - began


async def test_the_local_server_takes_pings_as_often_as_asked(triton: LocalTriton) -> None:
    """Without its ping flags the server answers pings every 0.2 s with a GOAWAY
    ("too_many_pings") after a few, and the channel drops its connection."""
    if not triton.is_running():
        triton.start()
    async with TritonClient(triton.grpc_url, keepalive_s=0.2) as client:
        assert await client.is_server_ready(timeout_s=5)
        assert await _leaves_ready(client, 4.0) is None  # idle, pinged ~20 times
        assert await client.is_server_ready(timeout_s=5)


async def test_keepalive_gives_up_on_a_server_that_stopped_answering(
    triton: LocalTriton,
) -> None:
    """With keepalive the dead connection is dropped within about two periods (pinged,
    unanswered); without it, gRPC goes on trusting it. After the server is back the
    same client answers again on a new connection."""
    if not triton.is_running():
        triton.start()
    async with (TritonClient(triton.grpc_url, keepalive_s=0.5) as pinging,
                TritonClient(triton.grpc_url) as trusting):
        assert await pinging.is_server_ready(timeout_s=5)
        assert await trusting.is_server_ready(timeout_s=5)
        with stopped(triton.pid):
            took = await _leaves_ready(pinging, 10.0)
            assert took is not None, "a frozen server's connection was still trusted after 10 s"
            assert _channel(trusting).get_state() == grpc.ChannelConnectivity.READY
        assert await pinging.is_server_ready(timeout_s=10)


def test_every_replica_is_pinged_as_set() -> None:
    from orchestrator.triton.replicas import ReplicatedTriton, make_triton

    one = make_triton("127.0.0.1:1", keepalive_s=3.0)
    several = make_triton("127.0.0.1:1,127.0.0.1:2", keepalive_s=3.0)
    assert one.keepalive_s == 3.0
    assert isinstance(several, ReplicatedTriton)
    assert [r.keepalive_s for r in several.replicas] == [3.0, 3.0]
