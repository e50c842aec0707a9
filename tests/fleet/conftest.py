"""Real parts for the fleet tests: the e2e Triton and room server, a private Ray temp folder
per run (short: AF_UNIX socket paths are limited to 107 characters), so this run's Ray never
meets another run's, and a fleet (the API and two workers) per module."""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import AsyncIterator, Iterator

import pytest

# Read when Ray is imported: keep a local instance on loopback, as the router asks.
os.environ["RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"] = "0"

from orchestrator.observability import metrics
from orchestrator.triton.launcher import LocalTriton
from tests.e2e import conftest as e2e
from tests.support.arena import ArenaServerProcess
from tests.support.orchestrator import Orchestrator, run_orchestrator

# The e2e suite's Triton, model and room server (session-scoped: shared with it).
arena, e2e_model, e2e_triton = e2e.arena, e2e.e2e_model, e2e.e2e_triton


@pytest.fixture(scope="session", autouse=True)
def private_ray_dir() -> Iterator[str]:
    path = tempfile.mkdtemp(prefix="rf", dir="/tmp")
    saved = {"RAY_TMPDIR": os.environ.get("RAY_TMPDIR")}
    os.environ["RAY_TMPDIR"] = path
    try:
        yield path
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
        shutil.rmtree(path, ignore_errors=True)


@pytest.fixture(scope="module")
async def fleet(e2e_triton: LocalTriton, arena: ArenaServerProcess
                ) -> AsyncIterator[Orchestrator]:
    if not e2e_triton.is_running():
        e2e_triton.start()
    settings = e2e.e2e_settings(e2e_triton, workers=2, worker_max_sessions=3, max_sessions=16,
                            log_level="WARNING")
    # This process's collector as a session manager elsewhere in the run may have left it:
    # the API must install it itself (see test_the_api_process_counts_its_own_collections).
    metrics.GC_PAUSES.uninstall()
    async with run_orchestrator(settings, start_timeout_s=120) as orch:  # Ray: seconds
        yield orch
