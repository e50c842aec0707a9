"""Real parts for end-to-end tests: the tiny ACT exported by the real exporter, served by
a real local Triton; the room server in its own process; the orchestrator API on uvicorn."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

import pytest

from orchestrator.settings import Settings
from orchestrator.triton.launcher import LocalTriton
from tests.support.arena import ArenaServerProcess, arena_server_process
from tests.support.exports import ExportedRepository, export_tiny_repository
from tests.support.orchestrator import Orchestrator, run_orchestrator
from tests.support.triton import local_triton


@pytest.fixture(scope="session")
def e2e_model(tmp_path_factory: pytest.TempPathFactory) -> ExportedRepository:
    return export_tiny_repository(tmp_path_factory.mktemp("e2e_model"))


@pytest.fixture(scope="session")
def e2e_triton(
    e2e_model: ExportedRepository, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[LocalTriton]:
    with local_triton(e2e_model.repository,
                      work_dir=tmp_path_factory.mktemp("e2e_triton")) as server:
        yield server


@pytest.fixture(scope="session")
def arena() -> Iterator[ArenaServerProcess]:
    with arena_server_process() as server:
        yield server


def e2e_settings(triton: LocalTriton, **overrides: object) -> Settings:
    base = Settings(triton_url=triton.grpc_url, triton_timeout_s=5.0, latency_prior_s=0.05)
    return base.model_copy(update=overrides)


@pytest.fixture
async def orchestrator(e2e_triton: LocalTriton, arena: ArenaServerProcess
                       ) -> AsyncIterator[Orchestrator]:
    if not e2e_triton.is_running():  # a fault test may have stopped it
        e2e_triton.start()
    async with run_orchestrator(e2e_settings(e2e_triton)) as orch:
        yield orch
