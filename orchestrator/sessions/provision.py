"""The served model behind a ``policy_path``: a model Triton serves (``NAME[:VERSION]``), or
one exported from a hub repo or checkpoint folder, reused when a served model came from it
and exported on demand (through the export worker's jobs folder) when none did.

Two sessions naming the same source share one export: the model name is derived from the
source, and one task per name does the work while every session waiting on it reads its step.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from orchestrator.exports.resolve import (
    HubUnreachable,
    ResolvedCheckpoint,
    SourceError,
    resolve_source,
)
from orchestrator.exports.source import (
    FolderSource,
    HubSource,
    default_model_name,
    source_matches,
)
from orchestrator.sessions.errors import (
    DependencyUnavailable,
    InvalidSessionRequest,
    PolicyNotFound,
)
from orchestrator.sessions.policy import PolicyRef
from orchestrator.settings import Settings
from orchestrator.triton.client import TritonClient
from orchestrator.triton.errors import ModelNotReady, TritonError, TritonUnavailable
from orchestrator.triton.model_contract import ContractError, ModelContract

if TYPE_CHECKING:
    from orchestrator.exports.jobs import ExportJobs

log = logging.getLogger(__name__)

Source = HubSource | FolderSource


@dataclass
class Provisioning:
    """One on-demand export and load, shared by the sessions that wait for it."""

    source: Source
    name: str
    step: str = "queued"
    task: asyncio.Task[tuple[PolicyRef, ModelContract]] | None = field(default=None, repr=False)


class ModelProvider:
    def __init__(self, settings: Settings, triton: TritonClient) -> None:
        self.settings = settings
        self.triton = triton
        self.jobs: ExportJobs | None = None
        if settings.export_jobs_dir is not None:
            from orchestrator.exports.jobs import ExportJobs

            self.jobs = ExportJobs(settings.export_jobs_dir)
        self._inflight: dict[str, Provisioning] = {}

    # -- served models -------------------------------------------------------------------
    async def contract(self, name: str, version: str = "") -> ModelContract:
        """The contract of a served model, with Triton's failures as session errors."""
        try:
            return await self.triton.contract(name, version)
        except TritonUnavailable as exc:
            raise DependencyUnavailable(
                f"Triton at {self.triton.url} is unreachable, cannot check model {name!r}: {exc}"
            ) from exc
        except ModelNotReady as exc:
            raise PolicyNotFound(
                f"model {name!r}{':' + version if version else ''} is not loaded in Triton at "
                f"{self.triton.url}: {exc}"
            ) from exc
        except ContractError as exc:
            raise InvalidSessionRequest(str(exc)) from exc
        except TritonError as exc:
            raise DependencyUnavailable(
                f"Triton at {self.triton.url} could not describe model {name!r}: {exc}") from exc

    async def find_served(self, source: Source) -> tuple[PolicyRef, ModelContract] | None:
        """A served model whose recorded provenance is ``source``, if any (newest version)."""
        try:
            index = await self.triton.repository_index()
        except TritonUnavailable as exc:
            raise DependencyUnavailable(
                f"Triton at {self.triton.url} is unreachable: {exc}") from exc
        except TritonError as exc:  # a deadline passed (a frozen or overloaded server), ...
            raise DependencyUnavailable(
                f"Triton at {self.triton.url} could not list its models: {exc}") from exc
        ready = sorted({name for name, _, state in index if state == "READY"})
        for name in ready:
            try:
                contract = await self.triton.contract(name)
            except (TritonError, ContractError):
                continue  # not an ACT policy of ours, or gone meanwhile
            if source_matches(contract.info, source):
                return PolicyRef(name=name, version=""), contract
        return None

    # -- checking and exporting ----------------------------------------------------------
    async def check_source(self, source: Source) -> ResolvedCheckpoint:
        """Before anything is created: the repo/revision/folder exists (in the offline cache
        when offline) and holds an ACT checkpoint."""
        try:
            checkpoint = await asyncio.to_thread(resolve_source, source)
        except HubUnreachable as exc:  # an outage, not the request: worth a retry
            raise DependencyUnavailable(f"policy_path {str(source)!r}: {exc}") from exc
        except SourceError as exc:
            raise InvalidSessionRequest(f"policy_path {str(source)!r}: {exc}") from exc
        if checkpoint.policy_type != "act":
            raise InvalidSessionRequest(
                f"policy_path {str(source)!r} is a {checkpoint.policy_type!r} checkpoint; this "
                "server serves ACT policies only"
            )
        if self.jobs is None:
            raise InvalidSessionRequest(
                f"policy_path {str(source)!r} is not served yet and on-demand export is off "
                "(set ORCHESTRATOR_EXPORT_JOBS_DIR to the export worker's jobs folder), or "
                f"export it first: python -m export {source} --repository model_repository"
            )
        if not self.jobs.worker_alive():
            raise DependencyUnavailable(
                f"policy_path {str(source)!r} needs an export, and no export worker serves "
                f"{self.jobs.jobs_dir} (start `python -m export.worker --jobs "
                f"{self.jobs.jobs_dir} --repository <model repository>`)"
            )
        return checkpoint

    def provision(self, source: Source) -> Provisioning:
        """The shared export-and-load of ``source``: started once per model name."""
        name = default_model_name(source)
        current = self._inflight.get(name)
        if current is not None and current.task is not None and not current.task.done():
            return current
        job = Provisioning(source=source, name=name)
        job.task = asyncio.create_task(self._export_and_load(job), name=f"provision-{name}")
        job.task.add_done_callback(lambda task: self._finished(name, task))
        self._inflight[name] = job
        return job

    def _finished(self, name: str, task: asyncio.Task[tuple[PolicyRef, ModelContract]]) -> None:
        self._inflight.pop(name, None)
        if not task.cancelled() and task.exception() is not None:
            log.warning("on-demand model %s: %s", name, task.exception())

    async def _export_and_load(self, job: Provisioning) -> tuple[PolicyRef, ModelContract]:
        from orchestrator.exports.jobs import ExportFailed

        assert self.jobs is not None
        job.step = "export queued"
        job_id = await self.jobs.submit(str(job.source), job.name)
        log.info("exporting %s as model %s (job %s)", job.source, job.name, job_id)
        waiting = asyncio.create_task(self.jobs.wait(job_id, self.settings.export_timeout_s))
        try:
            while not waiting.done():
                step = await self.jobs.status(job_id)
                if step:
                    job.step = f"exporting: {step}"
                await asyncio.wait({waiting}, timeout=0.5)
            await waiting
        except ExportFailed as exc:
            raise ProvisionFailed(f"export of {job.source} failed: {exc}") from exc
        except TimeoutError as exc:
            raise ProvisionFailed(
                f"export of {job.source} did not finish within "
                f"{self.settings.export_timeout_s:.0f} s") from exc
        finally:
            waiting.cancel()
            with contextlib.suppress(BaseException):
                await waiting
        job.step = "loading into Triton"
        await self._load(job.name)
        contract = await self.contract(job.name)
        log.info("model %s from %s is served", job.name, job.source)
        return PolicyRef(name=job.name, version=""), contract

    async def _load(self, name: str) -> None:
        """Ask Triton to load the new model, until it is ready. A server in poll mode
        refuses load calls and loads it by itself; a local server syncs its repository on a
        timer, so the first calls may not find the model yet."""
        deadline = time.monotonic() + self.settings.model_load_timeout_s
        last: str = "not ready"
        while time.monotonic() < deadline:
            try:
                if await self.triton.is_model_ready(name):
                    return
                await self.triton.load_model(name)
                if await self.triton.is_model_ready(name):
                    return
            except TritonError as exc:
                last = str(exc)
            await asyncio.sleep(1.0)
        raise ProvisionFailed(
            f"model {name} was exported but Triton did not load it within "
            f"{self.settings.model_load_timeout_s:.0f} s: {last}")


class ProvisionFailed(Exception):
    """The on-demand export or load failed: the one-line reason for the session's error."""


def watch_step(job: Provisioning, report: Callable[[str], None]) -> Callable[[], None]:
    """Copy the shared job's step to one session while it waits; returns a canceller."""

    async def follow() -> None:
        while True:
            report(job.step)
            await asyncio.sleep(0.25)

    task = asyncio.create_task(follow(), name=f"watch-{job.name}")

    def cancel() -> None:
        task.cancel()

    return cancel
