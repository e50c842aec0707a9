"""The Triton client against a real local tritonserver over gRPC on 127.0.0.1."""

from __future__ import annotations

import asyncio
import time
import uuid
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest

from orchestrator.triton.client import ModelStatistics, TritonClient
from orchestrator.triton.errors import (
    BadInput,
    InferenceTimeout,
    ModelNotReady,
    TritonBusy,
    TritonUnavailable,
)
from orchestrator.triton.launcher import LocalTriton
from orchestrator.triton.model_contract import ACTION_OUTPUT, STATE_INPUT, ModelContract
from orchestrator.triton.shm import SHM_DIR
from tests.support.processes import stopped
from tests.support.triton import random_observation
from tests.triton.conftest import MAIN, SLEEP_S, SLEEPY, SLEEPY_QUEUE1, SLEEPY_WIDE, SPARE


async def statistics_reaching(client: TritonClient, inferences: int) -> ModelStatistics:
    """Triton counts a request shortly after answering it: wait (bounded) for the count."""
    for _ in range(100):
        stats = await client.statistics(MAIN)
        if stats.inference_count >= inferences:
            return stats
        await asyncio.sleep(0.05)
    return stats


def reference(source_repo: Path, name: str, obs: dict[str, np.ndarray]) -> np.ndarray:
    session = ort.InferenceSession(str(source_repo / name / "1" / "model.onnx"))
    return np.asarray(session.run([ACTION_OUTPUT], obs)[0])


async def test_readiness_and_contract_come_from_triton(
    client: TritonClient, contract: ModelContract
) -> None:
    assert await client.is_server_ready()
    assert await client.is_model_ready(MAIN)
    assert not await client.is_model_ready("no_such_model")
    got = await client.contract(MAIN)
    assert got.cameras == ("front", "wrist")
    assert got.image_sizes == contract.image_sizes
    assert got.state_names == contract.state_names
    assert got.action_names == contract.action_names
    assert got.chunk_size == contract.chunk_size
    assert got.is_demo


@pytest.mark.parametrize("batch", [1, 5])
async def test_results_equal_onnxruntime_in_process(
    client: TritonClient, contract: ModelContract, source_repo: Path, batch: int
) -> None:
    obs = random_observation(contract, batch, seed=batch)
    action = await client.infer(MAIN, obs)
    assert action.shape == (batch, contract.chunk_size, contract.action_dim)
    assert action.dtype == np.float32
    np.testing.assert_allclose(action, reference(source_repo, MAIN, obs), rtol=1e-5, atol=1e-5)


