"""Delete marks: a session's rooms are going, so a create of the same id must wait.

A new session of an id gets rooms of the same names as the old one's, so a delete still
removing rooms would remove the new session's. Whoever deletes marks it in the registry
(``fleet/deleting/<id>/<by>``) while it runs: the API process that was asked, then the
worker that closes the session. A create, in any API process, waits while a mark of its
id stands, unless the mark's writer is gone:

- ``api-<Ray job id>-<n>``: the job (that API process, a Ray driver) is dead. The GCS marks
  a driver's job dead within ~50 ms of a SIGKILL (measured here, Ray 2.60).
- ``worker-<index>-<pid>-<n>``: cleared by the worker's next process when Ray restarts it
  (before that process answers anyone); stale once Ray has no worker of that index any
  more (it died for good: no restart will clear the mark).
- Either, older than the longest a delete can run: its writer hung or was lost with its
  node.

A worker also sweeps its sessions for ones whose record is gone (an API process died, or
gave up, between removing the record and reaching the worker): they ran on, unlisted and
out of the API's reach, driving their robots.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from collections.abc import Callable, Collection
from typing import Any

from orchestrator.fleet.registry import Registry
from orchestrator.sessions.errors import SessionNotFound
from orchestrator.sessions.manager import SessionManager

log = logging.getLogger(__name__)

SWEEP_S = 2.0  # how often a worker looks for sessions whose record is gone
API_MARK = "api-"
WORKER_MARK = "worker-"


def stale_marks(marks: dict[str, float], live_jobs: Collection[str], now: float,
                bound_s: float, workers: Collection[int]) -> set[str]:
    """The marks whose delete can no longer be running. ``workers``: the indices of the
    workers Ray has (running or restarting)."""
    stale = set()
    for by, since in marks.items():
        writer = by.split("-")[1]
        gone = (by.startswith(API_MARK) and writer not in live_jobs) or (
            by.startswith(WORKER_MARK) and int(writer) not in workers)
        if gone or now - since > bound_s:
            stale.add(by)
    return stale


def marking_workers(marks: Collection[str]) -> set[int]:
    """The indices of the workers that wrote these marks."""
    return {int(by.split("-")[1]) for by in marks if by.startswith(WORKER_MARK)}


def live_jobs() -> set[str]:
    """Ray job ids of the drivers alive now (API processes among them). The job table has
    no public reader without the dashboard (which the local fleet does not run)."""
    import ray._private.state

    return {job["JobID"] for job in ray._private.state.jobs() if not job["IsDead"]}


class WorkerDeletes:
    """A worker's deletes that remove rooms, marked while they run, and its sweep."""

    def __init__(self, registry: Registry, manager: SessionManager, index: int) -> None:
        self.registry, self.manager, self.index = registry, manager, index
        self._count = 0

    async def forget_earlier(self) -> None:
        """This process is new: marks that an earlier one left died with it."""
        cleared = await asyncio.to_thread(self.registry.clear_deletes_by,
                                          f"{WORKER_MARK}{self.index}-")
        if cleared:
            log.info("worker %d: %d delete mark(s) of its last process cleared",
                     self.index, cleared)

    async def close(self, session_id: str, *, delete_rooms: bool = True) -> None:
        """The manager's delete; marked while it runs when it removes rooms."""
        if not delete_rooms:
            await self.manager.delete(session_id, delete_rooms=False)
            return
        by = self._mark_name()
        await self._quietly(self.registry.mark_deleting, session_id, by, time.time())
        try:
            await self.manager.delete(session_id)
        finally:
            await self._quietly(self.registry.clear_deleting, session_id, by)

    async def sweep_forever(self, busy: Callable[[], Collection[str]]) -> None:
        """``busy``: ids the worker is restoring (their restore reads the record itself)."""
        while True:
            await asyncio.sleep(SWEEP_S)
            try:
                await self.sweep(busy())
            except Exception as exc:  # the registry unreachable: the next round
                log.warning("worker %d: sweep failed: %r", self.index, exc)

    async def sweep(self, busy: Collection[str]) -> None:
        held = [s.session_id for s in self.manager.sessions() if s.session_id not in busy]
        if not held:
            return
        recorded = await asyncio.to_thread(self.registry.session_ids)
        for sid in held:
            if sid in recorded:
                continue
            # Marked before the record is read again: a create that reserves the id after
            # that read waits for the mark; one that reserved before it keeps its rooms.
            by = self._mark_name()
            await self._quietly(self.registry.mark_deleting, sid, by, time.time())
            try:
                record = await asyncio.to_thread(self.registry.get, sid)
                log.warning("worker %d: session %s has no record (deleted by an API process "
                            "that never reached this worker): closed", self.index, sid)
                await self.manager.delete(sid, delete_rooms=record is None)
            except SessionNotFound:
                pass  # its own delete got there first
            finally:
                await self._quietly(self.registry.clear_deleting, sid, by)

    def _mark_name(self) -> str:
        self._count += 1  # the pid: a restarted worker's marks are not its last process's
        return f"{WORKER_MARK}{self.index}-{os.getpid()}-{self._count}"

    async def _quietly(self, fn: Callable[..., Any], *args: Any) -> None:
        """A registry write that must not fail the delete it goes with."""
        try:
            await asyncio.to_thread(fn, *args)
        except Exception as exc:
            log.warning("worker %d: registry %s failed: %r", self.index, fn.__name__, exc)
