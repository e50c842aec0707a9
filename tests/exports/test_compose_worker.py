"""docker-compose.yml wires the orchestrator to the export worker through one jobs volume."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[2]


def _compose() -> dict[str, Any]:
    data: dict[str, Any] = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    return data


def _mounts(service: dict[str, Any]) -> dict[str, str]:
    """container path -> source, for short-syntax volumes."""
    out = {}
    for entry in service.get("volumes", []):
        match = re.fullmatch(r"(.+?):(/[^:]*)(:ro|:rw)?", entry)
        assert match, entry
        out[match[2]] = match[1] + (match[3] or "")
    return out


def test_worker_and_orchestrator_share_the_jobs_folder() -> None:
    compose = _compose()
    worker = compose["services"]["export-worker"]
    orchestrator = compose["services"]["orchestrator"]
    triton = compose["services"]["triton"]
    assert worker["build"]["target"] == "export"
    assert worker["entrypoint"] == ["python", "-m", "export.worker"]
    command = worker["command"]
    jobs = command[command.index("--jobs") + 1]
    repository = command[command.index("--repository") + 1]
    assert orchestrator["environment"]["ORCHESTRATOR_EXPORT_JOBS_DIR"] == jobs
    worker_mounts, orch_mounts = _mounts(worker), _mounts(orchestrator)
    assert worker_mounts[jobs] == orch_mounts[jobs] == "export-jobs"
    assert "export-jobs" in compose["volumes"]
    # The worker writes the very folder Triton serves (read-only there).
    assert _mounts(triton)["/models"] == worker_mounts[repository] + ":ro"
    # Hub access: the token and the cache, one cache for both.
    for service in (worker, orchestrator):
        env = service["environment"]
        assert env["HF_TOKEN"] == "${HF_TOKEN:-}"
        assert _mounts(service)[env["HF_HOME"]] == "${HF_CACHE_DIR:-hub-cache}"
    assert "hub-cache" in compose["volumes"]
    assert "worker.alive" in " ".join(worker["healthcheck"]["test"])


def test_images_own_the_volume_mount_points() -> None:
    """Fresh named volumes take the owner of the image's mount point: the app user."""
    dockerfile = (ROOT / "Dockerfile").read_text()
    assert "mkdir -p /jobs /hf && chown app:app /jobs /hf" in dockerfile
