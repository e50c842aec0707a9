"""Several Triton URLs: two real local Triton servers serving the same exported model;
one of them is killed (SIGKILL) and started again."""

from __future__ import annotations

import asyncio
import itertools
import time
import uuid
from collections.abc import Iterator

import numpy as np
import pytest

from orchestrator.triton.client import TritonClient
from orchestrator.triton.errors import TritonUnavailable
from orchestrator.triton.launcher import LocalTriton
from orchestrator.triton.replicas import ReplicatedTriton, make_triton, parse_urls
from tests.e2e.conftest import e2e_settings
from tests.support.arena import ArenaServerProcess
from tests.support.exports import ExportedRepository
from tests.support.orchestrator import run_orchestrator, wait_for
from tests.support.processes import stopped
from tests.support.rooms import robot_for
from tests.support.triton import random_observation


@pytest.fixture(scope="module")
def spare_triton(e2e_model: ExportedRepository, tmp_path_factory: pytest.TempPathFactory
                 ) -> Iterator[LocalTriton]:
    """A second replica of the e2e model, for killing."""
    from tests.support.triton import local_triton

    with local_triton(e2e_model.repository,
                      work_dir=tmp_path_factory.mktemp("spare_triton")) as server:
        yield server


def test_urls_parse_and_one_url_stays_a_plain_client() -> None:
    assert parse_urls(" a:1, b:2 ,") == ["a:1", "b:2"]
    with pytest.raises(ValueError, match="no Triton address"):
        parse_urls(" , ")
    assert type(make_triton("a:1")) is TritonClient
    replicated = make_triton("a:1,b:2", preferred=3)
    assert isinstance(replicated, ReplicatedTriton)
    assert replicated.order() == [1, 0]  # worker 3 of 2 replicas prefers the second


async def test_a_replica_going_away_costs_no_request(
    spare_triton: LocalTriton, e2e_triton: LocalTriton, e2e_model: ExportedRepository
) -> None:
    if not spare_triton.is_running():
        spare_triton.start()
    contract = e2e_model.result.contract
    client = ReplicatedTriton([spare_triton.grpc_url, e2e_triton.grpc_url], timeout_s=5.0)
    try:
        obs = random_observation(contract, seed=1)
        first = await client.infer(contract.name, obs)
        before = (await client.replicas[0].statistics(contract.name)).inference_count
        assert before >= 1  # the preferred replica answered
        spare_triton.kill()
        started = time.monotonic()
        second = await client.infer(contract.name, obs)  # retried on the other replica
        took = time.monotonic() - started
        np.testing.assert_allclose(first, second, atol=1e-5)
        assert client.failovers == 1
        await client.infer(contract.name, obs)  # straight to the live one: no failover
        assert client.failovers == 1
        assert client.order()[0] == 1
        assert await client.is_server_ready()
        print(f"\nfailover request took {took * 1000:.0f} ms")

        spare_triton.start()
        await asyncio.sleep(client.cooldown_s)
        # Back on the preferred replica (a fresh server) once its channel has reconnected:
        # gRPC's reconnect backoff decides when, so allow it a few requests.
        deadline = time.monotonic() + 20
        while True:
            await client.infer(contract.name, obs)
            after = await client.replicas[0].statistics(contract.name)
            if after.inference_count >= 1 or time.monotonic() > deadline:
                break
            await asyncio.sleep(0.5)
        assert after.inference_count >= 1
        stats = await client.statistics(contract.name)  # both replicas, added up
        assert stats.inference_count >= after.inference_count + 1
    finally:
        await client.close()


async def test_a_replica_that_hangs_costs_half_a_deadline_not_the_request(
    spare_triton: LocalTriton, e2e_triton: LocalTriton, e2e_model: ExportedRepository
) -> None:
    """A frozen replica (SIGSTOP: real) keeps its connections and answers nothing, unlike a
    dead one that refuses them at once: the retry must still have time to run."""
    if not spare_triton.is_running():
        spare_triton.start()
    contract = e2e_model.result.contract
    obs = random_observation(contract, seed=2)
    client = ReplicatedTriton([spare_triton.grpc_url, e2e_triton.grpc_url], timeout_s=4.0)
    try:
        await client.infer(contract.name, obs)  # connected to both, metadata known
        await client.replicas[1].infer(contract.name, obs)
        with stopped(spare_triton.pid):
            await client.infer(contract.name, obs)  # answered by the other replica
            assert client.failovers == 1
            await client.infer(contract.name, obs)  # the frozen one cools down: no wait
            assert client.failovers == 1
    finally:
        await client.close()


async def test_every_request_has_a_deadline_with_all_replicas_down(
    e2e_model: ExportedRepository,
) -> None:
    from arena_server.launcher import free_port

    dead = [f"127.0.0.1:{free_port()}", f"127.0.0.1:{free_port()}"]
    client = ReplicatedTriton(dead, timeout_s=1.0)
    try:
        started = time.monotonic()
        with pytest.raises(TritonUnavailable):
            await client.infer(e2e_model.result.contract.name,
                               random_observation(e2e_model.result.contract), timeout_s=1.0)
        assert time.monotonic() - started < 3.0
    finally:
        await client.close()


async def test_a_session_keeps_publishing_when_its_replica_dies(
    spare_triton: LocalTriton, e2e_triton: LocalTriton, arena: ArenaServerProcess
) -> None:
    if not spare_triton.is_running():
        spare_triton.start()
    urls = f"{spare_triton.grpc_url},{e2e_triton.grpc_url}"  # the spare one is preferred
    settings = e2e_settings(e2e_triton, triton_url=urls, triton_timeout_s=2.0)
    async with run_orchestrator(settings) as orch:
        sid = f"rep-{uuid.uuid4().hex[:6]}"
        created = await orch.create_session(
            session_id=sid, policy_path="tiny_act", camera_names=["front"],
            arena_server_url=arena.base_url, max_step=1e6)
        async with robot_for(created, arena.base_url) as robot:
            assert (await orch.http.post(f"/sessions/{sid}/start")).status_code == 200
            await wait_for(lambda: len(robot.received) >= 30, 30, "commands")
            killed_at = time.monotonic()
            spare_triton.kill()
            await asyncio.sleep(3.0)
            times = [c.arrived_at for c in robot.received if c.arrived_at >= killed_at - 0.5]
            gap = max(b - a for a, b in itertools.pairwise(times))
            print(f"\nlongest gap between commands across the replica's death: "
                  f"{gap * 1000:.0f} ms")
            status = await orch.status(sid)
            assert status["status"] == "running"
            assert len(times) >= 45  # ~30 Hz went on
            assert gap < 1.0, gap
        assert (await orch.http.delete(f"/sessions/{sid}")).status_code == 200
    spare_triton.start()
