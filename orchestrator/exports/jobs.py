"""Export jobs through a shared folder: the orchestrator (no torch) asks, a worker exports.

Protocol (one worker per folder; ``python -m export.worker --jobs DIR --repository REPO``):

- ``<id>.job.json`` ``{source, name, repository?}``: written by :meth:`ExportJobs.submit`
  atomically (a hidden temporary file, then rename), so the worker never reads half a job.
- ``<id>.running``: the worker claims a job by renaming its file (one rename wins).
- ``<id>.status.json`` ``{step}``: fetching, exporting, checking parity, writing.
- ``<id>.result.json`` ``{ok, model, version, source, error, step}``: written last,
  atomically; ``error`` is one line, ``step`` the step the job ended in.
- ``worker.alive``: touched every second by a live worker; stale after 5 s.

Job ids sort in submission order (time first), and the worker takes the oldest first.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import sys
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

JOB_SUFFIX = ".job.json"
RUNNING_SUFFIX = ".running"
STATUS_SUFFIX = ".status.json"
RESULT_SUFFIX = ".result.json"
LOG_SUFFIX = ".log"
HEARTBEAT = "worker.alive"
HEARTBEAT_EVERY_S = 1.0
STALE_AFTER_S = 5.0
STEPS = ("fetching", "exporting", "checking parity", "writing")
QUEUED, DONE, FAILED = "queued", "done", "failed"
_JOB_ID = re.compile(r"^[A-Za-z0-9_-]{1,64}$")


class ExportFailed(Exception):
    """An export job ended without a model; the message is the exporter's one-line reason."""

    def __init__(self, reason: str, result: JobResult | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.result = result


@dataclass(frozen=True)
class JobResult:
    job_id: str
    ok: bool
    model: str | None
    version: int | None
    source: str | None  # canonical source (hf:org/name@<sha> or dir:/abs) when known
    error: str | None  # one line, when not ok
    step: str | None  # the step the job ended in

    @classmethod
    def from_json(cls, job_id: str, data: dict[str, Any]) -> JobResult:
        version = data.get("version")
        return cls(
            job_id=job_id,
            ok=data.get("ok") is True,
            model=data.get("model") if isinstance(data.get("model"), str) else None,
            version=version if isinstance(version, int) else None,
            source=data.get("source") if isinstance(data.get("source"), str) else None,
            error=one_line(str(data["error"])) if data.get("error") else None,
            step=data.get("step") if isinstance(data.get("step"), str) else None,
        )


def one_line(text: str, limit: int = 400) -> str:
    return " ".join(text.split())[:limit]


def new_job_id() -> str:
    return f"{time.time_ns():020d}-{uuid.uuid4().hex[:8]}"


def check_job_id(job_id: str) -> str:
    if not _JOB_ID.match(job_id):
        raise ValueError(f"invalid export job id {job_id!r}")
    return job_id


def write_json_atomic(path: Path, data: dict[str, Any]) -> None:
    """Readers see the old file or the whole new one, never a part."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{uuid.uuid4().hex[:6]}.tmp")
    tmp.write_text(json.dumps(data))
    tmp.replace(path)


def read_json(path: Path) -> dict[str, Any] | None:
    try:
        data = json.loads(path.read_text())
    except (FileNotFoundError, json.JSONDecodeError, UnicodeDecodeError):
        return None
    return data if isinstance(data, dict) else None


def worker_command(
    jobs_dir: str | Path,
    repository: str | Path,
    *,
    python: str = sys.executable,
    export_args: Sequence[str] = (),
) -> list[str]:
    """The command line that serves ``jobs_dir`` (``python`` needs the export extra);
    ``export_args`` go to each ``python -m export`` run, e.g. ``["--kind", "cpu"]``."""
    command = [python, "-m", "export.worker", "--jobs", str(jobs_dir)]
    command += ["--repository", str(repository)]
    return command + (["--", *export_args] if export_args else [])


class ExportJobs:
    """The orchestrator's side of the jobs folder."""

    def __init__(
        self, jobs_dir: str | Path, *, poll_s: float = 0.2, stale_after_s: float = STALE_AFTER_S
    ) -> None:
        self.jobs_dir = Path(jobs_dir)
        self.poll_s = poll_s
        self.stale_after_s = stale_after_s

    def _path(self, job_id: str, suffix: str) -> Path:
        return self.jobs_dir / f"{check_job_id(job_id)}{suffix}"

    async def submit(self, source: str, name: str, repository: str | None = None) -> str:
        """Queue an export of ``source`` as model ``name``; returns the job id."""
        job_id = new_job_id()
        job: dict[str, Any] = {"source": source, "name": name, "submitted_at": time.time()}
        if repository is not None:
            job["repository"] = repository
        self.jobs_dir.mkdir(parents=True, exist_ok=True)
        write_json_atomic(self._path(job_id, JOB_SUFFIX), job)
        return job_id

    async def result(self, job_id: str) -> JobResult | None:
        """The job's result once it has ended, else None (does not wait)."""
        data = read_json(self._path(job_id, RESULT_SUFFIX))
        return None if data is None else JobResult.from_json(job_id, data)

    async def status(self, job_id: str) -> str | None:
        """``queued``, a step (fetching, exporting, checking parity, writing), ``done`` or
        ``failed``; None for a job this folder does not know."""
        ended = await self.result(job_id)
        if ended is not None:
            return DONE if ended.ok else FAILED
        status = read_json(self._path(job_id, STATUS_SUFFIX))
        if status is not None and isinstance(status.get("step"), str):
            return str(status["step"])
        if self._path(job_id, RUNNING_SUFFIX).exists():
            return STEPS[0]
        if self._path(job_id, JOB_SUFFIX).exists():
            return QUEUED
        return None

    async def wait(self, job_id: str, timeout_s: float) -> JobResult:
        """The job's result; raises ExportFailed (its one-line reason) when it failed,
        TimeoutError when it has not ended within ``timeout_s``."""
        deadline = time.monotonic() + timeout_s
        while True:
            ended = await self.result(job_id)
            if ended is not None:
                if not ended.ok:
                    raise ExportFailed(ended.error or "export failed", ended)
                return ended
            if await self.status(job_id) is None:
                raise ExportFailed(f"export job {job_id} is unknown to {self.jobs_dir}")
            if time.monotonic() >= deadline:
                raise TimeoutError(f"export job {job_id} did not end within {timeout_s:g} s")
            await asyncio.sleep(self.poll_s)

    def worker_alive(self) -> bool:
        """A worker touched the heartbeat within the last ``stale_after_s`` seconds."""
        try:
            age = time.time() - (self.jobs_dir / HEARTBEAT).stat().st_mtime
        except OSError:
            return False
        return age <= self.stale_after_s
