"""The export worker and the orchestrator's client, together and for real.

``python -m export.worker`` runs as a subprocess of this interpreter (the project's .venv,
which has the export extra), on an offline hub cache; the torch-free client
(orchestrator.exports.jobs) submits jobs and waits for them through the jobs folder.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest

from orchestrator.exports.jobs import STEPS, ExportFailed, ExportJobs, worker_command
from orchestrator.triton.model_contract import contract_from_config, parse_config
from tests.support.exports import REPO_ROOT, ExportedRepository
from tests.support.hub import HubCheckpoint, make_hub_checkpoint


@pytest.fixture(scope="module")
def hub(
    tmp_path_factory: pytest.TempPathFactory, exported_repository: ExportedRepository
) -> HubCheckpoint:
    home = tmp_path_factory.mktemp("worker_hub") / "hf"
    return make_hub_checkpoint(home, built=exported_repository.checkpoint)


@pytest.fixture
def worker(hub: HubCheckpoint, tmp_path: Path) -> Iterator[tuple[ExportJobs, Path, Path, int]]:
    jobs_dir, repo, log = tmp_path / "jobs", tmp_path / "model_repository", tmp_path / "w.log"
    command = worker_command(jobs_dir, repo, export_args=["--kind", "cpu"])
    with log.open("wb") as out:
        proc = subprocess.Popen(
            command, cwd=REPO_ROOT, env={**os.environ, **hub.env()}, stdout=out, stderr=out
        )
    jobs = ExportJobs(jobs_dir)
    deadline = time.monotonic() + 60
    while not jobs.worker_alive():
        assert proc.poll() is None, log.read_text()
        assert time.monotonic() < deadline, "worker never beat"
        time.sleep(0.1)
    yield jobs, repo, log, proc.pid
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=30) == 0, log.read_text()
    assert not jobs.worker_alive()


@pytest.mark.timeout(900)
async def test_failure_then_success_then_two_in_a_row(
    worker: tuple[ExportJobs, Path, Path, int], hub: HubCheckpoint
) -> None:
    jobs, repo, _, _ = worker
    bad = await jobs.submit("nobody/nothing", "never")
    with pytest.raises(ExportFailed) as failed:
        await jobs.wait(bad, timeout_s=120)
    assert "nobody/nothing is not in the offline hub cache" in failed.value.reason
    assert "\n" not in failed.value.reason
    assert failed.value.result is not None and failed.value.result.step == "fetching"
    assert await jobs.status(bad) == "failed"
    assert not (repo / "never").exists()

    job = await jobs.submit(hub.repo_id, "from_hub")
    seen: set[str] = set()
    deadline = time.monotonic() + 300
    while (status := await jobs.status(job)) not in ("done", "failed"):
        assert status is not None and time.monotonic() < deadline
        seen.add(status)
        await asyncio.sleep(0.05)
    result = await jobs.wait(job, timeout_s=1)
    assert (result.ok, result.model, result.version) == (True, "from_hub", 1)
    assert result.source == f"hf:{hub.repo_id}@{hub.sha}"
    assert result.step == "writing"
    assert seen & set(STEPS), seen  # at least one step was visible while it ran
    config = parse_config((repo / "from_hub" / "config.pbtxt").read_text())
    assert contract_from_config(config).info["source_revision"] == hub.sha

    first = await jobs.submit(hub.repo_id, "twice")
    second = await jobs.submit(f"{hub.repo_id}@{hub.sha[:7]}", "twice")
    assert await jobs.status(second) == "queued"
    one = await jobs.wait(first, timeout_s=300)
    two = await jobs.wait(second, timeout_s=300)
    assert (one.model, one.version, two.model, two.version) == ("twice", 1, "twice", 2)
    assert sorted(p.name for p in (repo / "twice").iterdir()) == ["1", "2", "config.pbtxt"]


async def test_bad_job_file_and_unknown_ids(worker: tuple[ExportJobs, Path, Path, int]) -> None:
    jobs, _, _, _ = worker
    (jobs.jobs_dir / "0-handmade.job.json").write_text(json.dumps({"name": "x"}))
    with pytest.raises(ExportFailed, match="bad job file"):
        await jobs.wait("0-handmade", timeout_s=30)
    assert await jobs.status("1-nobody") is None
    with pytest.raises(ExportFailed, match="unknown"):
        await jobs.wait("1-nobody", timeout_s=5)
    with pytest.raises(ValueError, match="invalid export job id"):
        await jobs.status("../escape")


async def test_wait_times_out_without_a_worker(tmp_path: Path) -> None:
    jobs = ExportJobs(tmp_path / "jobs")
    assert not jobs.worker_alive()
    job = await jobs.submit("org/name", "m")
    assert await jobs.status(job) == "queued"
    with pytest.raises(TimeoutError):
        await jobs.wait(job, timeout_s=0.3)




@pytest.mark.timeout(600)
async def test_a_crashed_export_is_that_jobs_failure(
    worker: tuple[ExportJobs, Path, Path, int], hub: HubCheckpoint
) -> None:
    """A real crash: the export process is killed (SIGKILL) while it works."""
    jobs, repo, _, worker_pid = worker
    job = await jobs.submit(hub.repo_id, "crashed")
    deadline = time.monotonic() + 120
    while not (children := psutil.Process(worker_pid).children()):
        assert time.monotonic() < deadline
        await asyncio.sleep(0.05)
    await asyncio.sleep(1.0)
    children[0].send_signal(signal.SIGKILL)
    with pytest.raises(ExportFailed, match="the export process ended with code -9") as failed:
        await jobs.wait(job, timeout_s=60)
    assert "\n" not in failed.value.reason
    assert not (repo / "crashed").exists()
    assert jobs.worker_alive()
    after = await jobs.submit("nobody/nothing", "after")
    with pytest.raises(ExportFailed, match="not in the offline hub cache"):
        await jobs.wait(after, timeout_s=120)