async def test_shared_memory_and_plain_grpc_agree(
    client: TritonClient, shm_client: TritonClient, contract: ModelContract, source_repo: Path
) -> None:
    assert shm_client.uses_shared_memory and not client.uses_shared_memory
    for batch in (1, 3, 32):
        obs = random_observation(contract, batch, seed=100 + batch)
        plain, shm = await asyncio.gather(client.infer(MAIN, obs), shm_client.infer(MAIN, obs))
        np.testing.assert_array_equal(plain, shm)
        np.testing.assert_allclose(shm, reference(source_repo, MAIN, obs), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("shared_memory", [False, True])
async def test_concurrent_requests_are_batched(
    triton: LocalTriton, contract: ModelContract, source_repo: Path, shared_memory: bool
) -> None:
    async with TritonClient(triton.grpc_url, timeout_s=30.0, shared_memory=shared_memory) as c:
        before = await c.statistics(MAIN)
        observations = [random_observation(contract, 1, seed=i) for i in range(32)]
        actions = await asyncio.gather(*(c.infer(MAIN, obs) for obs in observations))
        after = await statistics_reaching(c, before.inference_count + 32)
    inferences = after.inference_count - before.inference_count
    executions = after.execution_count - before.execution_count
    assert inferences == 32
    assert executions < inferences  # the dynamic batcher merged requests
    assert max(after.batch_sizes) > 1
    assert sum(size * n for size, n in after.batch_sizes.items()) == after.inference_count
    for obs, action in zip(observations, actions, strict=True):  # each got its own answer back
        np.testing.assert_allclose(action, reference(source_repo, MAIN, obs), rtol=1e-5, atol=1e-5)


async def test_bad_inputs_are_rejected_before_sending(
    client: TritonClient, contract: ModelContract
) -> None:
    before = await client.statistics(MAIN)
    obs = random_observation(contract, 2, seed=0)
    state = obs[STATE_INPUT]
    bad_inputs = [
        {**obs, STATE_INPUT: state[:, :3]},  # wrong width
        {**obs, STATE_INPUT: state.astype(np.float64)},  # wrong dtype
        {**obs, STATE_INPUT: state[:1]},  # batch sizes disagree
        {k: v for k, v in obs.items() if k != STATE_INPUT},  # missing input
        {**obs, "observation.images.top": obs["observation.images.front"]},  # unknown input
    ]
    for inputs in bad_inputs:
        with pytest.raises(BadInput):
            await client.infer(MAIN, inputs)
    with pytest.raises(BadInput):
        await client.infer(MAIN, obs, output="no_such_output")
    assert (await client.statistics(MAIN)).inference_count == before.inference_count


async def test_server_side_rejection_is_bad_input(
    client: TritonClient, contract: ModelContract
) -> None:
    too_big = random_observation(contract, 33, seed=0)  # max_batch_size is 32
    with pytest.raises(BadInput, match="batch"):
        await client.infer(MAIN, too_big)
    assert (await client.infer(MAIN, random_observation(contract, 1))).shape[0] == 1


async def test_unknown_model_is_model_not_ready(
    client: TritonClient, contract: ModelContract
) -> None:
    with pytest.raises(ModelNotReady):
        await client.infer("no_such_model", random_observation(contract))
    with pytest.raises(ModelNotReady):
        await client.contract("no_such_model")


@pytest.mark.parametrize("shared_memory", [False, True])
async def test_late_answer_gives_inference_timeout(
    triton: LocalTriton, shared_memory: bool
) -> None:
    x = {"x": np.arange(2, dtype=np.float32)[None]}
    async with TritonClient(triton.grpc_url, shared_memory=shared_memory) as c:
        with pytest.raises(InferenceTimeout):
            await c.infer(SLEEPY, x, timeout_s=SLEEP_S / 5, output="y")
        np.testing.assert_array_equal(await c.infer(SLEEPY, x, timeout_s=30, output="y"), x["x"])


async def test_unload_then_load(client: TritonClient) -> None:
    obs = random_observation(await client.contract(SPARE), 1, seed=5)
    await client.infer(SPARE, obs)
    await client.unload_model(SPARE)
    try:
        assert not await client.is_model_ready(SPARE)
        with pytest.raises(ModelNotReady):
            await client.infer(SPARE, obs)
    finally:
        await client.load_model(SPARE)
    assert await client.is_model_ready(SPARE)
    assert (await client.infer(SPARE, obs)).shape == (1, 10, 6)


async def test_shared_memory_is_released_on_close(
    triton: LocalTriton, contract: ModelContract
) -> None:
    prefix = f"t_release_{uuid.uuid4().hex[:8]}"
    c = TritonClient(triton.grpc_url, shared_memory=True, shm_prefix=prefix)
    await c.infer(MAIN, random_observation(contract, 4))
    await c.infer(MAIN, random_observation(contract, 1))
    assert list(SHM_DIR.glob(prefix + "*"))
    control = TritonClient(triton.grpc_url)
    status = await control._call("status", "get_system_shared_memory_status")
    assert any(name.startswith(prefix) for name in status.regions)
    await c.close()
    status = await control._call("status", "get_system_shared_memory_status")
    await control.close()
    assert not any(name.startswith(prefix) for name in status.regions)
    assert not list(SHM_DIR.glob(prefix + "*"))


async def test_auto_shared_memory_on_loopback(triton: LocalTriton, contract: ModelContract) -> None:
    async with TritonClient(triton.grpc_url, shared_memory="auto") as local:
        assert local.uses_shared_memory
        obs = random_observation(contract, 2, seed=8)
        async with TritonClient(triton.grpc_url) as plain:
            expected = await plain.infer(MAIN, obs)
        np.testing.assert_array_equal(await local.infer(MAIN, obs), expected)
    remote = TritonClient("triton.example:8001", shared_memory="auto")
    assert not remote.uses_shared_memory
    await remote.close()


@pytest.mark.parametrize("shared_memory", [False, True])
async def test_a_call_in_flight_when_the_channel_is_reset_is_triton_unavailable(
    triton: LocalTriton, shared_memory: bool
) -> None:
    """Another call's failure closes the channel: the calls still on it fail as unavailable
    (retry later), not as a cancellation that escapes to the API as a 500."""
    x = {"x": np.arange(2, dtype=np.float32)[None]}
    async with TritonClient(triton.grpc_url, shared_memory=shared_memory) as c:
        await c.infer(SLEEPY, x, timeout_s=30, output="y")  # connected, regions registered
        in_flight = asyncio.create_task(c.infer(SLEEPY, x, timeout_s=30, output="y"))
        await asyncio.sleep(SLEEP_S / 4)
        await c._reset(c._generation)  # what a failed call does to the shared channel
        with pytest.raises(TritonUnavailable):
            await in_flight
        np.testing.assert_array_equal(await c.infer(SLEEPY, x, timeout_s=30, output="y"), x["x"])
        assert c.uses_shared_memory == shared_memory


async def test_a_request_given_up_on_never_writes_into_a_later_ones_memory(
    triton: LocalTriton,
) -> None:
    """Triton still runs a request the client stopped waiting for, and writes its output
    into the shared memory named in it when done: that region must not be handed to the
    next request meanwhile. Here the late output would land on the next request's second
    row (one row is 64 bytes, the next 64-byte block after it holds the first's output)."""
    first = {"x": np.full((1, 16), 7.0, dtype=np.float32)}
    second = {"x": np.arange(32, dtype=np.float32).reshape(2, 16)}
    prefix = f"t_abandon_{uuid.uuid4().hex[:8]}"
    c = TritonClient(triton.grpc_url, shared_memory=True, shm_prefix=prefix)
    await c.infer(SLEEPY_WIDE, second, timeout_s=30, output="y")  # a slot that fits both
    with pytest.raises(InferenceTimeout):
        await c.infer(SLEEPY_WIDE, first, timeout_s=SLEEP_S / 5, output="y")
    got = await c.infer(SLEEPY_WIDE, second, timeout_s=30, output="y")
    np.testing.assert_array_equal(got, second["x"])
    await c.close()  # the abandoned region too is unregistered once Triton is done with it
    async with TritonClient(triton.grpc_url) as control:
        status = await control._call("status", "get_system_shared_memory_status")
    assert not any(name.startswith(prefix) for name in status.regions)
    assert not list(SHM_DIR.glob(prefix + "*"))


async def test_a_region_removed_from_dev_shm_falls_back_to_plain_grpc(
    triton: LocalTriton, contract: ModelContract
) -> None:
    """systemd-logind's RemoveIPC deletes a user's /dev/shm files: Triton then cannot open
    a new region, and the client goes on over plain gRPC with the same answers."""
    obs = random_observation(contract, 2, seed=3)
    async with TritonClient(triton.grpc_url) as plain:
        expected = await plain.infer(MAIN, obs)
    async with TritonClient(triton.grpc_url, shared_memory=True) as c:
        assert c._pool is not None
        slot = c._pool.acquire(1)  # the slot the next request will get, not yet registered
        c._pool.release(slot)
        slot.shm.path.unlink()
        np.testing.assert_array_equal(await c.infer(MAIN, obs), expected)
        assert not c.uses_shared_memory
        np.testing.assert_array_equal(await c.infer(MAIN, obs), expected)


async def test_the_deadline_bounds_the_whole_request_on_a_frozen_server(
    triton: LocalTriton,
) -> None:
    """A frozen server (SIGSTOP: real) answers nothing. A request that needs a new region
    (the last one was given up on) must still end at its deadline: one that waited on the
    control calls' own timeouts would bring back, seconds late, a chunk computed from a
    stale observation."""
    x = {"x": np.arange(2, dtype=np.float32)[None]}
    async with TritonClient(triton.grpc_url, shared_memory=True, control_timeout_s=10) as c:
        await c.infer(SLEEPY, x, timeout_s=30, output="y")
        with stopped(triton.pid):
            with pytest.raises(InferenceTimeout):
                await c.infer(SLEEPY, x, timeout_s=0.5, output="y")
            began = time.monotonic()
            with pytest.raises(InferenceTimeout):
                await c.infer(SLEEPY, x, timeout_s=0.5, output="y")  # a new slot: registers
            took = time.monotonic() - began
        assert took < 0.5 + 1.5, f"a 0.5 s request took {took:.1f} s"  # the contract, not speed
        np.testing.assert_array_equal(await c.infer(SLEEPY, x, timeout_s=30, output="y"), x["x"])


async def test_requests_given_up_on_together_are_cleaned_up_without_failing_the_next(
    triton: LocalTriton,
) -> None:
    x = {"x": np.arange(2, dtype=np.float32)[None]}
    async with TritonClient(triton.grpc_url, shared_memory=True) as c:
        late = await asyncio.gather(
            *(c.infer(SLEEPY, x, timeout_s=0.1, output="y") for _ in range(3)),
            return_exceptions=True)
        assert all(isinstance(r, InferenceTimeout) for r in late), late
        await asyncio.sleep(3 * SLEEP_S)
        results = await asyncio.gather(
            *(c.infer(SLEEPY, x, timeout_s=30, output="y") for _ in range(4)),
            return_exceptions=True)
        assert all(isinstance(r, np.ndarray) for r in results), results


@pytest.mark.parametrize("shared_memory", [False, True])
async def test_a_request_a_live_server_refuses_leaves_the_others_on_the_channel(
    triton: LocalTriton, shared_memory: bool
) -> None:
    """A full queue is Triton's answer to one request (UNAVAILABLE): the channel every
    session shares stays up, and another model's request in flight on it completes."""
    x = {"x": np.arange(2, dtype=np.float32)[None]}
    async with TritonClient(triton.grpc_url, shared_memory=shared_memory) as c:
        await c.infer(SLEEPY, x, timeout_s=30, output="y")
        await c.infer(SLEEPY_QUEUE1, x, timeout_s=30, output="y")
        generation = c._generation
        victim = asyncio.create_task(c.infer(SLEEPY, x, timeout_s=30, output="y"))
        flood = await asyncio.gather(
            *(c.infer(SLEEPY_QUEUE1, x, timeout_s=30, output="y") for _ in range(4)),
            return_exceptions=True)
        assert any(isinstance(r, TritonBusy) for r in flood), flood
        np.testing.assert_array_equal(await victim, x["x"])
        assert c._generation == generation
