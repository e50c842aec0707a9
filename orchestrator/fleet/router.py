"""The API side of the fleet: a Ray driver that routes each call to the session's worker.

It offers the session manager's interface (what the routes call), so the API serves an
in-process ``SessionManager`` or a fleet alike. Any number of API processes may run: the
registry (Ray's KV store) says which worker owns which session, so each answers for all.
New sessions go to the least loaded live worker; when none can take one (all dead, all
full, Ray unreachable) the answer is 503 with the reason and nothing is left behind.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from dataclasses import dataclass, replace
from typing import Any

import ray

from orchestrator.arena.rest import new_workspace
from orchestrator.fleet.deletes import API_MARK, live_jobs, marking_workers, stale_marks
from orchestrator.fleet.link import CALL_TIMEOUT_S, PROBE_TIMEOUT_S, RESTARTING_WAIT_S, WorkerLink
from orchestrator.fleet.registry import Registry, SessionRecord
from orchestrator.fleet.worker import (
    record_for,
    unavailable_status,
    worker_name,
)
from orchestrator.observability.metrics import Family
from orchestrator.sessions.errors import (
    DependencyUnavailable,
    SessionError,
    SessionExists,
    SessionNotFound,
    TooManySessions,
)
from orchestrator.sessions.session import SessionState
from orchestrator.sessions.spec import SessionRooms, SessionSpec, camera_room_clash
from orchestrator.settings import Settings
from orchestrator.triton.client import TritonClient

log = logging.getLogger(__name__)

REFRESH_S = 1.0
# The longest a delete can run (its worker call, a restart waited for, registry calls):
# a delete mark older than that is of a writer that hung or was lost (fleet/deletes.py).
DELETE_BOUND_S = CALL_TIMEOUT_S + RESTARTING_WAIT_S + 4 * PROBE_TIMEOUT_S


@dataclass(frozen=True)
class SessionHandle:
    """What the routes read of a session: its id and state (``.state.value``)."""

    session_id: str
    state: SessionState


class FleetRouter(WorkerLink):
    def __init__(self, settings: Settings, triton: TritonClient) -> None:
        super().__init__(settings)
        self.triton = triton  # the API's own client: health and /debug only
        self.registry = Registry(settings.ray_namespace)
        self._states: dict[str, SessionHandle] = {}
        self._refresher: asyncio.Task[None] | None = None
        self._marks = 0  # numbers this process's delete marks

    async def open(self) -> None:
        await super().open()
        self._refresher = asyncio.create_task(self._refresh_forever(), name="fleet-refresh")

    async def _owner(self, session_id: str) -> SessionRecord:
        record = await self._kv(self.registry.get, session_id)
        if record is None:
            raise SessionNotFound(f"session {session_id!r} not found")
        return record

    # -- the manager's interface ---------------------------------------------------------
    def sessions(self) -> list[SessionHandle]:
        return list(self._states.values())

    async def create(self, spec: SessionSpec) -> SessionRooms:
        sid, limit = spec.session_id, self.settings.max_sessions
        records = await self._kv(self.registry.all)
        if any(r.session_id == sid for r in records):
            raise SessionExists(f"session {sid!r} already exists")
        full = TooManySessions(f"session limit reached ({limit}); delete a session first")
        if len(records) >= limit:
            raise full
        # Chosen here, not by the worker: every worker this create tries, and a restore,
        # then use the same rooms (a worker answering after the next was asked made its
        # own workspace, and its rooms were left there).
        workspace = spec.workspace_id or new_workspace()
        spec = replace(spec, workspace_id=workspace)
        clash = camera_room_clash(spec, workspace,
                                  (SessionSpec.from_dict(r.spec) for r in records))
        if clash is not None:
            raise SessionExists(clash)
        candidates = await self._candidates()
        if not await self._kv(self.registry.reserve, record_for(spec, candidates[0])):
            raise SessionExists(f"session {sid!r} already exists")
        reasons = []
        try:
            # Counted again with this reservation in: creates checking the count at once
            # (any API process) all passed it. Racing ones may all step back: none goes over.
            if len(await self._kv(self.registry.session_ids)) > limit:
                raise full
            # After the reservation: a delete that marks the id from now on (a worker's
            # sweep) reads the record again first, and keeps this session's rooms.
            await self._delete_done(sid)
            for index in candidates:
                await self._kv(self.registry.update, sid, owner=index)
                try:
                    rooms = await self._ask(index, "create", spec.to_dict(), wait_restart=False)
                except (TooManySessions, DependencyUnavailable) as exc:
                    if isinstance(exc, DependencyUnavailable) and worker_name(index) not in str(
                            exc):  # Triton or the Arena server: the next worker fares no better
                        raise
                    reasons.append(exc.message)
                    continue
                self._states[sid] = SessionHandle(sid, SessionState.READY)
                return SessionRooms(**rooms)
        except BaseException:
            with contextlib.suppress(Exception):
                await self._kv(self.registry.delete, sid)
            raise
        with contextlib.suppress(Exception):
            await self._kv(self.registry.delete, sid)
        raise DependencyUnavailable("no worker could take the session: " + "; ".join(reasons))

    async def _candidates(self) -> list[int]:
        """Live workers with room, least loaded first; 503 with the reason when none."""
        loads = await self._probe()
        if not loads:
            dead = "; ".join(f"{worker_name(i)}: {why}" for i, why in sorted(self._dead.items()))
            raise DependencyUnavailable(f"no live worker can take a session ({dead})")
        free = sorted((h["sessions"], i) for i, h in loads.items() if h["sessions"] < h["capacity"])
        if not free:
            raise DependencyUnavailable(
                f"every live worker is full ({len(loads)} x {self.settings.worker_max_sessions} "
                "sessions); add workers or delete a session")
        return [i for _, i in free]

    async def delete(self, session_id: str) -> None:
        record = await self._owner(session_id)
        self._marks += 1
        by = f"{API_MARK}{ray.get_runtime_context().get_job_id()}-{self._marks}"
        await self._kv(self.registry.mark_deleting, session_id, by, time.time())
        try:
            # The record goes first: a worker restarting meanwhile does not bring it back.
            await self._kv(self.registry.delete, session_id)
            self._states.pop(session_id, None)
            await self._ask(record.owner, "delete", session_id)
        except SessionNotFound:
            pass
        except DependencyUnavailable as exc:
            log.warning("fleet: session %s deleted from the registry; its worker did not "
                        "answer (%s): its rooms may remain", session_id, exc.message)
        finally:
            with contextlib.suppress(DependencyUnavailable):
                await self._kv(self.registry.clear_deleting, session_id, by)

    async def _delete_done(self, session_id: str) -> None:
        """Deletes of this id under way, in this or another API process or a worker, end
        first (fleet/deletes.py): they remove rooms named as the new session's will be."""
        while marks := await self._kv(self.registry.deletes_of, session_id):
            jobs = await self._kv(live_jobs) if any(m.startswith(API_MARK) for m in marks) \
                else ()
            indices = marking_workers(marks)
            workers = await self._kv(self._workers_of, indices) if indices else set()
            stale = stale_marks(marks, jobs, time.time(), DELETE_BOUND_S, workers)
            for by in stale:
                log.warning("fleet: the delete of %s by %s cannot be running (its process "
                            "is gone, or it began over %.0f s ago): its mark is cleared",
                            session_id, by, DELETE_BOUND_S)
                await self._kv(self.registry.clear_deleting, session_id, by)
            if stale == marks.keys():
                return
            await asyncio.sleep(0.05)

    def _workers_of(self, indices: set[int]) -> set[int]:
        """Those of these workers that Ray still has (running or restarting): a detached
        actor that died for good loses its name."""
        found = set()
        for index in indices:
            with contextlib.suppress(ValueError):
                ray.get_actor(worker_name(index), namespace=self.settings.ray_namespace)
                found.add(index)
        return found

    async def _transition(self, session_id: str, method: str) -> SessionHandle:
        record = await self._owner(session_id)
        if method == "stop":  # the emergency path: recorded even if the worker is restarting
            await self._kv(self.registry.update, session_id, desired="stopped")
        state = SessionState(await self._ask(record.owner, method, session_id))
        self._states[session_id] = handle = SessionHandle(session_id, state)
        return handle

    async def start(self, session_id: str) -> SessionHandle:
        return await self._transition(session_id, "start")

    async def stop(self, session_id: str) -> SessionHandle:
        return await self._transition(session_id, "stop")

    async def restart(self, session_id: str) -> SessionHandle:
        return await self._transition(session_id, "restart")

    async def reset(self, session_id: str) -> None:
        record = await self._owner(session_id)
        await self._ask(record.owner, "reset", session_id)

    async def status(self, session_id: str) -> dict[str, Any]:
        record = await self._owner(session_id)
        status: dict[str, Any] = await self._ask(record.owner, "status", session_id)
        return status

    async def listing(self) -> list[dict[str, Any]]:
        """Every session's status (GET /sessions), asked of their workers at once; one whose
        worker cannot answer now is listed from its record with the reason."""
        async def one(record: SessionRecord) -> dict[str, Any] | None:
            try:
                return dict(await self._ask(record.owner, "status", record.session_id, False,
                                            timeout_s=PROBE_TIMEOUT_S, wait_restart=False))
            except SessionNotFound:
                return None  # deleted while listing, or not created yet
            except SessionError as exc:
                return unavailable_status(record, exc.message)

        records = await self._kv(self.registry.all)
        listed = await asyncio.gather(*(one(r) for r in records if r.desired != "creating"))
        return [status for status in listed if status is not None]

    async def queue_info(self, session_id: str) -> dict[str, Any]:
        record = await self._owner(session_id)
        info: dict[str, Any] = await self._ask(record.owner, "queue_info", session_id)
        return info

    async def triton_status(self) -> dict[str, Any]:
        return {"url": self.triton.url, "server_ready": await self.triton.is_server_ready()}

    async def worker_metrics(self) -> dict[str, list[Family]]:
        """Every live worker's per-session series, by worker name (a worker that does not
        answer at once is left out of this scrape)."""
        if self._ray_error is not None:
            return {}

        async def one(index: int) -> list[Family]:
            try:
                return list(await self._ask(index, "metrics", timeout_s=PROBE_TIMEOUT_S,
                                            wait_restart=False))
            except SessionError:
                return []

        indices = sorted(self._workers)
        parts = await asyncio.gather(*(one(i) for i in indices))
        return {worker_name(i): p for i, p in zip(indices, parts, strict=True) if p}

    async def workers_health(self) -> dict[str, Any]:
        """Which workers answer, for /health: name -> alive, sessions, pid, node, and the
        priority of the thread that ticks their sessions."""
        if self._ray_error is not None:
            return {"ray": f"unreachable: {self._ray_error}"}
        await self._probe()
        out: dict[str, Any] = {}
        for index in sorted(self._workers):
            if index in self._alive:
                h = self._alive[index]
                out[worker_name(index)] = {"alive": True, "sessions": h["sessions"],
                                           "restoring": h["restoring"], "pid": h["pid"],
                                           "node_id": h["node_id"],
                                           "control_priority": h.get("control_priority")}
            else:
                out[worker_name(index)] = {"alive": False, "reason": self._dead.get(index)}
        return out

    # -- the cached listing --------------------------------------------------------------
    async def refresh(self) -> None:
        """Session states from every worker; a dead worker's sessions show as initializing
        (they come back when it does)."""
        records = await self._kv(self.registry.all)
        indices = sorted(self._workers)

        async def listing(index: int) -> dict[str, str]:
            try:
                return dict(await self._ask(index, "list", timeout_s=PROBE_TIMEOUT_S,
                                            wait_restart=False))
            except SessionError:
                return {}

        states: dict[str, str] = {}
        for part in await asyncio.gather(*(listing(i) for i in indices)):
            states.update(part)
        self._states = {
            r.session_id: SessionHandle(
                r.session_id, SessionState(states.get(r.session_id, "initializing")))
            for r in records
        }

    async def _refresh_forever(self) -> None:
        while True:
            await asyncio.sleep(REFRESH_S)
            if self._ray_error is not None:
                continue
            try:
                await self.refresh()
            except Exception as exc:  # Ray going away: keep the last listing, say why
                log.warning("fleet: refresh failed: %s", exc)

    async def close_all(self) -> None:
        """Leave the fleet. A local cluster started here ends with this process: its
        sessions are deleted (rooms too) and the workers stopped; a joined one keeps all."""
        for task in (self._refresher, self._late):
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await task
        try:
            if self._ray_error is not None or not ray.is_initialized():
                return
            if self._owns_cluster:
                await asyncio.gather(*(self._ask(i, "close_all", timeout_s=15,
                                                 wait_restart=False) for i in self._workers),
                                     return_exceptions=True)
                for record in await self._kv(self.registry.all):
                    await self._kv(self.registry.delete, record.session_id)
                for handle in self._workers.values():
                    with contextlib.suppress(Exception):
                        ray.kill(handle, no_restart=True)
            await asyncio.to_thread(ray.shutdown)
        finally:
            self._hold.set()
