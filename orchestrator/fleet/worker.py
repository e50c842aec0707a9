"""One session worker: a Ray async actor hosting the in-process ``SessionManager``.

Its sessions tick on the actor's own event loop, share its one Triton client (one gRPC
channel) and hold their own Arena connections: the tick path never leaves this process.
The API reaches it only for control-plane calls (create, start, status, ...).

Ray restarts a worker that dies (``max_restarts=-1``) by running this constructor again,
with its state gone: it then re-creates its sessions from the registry, rejoins their
rooms, starts the ones that should run and keeps latched ones stopped. A fresh process
has an empty plan: nothing it publishes predates the restart.

Every method answers ``{"ok": value}`` or ``{"error": [class name, status, message]}``:
session errors cross the process boundary as data, and the router raises them again.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import asdict, replace
from typing import Any

from orchestrator.fleet.deletes import WorkerDeletes
from orchestrator.fleet.registry import Desired, Registry, SessionRecord
from orchestrator.observability.metrics import Family, session_families
from orchestrator.sessions import errors
from orchestrator.sessions.errors import (
    CreateAbandoned,
    DependencyUnavailable,
    SessionError,
    SessionNotFound,
)
from orchestrator.sessions.manager import SessionManager
from orchestrator.sessions.session import Session, SessionState
from orchestrator.sessions.spec import SessionSpec
from orchestrator.settings import Settings
from orchestrator.triton.replicas import make_triton

log = logging.getLogger(__name__)

WORKER_PREFIX = "orchestrator-worker-"
RESTORE_RETRY_S = 2.0
Reply = dict[str, Any]


def worker_name(index: int) -> str:
    return f"{WORKER_PREFIX}{index}"


def _ok(value: Any = None) -> Reply:
    return {"ok": value}


def _error(exc: SessionError) -> Reply:
    return {"error": [type(exc).__name__, exc.status_code, exc.message]}


def record_error(error: list[Any]) -> SessionError:
    """The worker's error (``_error``) as the exception it was, on the API's side."""
    name, status, message = error
    cls = getattr(errors, str(name), None)
    if isinstance(cls, type) and issubclass(cls, SessionError):
        return cls(str(message))
    exc = SessionError(str(message))
    exc.status_code = int(status)
    return exc


class SessionWorker:
    """The actor's class (wrapped by ``ray.remote`` in the router)."""

    # Ray awaits an async actor's constructor on the actor's event loop.
    async def __init__(  # type: ignore[misc]
        self, index: int, settings: dict[str, Any], namespace: str
    ) -> None:
        self.settings = Settings(**settings)
        logging.basicConfig(level=self.settings.log_level,
                            format="%(asctime)s %(levelname)s %(name)s: %(message)s")
        self.index = index
        self.name = worker_name(index)
        self.started_at = time.time()
        self.registry = Registry(namespace)
        # Unset: the local stack's own server (as the API process finds it).
        url = self.settings.triton_url or f"127.0.0.1:{self.settings.local_triton_port_base + 1}"
        self.triton = make_triton(url, preferred=index, timeout_s=self.settings.triton_timeout_s,
                                  shared_memory=self.settings.triton_shared_memory,
                                  keepalive_s=self.settings.triton_keepalive_s)
        own = self.settings.model_copy(update={"max_sessions": self.settings.worker_max_sessions})
        self.manager = SessionManager(own, self.triton)
        self._restoring: dict[str, asyncio.Event] = {}
        self._restore_errors: dict[str, str] = {}
        self._writes: set[asyncio.Task[Any]] = set()
        # Registry writes one at a time, in the order they were asked for: each is a read
        # and a write of the whole record, and a latch must not be overwritten by an older
        # start's "running".
        self._write_order = asyncio.Lock()
        self._stops: set[str] = set()  # stops answered while the session was being restored
        self._latches: dict[str, int] = {}  # emergency stops seen, per session
        self.deletes = WorkerDeletes(self.registry, self.manager, index)
        await self.deletes.forget_earlier()
        records = await asyncio.to_thread(self.registry.owned_by, index)
        for record in records:
            if record.desired != "creating":  # a create still under way belongs to its caller
                self._restoring[record.session_id] = asyncio.Event()
        self.restored = len(self._restoring)
        self._restore_task = asyncio.create_task(self._restore(), name="fleet-restore")
        self._sweep_task = asyncio.create_task(
            self.deletes.sweep_forever(lambda: self._restoring), name="fleet-sweep")
        log.info("%s up (pid %d): restoring %d session(s)", self.name, os.getpid(),
                 self.restored)

    # -- recovery ------------------------------------------------------------------------
    async def _restore(self) -> None:
        while self._restoring:
            ids = list(self._restoring)
            await asyncio.gather(*(self._restore_one(sid) for sid in ids))
            if self._restoring:
                await asyncio.sleep(RESTORE_RETRY_S)

    async def _restore_one(self, session_id: str) -> None:
        record = await asyncio.to_thread(self.registry.get, session_id)
        if record is None or record.owner != self.index:  # deleted or moved meanwhile
            self._restored(session_id)
            return
        try:
            session = await self._create(SessionSpec.from_dict(record.spec), rejoin=True)
        except SessionError as exc:
            self._restore_errors[session_id] = exc.message
            log.warning("%s: session %s not restored yet: %s", self.name, session_id, exc.message)
            return
        # Rejoining takes seconds when the room server is slow: the record may have changed
        # meanwhile (a stop, a delete), and the fresh one is what the session must become.
        fresh = await asyncio.to_thread(self.registry.get, session_id)
        if fresh is None or fresh.owner != self.index:
            await self.deletes.close(session_id, delete_rooms=fresh is None)
            self._restored(session_id)
            return
        if fresh.latched:
            # Through the rooms' own path: the session latches as it did before.
            latch = session.joints_in.on_emergency_stop
            if latch is not None:
                latch(fresh.latch_reason)
        if fresh.latched or fresh.desired == "stopped" or session_id in self._stops:
            if session.state == SessionState.READY:
                session.state = SessionState.STOPPED
        elif fresh.desired == "running":
            try:
                await session.start()
            except SessionError as exc:  # e.g. an emergency stop from its room meanwhile
                log.warning("%s: session %s restored but not started: %s", self.name,
                            session_id, exc.message)
            if session_id in self._stops:  # a stop answered while this start was under way
                await session.stop()
        self._restore_errors.pop(session_id, None)
        self._restored(session_id)
        log.info("%s: session %s restored (%s%s)", self.name, session_id, fresh.desired,
                 ", latched" if fresh.latched else "")

    def _restored(self, session_id: str) -> None:
        self._stops.discard(session_id)
        event = self._restoring.pop(session_id, None)
        if event is not None:
            event.set()

    async def _settled(self, session_id: str, timeout_s: float = 10.0) -> None:
        """Calls for a session being restored wait for it (briefly)."""
        event = self._restoring.get(session_id)
        if event is None:
            return
        try:
            if not timeout_s:
                raise TimeoutError
            await asyncio.wait_for(event.wait(), timeout_s)
        except TimeoutError:
            raise DependencyUnavailable(
                f"session {session_id!r} is being restored on {self.name}: "
                f"{self._restore_errors.get(session_id, 'not ready yet')}"
            ) from None

    # -- sessions ------------------------------------------------------------------------
    async def _create(self, spec: SessionSpec, rejoin: bool = False) -> Session:
        await self.manager.create(spec, rejoin=rejoin)
        session = self.manager.get(spec.session_id)
        self._watch_latch(session)
        return session

    def _watch_latch(self, session: Session) -> None:
        """Record an emergency stop from any of the session's rooms, after the session's
        own handler latched it (synchronously, first)."""
        sid = session.session_id
        clients: list[Any] = [session.joints_in, session.commands_out,
                              *session.cameras.values()]
        for client in clients:
            first: Callable[[str], None] | None = client.on_emergency_stop

            def chained(reason: str, first: Callable[[str], None] | None = first) -> None:
                if first is not None:
                    first(reason)
                self._latches[sid] = self._latches.get(sid, 0) + 1
                self._write(sid, desired="stopped", latched=True,
                            latch_reason=reason or "no reason given")

            client.on_emergency_stop = chained

    def _write(self, session_id: str, **changes: Any) -> None:
        task = asyncio.create_task(self._update(session_id, changes))
        self._writes.add(task)
        task.add_done_callback(self._writes.discard)

    async def _update(self, session_id: str, changes: dict[str, Any],
                      if_owner: int | None = None) -> SessionRecord | None:
        async with self._write_order:
            return await asyncio.to_thread(self.registry.update, session_id, if_owner,
                                           **changes)

    async def _desired(self, session_id: str, desired: Desired, clear_latch: bool = True
                       ) -> None:
        changes: dict[str, Any] = {"desired": desired}
        if clear_latch:
            changes.update(latched=False, latch_reason="")
        await self._update(session_id, changes)

    async def _guard(self, call: Callable[[], Awaitable[Any]]) -> Reply:
        try:
            return _ok(await call())
        except SessionError as exc:
            return _error(exc)

    async def create(self, spec: dict[str, Any]) -> Reply:
        async def run() -> Any:
            parsed = SessionSpec.from_dict(spec)
            session = await self._create(parsed)
            rooms = session.rooms()
            # The workspace may have been chosen here: a restart must rejoin that one.
            kept = replace(parsed, workspace_id=rooms.workspace_id).to_dict()
            # Written only while this worker owns the record: a router that gave up on this
            # create (its timeout) has placed the session elsewhere, and that one's desired
            # state and spec are the record's now.
            record = await self._update(parsed.session_id, {"desired": "ready", "spec": kept},
                                        if_owner=self.index)
            if record is None or record.owner != self.index:
                # The caller gave up on this create (its timeout, a delete meanwhile): the
                # session would run here unlisted and unreachable. Its rooms are the new
                # owner's too (the router chose the workspace), unless it was deleted.
                await self.deletes.close(parsed.session_id, delete_rooms=record is None)
                raise CreateAbandoned(f"session {parsed.session_id!r} was deleted or placed "
                                      "elsewhere while it was being created")
            return asdict(rooms)
        return await self._guard(run)

    async def start(self, session_id: str) -> Reply:
        return await self._transition(session_id, "start", "running")

    async def stop(self, session_id: str) -> Reply:
        if session_id in self._restoring:
            # The emergency path waits on no restore: the restore reads this and leaves the
            # session stopped (or stops it, if its start is under way). A latch stays.
            self._stops.add(session_id)
            await self._desired(session_id, "stopped", clear_latch=False)
            return _ok(SessionState.STOPPED.value)
        return await self._transition(session_id, "stop", "stopped")

    async def restart(self, session_id: str) -> Reply:
        return await self._transition(session_id, "restart", "running")

    async def _transition(self, session_id: str, method: str, desired: Desired) -> Reply:
        async def run() -> str:
            await self._settled(session_id)
            seen = self._latches.get(session_id, 0)
            session = await getattr(self.manager, method)(session_id)
            if self._latches.get(session_id, 0) == seen:
                # No await between this check and taking the write lock: an emergency stop
                # from now on is written after this, and its latch stands.
                await self._desired(session_id, desired)
            return str(session.state.value)
        return await self._guard(run)

    async def delete(self, session_id: str) -> Reply:
        async def run() -> None:
            await self._settled(session_id)
            await self.deletes.close(session_id)
            self._latches.pop(session_id, None)
        return await self._guard(run)

    async def reset(self, session_id: str) -> Reply:
        async def run() -> None:
            await self._settled(session_id)
            await self.manager.reset(session_id)
        return await self._guard(run)

    async def status(self, session_id: str, wait: bool = True) -> Reply:
        async def run() -> dict[str, Any]:
            await self._settled(session_id, 10.0 if wait else 0.0)
            status = await self.manager.status(session_id)
            status["stats"]["worker"] = {"name": self.name, "pid": os.getpid(),
                                         "up_s": round(time.time() - self.started_at, 3)}
            return status
        return await self._guard(run)

    async def queue_info(self, session_id: str) -> Reply:
        async def run() -> dict[str, Any]:
            await self._settled(session_id)
            return self.manager.get(session_id).queue_info()
        return await self._guard(run)

    async def list(self) -> Reply:
        states = {s.session_id: s.state.value for s in self.manager.sessions()}
        states.update({sid: SessionState.INITIALIZING.value for sid in self._restoring})
        return _ok(states)  # wrapped: a session may be called "ok" or "error"

    async def health(self) -> dict[str, Any]:
        import ray

        return {
            "name": self.name, "index": self.index, "pid": os.getpid(),
            "node_id": ray.get_runtime_context().get_node_id(),
            "sessions": len(self.manager.sessions()) + len(self._restoring),
            "capacity": self.settings.worker_max_sessions,
            "restoring": sorted(self._restoring), "restore_errors": dict(self._restore_errors),
            "restored_at_boot": self.restored, "started_at": self.started_at,
            "control_priority": self.manager.priority.describe(),
        }

    async def metrics(self) -> Sequence[Family]:
        """This worker's per-session series, for the API's /metrics."""
        return session_families()

    async def pid(self) -> int:
        return os.getpid()

    async def close_all(self) -> None:
        """Delete every session of this worker (the local fleet shutting down)."""
        self._restore_task.cancel()
        self._sweep_task.cancel()
        await self.manager.close_all()
        await self.triton.close()


def not_found(session_id: str) -> SessionNotFound:
    return SessionNotFound(f"session {session_id!r} not found")


def record_for(spec: SessionSpec, owner: int) -> SessionRecord:
    return SessionRecord(session_id=spec.session_id, owner=owner, spec=spec.to_dict(),
                         desired="creating", created_at=time.time())


def unavailable_status(record: SessionRecord, reason: str) -> dict[str, Any]:
    """A session's status, from its record, while its worker cannot say (restarting, being
    restored): listed as initializing, with the reason, rather than left out."""
    spec = SessionSpec.from_dict(record.spec)
    return {
        "session_id": spec.session_id, "status": SessionState.INITIALIZING.value,
        "policy_path": spec.policy_path, "policy_type": spec.policy_type,
        "language_instruction": spec.language_instruction,
        "camera_names": list(spec.camera_names), "workspace_id": spec.workspace_id or "",
        "rooms": {"workspace_id": spec.workspace_id or "", "arena_server_url": spec.arena_url},
        "stats": {"inference_count": 0, "commands_sent": 0, "errors": 0,
                  "actions_in_queue": 0, "worker": {"name": worker_name(record.owner),
                                                    "available": False}},
        "error_message": reason,
    }
