"""One real local Triton per test session, serving tiny ACT-shaped ONNX models."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from orchestrator.triton.client import TritonClient
from orchestrator.triton.launcher import LocalTriton
from orchestrator.triton.model_contract import ModelContract
from tests.support.triton import local_triton, tiny_contract, write_sleep_model, write_tiny_model

MAIN = "tiny_act"  # never changed by tests
SPARE = "tiny_spare"  # unloaded/loaded by tests
VERSIONED = "tiny_versions"  # gets new versions at run time
SLEEPY = "sleepy"  # a python-backend model taking SLEEP_S per batch
SLEEP_S = 0.5
SLEEPY_WIDE = "sleepy_wide"  # the same, FP32 [16]: one row fills a 64-byte aligned block
SLEEPY_QUEUE1 = "sleepy_queue1"  # the same, refusing requests beyond one waiting
WATCH_S = 0.2  # the session server re-syncs its derived repository by itself


@pytest.fixture(scope="session")
def contract() -> ModelContract:
    return tiny_contract(MAIN, cameras=("front", "wrist"))


@pytest.fixture(scope="session")
def source_repo(tmp_path_factory: pytest.TempPathFactory, contract: ModelContract) -> Path:
    repo = tmp_path_factory.mktemp("triton_source")
    write_tiny_model(repo, contract)
    write_tiny_model(repo, tiny_contract(SPARE))
    write_tiny_model(repo, tiny_contract(VERSIONED), version=1, seed=1)
    write_sleep_model(repo, SLEEPY, SLEEP_S)
    write_sleep_model(repo, SLEEPY_WIDE, SLEEP_S, width=16)
    write_sleep_model(repo, SLEEPY_QUEUE1, SLEEP_S, max_queue_size=1)
    return repo


@pytest.fixture(scope="session")
def triton(source_repo: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalTriton]:
    work_dir = tmp_path_factory.mktemp("triton_work")
    with local_triton(source_repo, work_dir=work_dir, watch_s=WATCH_S) as server:
        yield server


@pytest.fixture
async def client(triton: LocalTriton) -> AsyncIterator[TritonClient]:
    if not triton.is_running():  # a failed restart test must not take the others down
        triton.start()
    async with TritonClient(triton.grpc_url, timeout_s=10.0) as c:
        yield c


@pytest.fixture
async def shm_client(triton: LocalTriton) -> AsyncIterator[TritonClient]:
    if not triton.is_running():
        triton.start()
    async with TritonClient(triton.grpc_url, timeout_s=10.0, shared_memory=True) as c:
        yield c
