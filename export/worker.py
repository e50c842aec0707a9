"""python -m export.worker --jobs DIR --repository REPO [-- EXPORT_ARGS...]

Serves export jobs from a folder (protocol: orchestrator/exports/jobs.py) for an
orchestrator that has no torch: in the local stack and as docker compose's
``export-worker``. Each job runs ``python -m export`` in its own process, so a crash or a
hang is that job's failure and the worker keeps serving. ``EXPORT_ARGS`` (e.g.
``--kind cpu``) go to every export. One worker per jobs folder.
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from orchestrator.exports.jobs import (
    HEARTBEAT,
    HEARTBEAT_EVERY_S,
    JOB_SUFFIX,
    LOG_SUFFIX,
    RESULT_SUFFIX,
    RUNNING_SUFFIX,
    STATUS_SUFFIX,
    STEPS,
    one_line,
    read_json,
    write_json_atomic,
)

logger = logging.getLogger("export.worker")


@dataclass(frozen=True)
class Claimed:
    job_id: str
    running: Path
    job: dict[str, Any] | None  # None: the job file was not valid JSON


class Worker:
    def __init__(
        self,
        jobs_dir: Path,
        repository: Path,
        *,
        export_args: Sequence[str] = (),
        poll_s: float = 0.5,
        job_timeout_s: float = 3600.0,
        keep_s: float = 86400.0,
    ) -> None:
        self.jobs = jobs_dir
        self.repository = repository
        self.export_args = list(export_args)
        self.poll_s = poll_s
        self.job_timeout_s = job_timeout_s
        self.keep_s = keep_s
        self.stopping = threading.Event()

    def _path(self, job_id: str, suffix: str) -> Path:
        return self.jobs / f"{job_id}{suffix}"

    def _beat(self) -> None:
        beat = self.jobs / HEARTBEAT
        beat.write_text(f"{os.getpid()}\n")
        while not self.stopping.wait(HEARTBEAT_EVERY_S):
            try:
                beat.touch()
            except OSError as exc:  # keep beating: the folder may come back
                logger.warning("heartbeat: %s", exc)
        beat.unlink(missing_ok=True)

    def _finish(self, job_id: str, result: dict[str, Any]) -> None:
        write_json_atomic(self._path(job_id, RESULT_SUFFIX), result)
        self._path(job_id, RUNNING_SUFFIX).unlink(missing_ok=True)
        if result.get("ok"):
            logger.info("job %s: %s version %s", job_id, result.get("model"), result["version"])
        else:
            logger.info("job %s failed in %s: %s", job_id, result.get("step"), result["error"])

    def _fail(self, job_id: str, error: str, step: str | None, model: str | None = None) -> None:
        self._finish(
            job_id,
            {
                "ok": False,
                "model": model,
                "version": None,
                "source": None,
                "error": one_line(error),
                "step": step,
            },
        )

    def recover(self) -> None:
        """Jobs a previous worker left running have no export to wait for: fail them."""
        for running in sorted(self.jobs.glob(f"*{RUNNING_SUFFIX}")):
            job_id = running.name.removesuffix(RUNNING_SUFFIX)
            if not self._path(job_id, RESULT_SUFFIX).exists():
                self._fail(job_id, "the export worker restarted during this export", None)
            running.unlink(missing_ok=True)

    def prune(self) -> None:
        cutoff = time.time() - self.keep_s
        for result in self.jobs.glob(f"*{RESULT_SUFFIX}"):
            try:
                old = result.stat().st_mtime < cutoff
            except OSError:
                continue
            if old:
                job_id = result.name.removesuffix(RESULT_SUFFIX)
                for suffix in (STATUS_SUFFIX, LOG_SUFFIX, RESULT_SUFFIX):
                    self._path(job_id, suffix).unlink(missing_ok=True)

    def claim(self) -> Claimed | None:
        for job_file in sorted(self.jobs.glob(f"*{JOB_SUFFIX}")):
            if job_file.name.startswith("."):
                continue
            job_id = job_file.name.removesuffix(JOB_SUFFIX)
            running = self._path(job_id, RUNNING_SUFFIX)
            try:
                job_file.rename(running)
            except FileNotFoundError:  # withdrawn meanwhile
                continue
            return Claimed(job_id, running, read_json(running))
        return None

    def _command(self, job: dict[str, Any], job_id: str, child_result: Path) -> list[str]:
        repository = job.get("repository") or str(self.repository)
        command = [sys.executable, "-m", "export", str(job["source"])]
        command += ["--repository", str(repository)]
        if job.get("name"):
            command += ["--name", str(job["name"])]
        command += ["--result-json", str(child_result)]
        command += ["--status-json", str(self._path(job_id, STATUS_SUFFIX))]
        return command + self.export_args

    def _step(self, job_id: str) -> str | None:
        status = read_json(self._path(job_id, STATUS_SUFFIX))
        return str(status["step"]) if status and isinstance(status.get("step"), str) else None

    def run_job(self, claimed: Claimed) -> None:
        job_id, job = claimed.job_id, claimed.job
        if job is None or not isinstance(job.get("source"), str) or not job["source"].strip():
            self._fail(job_id, "bad job file: it needs {source: str, name: str}", None)
            return
        name = job.get("name") if isinstance(job.get("name"), str) else None
        write_json_atomic(self._path(job_id, STATUS_SUFFIX), {"step": STEPS[0]})
        child_result = self.jobs / f".{job_id}.child.json"
        log_path = self._path(job_id, LOG_SUFFIX)
        logger.info("job %s: exporting %s as %s", job_id, job["source"], name or "(default)")
        with log_path.open("wb") as log:
            child = subprocess.Popen(
                self._command(job, job_id, child_result),
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # so a stop or a timeout ends all it started
            )
            reason = self._watch(child)
        data = read_json(child_result)
        child_result.unlink(missing_ok=True)
        step = self._step(job_id)
        if reason is None and data is not None:
            self._finish(job_id, {**data, "step": step})
            return
        if reason is None:
            reason = f"the export process ended with code {child.returncode} and no result"
            last = _last_line(log_path)
            if last:
                reason += f": {last}"
        self._fail(job_id, reason, step, name)

    def _watch(self, child: subprocess.Popen[bytes]) -> str | None:
        """Wait for the child; a reason string when it had to be stopped."""
        deadline = time.monotonic() + self.job_timeout_s
        while child.poll() is None:
            reason = None
            if self.stopping.is_set():
                reason = "the export worker was stopped during this export"
            elif time.monotonic() > deadline:
                reason = f"the export took longer than {self.job_timeout_s:g} s and was stopped"
            if reason:
                _kill(child)
                return reason
            time.sleep(0.1)
        return None

    def serve(self) -> None:
        self.jobs.mkdir(parents=True, exist_ok=True)
        self.recover()
        beat = threading.Thread(target=self._beat, name="heartbeat", daemon=True)
        beat.start()
        logger.info("serving export jobs in %s into %s", self.jobs, self.repository)
        last_prune = 0.0
        while not self.stopping.is_set():
            if time.monotonic() - last_prune > 60:
                self.prune()
                last_prune = time.monotonic()
            claimed = self.claim()
            if claimed is None:
                self.stopping.wait(self.poll_s)
                continue
            try:
                self.run_job(claimed)
            except Exception as exc:  # the worker outlives any one job
                logger.exception("job %s", claimed.job_id)
                self._fail(claimed.job_id, f"export worker error: {exc}", None)
        beat.join(timeout=2 * HEARTBEAT_EVERY_S)


def _kill(child: subprocess.Popen[bytes]) -> None:
    try:
        os.killpg(child.pid, signal.SIGTERM)
        child.wait(timeout=10)
    except subprocess.TimeoutExpired:
        os.killpg(child.pid, signal.SIGKILL)
        child.wait()
    except ProcessLookupError:
        child.wait()


def _last_line(path: Path) -> str:
    try:
        lines = [ln for ln in path.read_text(errors="replace").splitlines() if ln.strip()]
    except OSError:
        return ""
    return one_line(lines[-1], 300) if lines else ""


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    export_args: list[str] = []
    if "--" in argv:
        cut = argv.index("--")
        argv, export_args = argv[:cut], argv[cut + 1 :]
    p = argparse.ArgumentParser(
        prog="python -m export.worker",
        description="Serve export jobs from a folder (see orchestrator/exports/jobs.py); "
        "arguments after -- go to every python -m export run.",
    )
    p.add_argument("--jobs", type=Path, required=True, help="jobs folder shared with the API")
    p.add_argument("--repository", type=Path, required=True, help="model repository")
    p.add_argument("--poll-s", type=float, default=0.5, help="how often to look for jobs")
    p.add_argument("--job-timeout-s", type=float, default=3600.0, help="stop an export after")
    p.add_argument("--keep-s", type=float, default=86400.0, help="keep finished jobs' files")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="export.worker: %(message)s", stream=sys.stderr)
    worker = Worker(
        args.jobs,
        args.repository,
        export_args=export_args,
        poll_s=args.poll_s,
        job_timeout_s=args.job_timeout_s,
        keep_s=args.keep_s,
    )
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: worker.stopping.set())
    worker.serve()
    return 0


if __name__ == "__main__":
    sys.exit(main())
