"""A crashed server gives typed errors; the same client works again after a restart."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

import numpy as np
import pytest

from orchestrator.triton.client import TritonClient
from orchestrator.triton.errors import TritonUnavailable
from orchestrator.triton.launcher import LocalTriton
from orchestrator.triton.model_contract import ModelContract
from orchestrator.triton.server_process import SHM_DIR
from tests.support.triton import random_observation
from tests.triton.conftest import MAIN


async def wait_ready(client: TritonClient, attempts: int = 100) -> None:
    for _ in range(attempts):
        if await client.is_model_ready(MAIN):
            return
        await asyncio.sleep(0.1)
    raise AssertionError("client did not see the restarted server")


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return Path(f"/proc/{pid}").exists() and "zombie" not in Path(f"/proc/{pid}/status").read_text()


async def test_killed_server_then_restart(
    triton: LocalTriton, contract: ModelContract
) -> None:
    obs = random_observation(contract, 2, seed=9)
    plain = TritonClient(triton.grpc_url, timeout_s=10.0)
    shm = TritonClient(triton.grpc_url, timeout_s=10.0, shared_memory=True)
    try:
        expected = await plain.infer(MAIN, obs)
        np.testing.assert_array_equal(await shm.infer(MAIN, obs), expected)
        pid = triton.pid
        assert pid is not None
        triton.kill()  # SIGKILL: a real crash, no graceful shutdown
        assert not alive(pid)
        assert not list(SHM_DIR.glob(triton.shm_prefix + "*"))  # python backend's leftovers

        assert not await plain.is_server_ready()  # never raises
        assert not await plain.is_model_ready(MAIN)
        for c in (plain, shm):
            with pytest.raises(TritonUnavailable):
                await c.infer(MAIN, obs)

        triton.start()
        await wait_ready(plain)
        # Same objects, same process: reconnected (and shm regions registered again).
        np.testing.assert_array_equal(await plain.infer(MAIN, obs), expected)
        np.testing.assert_array_equal(await shm.infer(MAIN, obs), expected)
    finally:
        await plain.close()
        await shm.close()
        if not triton.is_running():
            triton.start()


async def test_graceful_restart_while_idle_reregisters_shared_memory(
    triton: LocalTriton, contract: ModelContract
) -> None:
    """The server restarts between two requests; the client never saw it down."""
    obs = random_observation(contract, 1, seed=11)
    async with TritonClient(triton.grpc_url, timeout_s=10.0, shared_memory=True) as c:
        expected = await c.infer(MAIN, obs)
        triton.stop()
        triton.start()
        for _ in range(100):  # the first calls may still hit the dead connection
            try:
                result = await c.infer(MAIN, obs)
                break
            except TritonUnavailable:
                await asyncio.sleep(0.1)
        else:
            raise AssertionError("never reconnected")
        np.testing.assert_array_equal(result, expected)
