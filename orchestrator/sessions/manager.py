"""The registry of sessions: create (validate, resolve the model, open rooms), look up,
drive the lifecycle, delete. Route handlers call this and nothing below it."""

from __future__ import annotations

import asyncio
import logging
import math
import uuid
from dataclasses import replace
from typing import Any

from orchestrator.control.freshness import JOINTS
from orchestrator.exports.source import FolderSource, HubSource, parse_source
from orchestrator.observability.metrics import GC_PAUSES
from orchestrator.sessions.collector import PACED, freeze_boot_objects, set_full_after
from orchestrator.sessions.config import ModelBinding, SessionConfig, staleness
from orchestrator.sessions.errors import (
    CreateAbandoned,
    InvalidSessionRequest,
    SessionExists,
    SessionNotFound,
    TooManySessions,
)
from orchestrator.sessions.policy import (
    PolicyRef,
    check_arena_url,
    parse_policy_path,
    through_loopback_alias,
)
from orchestrator.sessions.priority import ControlPriority
from orchestrator.sessions.provision import ModelProvider, ProvisionFailed, watch_step
from orchestrator.sessions.session import Session
from orchestrator.sessions.spec import (
    SERVED_POLICY_TYPES,
    SessionRooms,
    SessionSpec,
    camera_room_clash,
)
from orchestrator.settings import Settings
from orchestrator.triton.client import PROBE_TIMEOUT_S, TritonClient
from orchestrator.triton.errors import TritonError
from orchestrator.triton.model_contract import ModelContract

log = logging.getLogger(__name__)
STATUS_STATS_TIMEOUT_S = 2.0


class SessionManager:
    def __init__(self, settings: Settings, triton: TritonClient) -> None:
        self.settings = settings
        self.triton = triton
        self._sessions: dict[str, Session] = {}
        # Ids being created (a second create gets 409), with their config once validated.
        self._pending: dict[str, SessionConfig | None] = {}
        self._abandoned: set[str] = set()  # ids deleted while being created
        self._closing: dict[str, asyncio.Event] = {}  # ids being deleted: set when done
        self._lock = asyncio.Lock()
        self.models = ModelProvider(settings, triton)
        self._provisioning: dict[str, asyncio.Task[None]] = {}  # session id -> its wait
        # Built on the event loop's thread (the app's lifespan, a worker's constructor): the
        # thread that will tick the sessions.
        self.priority = ControlPriority(settings.control_nice,
                                        settings.control_realtime_priority)
        self.priority.apply()
        if settings.gc_freeze:
            freeze_boot_objects()  # before any session: what is alive now lives for good
        GC_PAUSES.install()  # every session's tick waits for a collection: count them
        if settings.gc_full_after is not None:
            set_full_after(settings.gc_full_after)
        PACED.enabled = settings.gc_paced  # process-wide, read as each scheduler starts

    # -- lookups -------------------------------------------------------------------------
    def sessions(self) -> list[Session]:
        return list(self._sessions.values())

    def get(self, session_id: str) -> Session:
        try:
            return self._sessions[session_id]
        except KeyError:
            raise SessionNotFound(f"session {session_id!r} not found") from None

    # -- create / delete -----------------------------------------------------------------
    async def create(self, spec: SessionSpec, *, rejoin: bool = False) -> SessionRooms:
        """``rejoin``: keep the session's rooms if they exist (a restarted fleet worker)."""
        sid = spec.session_id
        closing = self._closing.get(sid)
        if closing is not None:
            # Its rooms carry the same names: they go first, or the old session's close
            # would delete the new one's (a create sent while that delete was under way).
            await closing.wait()
        async with self._lock:
            if sid in self._sessions or sid in self._pending:
                raise SessionExists(f"session {sid!r} already exists")
            if len(self._sessions) + len(self._pending) >= self.settings.max_sessions:
                raise TooManySessions(
                    f"session limit reached ({self.settings.max_sessions}); delete a session first"
                )
            self._pending[sid] = None
        try:
            config = self._validate(spec)
            self._claim_rooms(config)
            served, source = await self._resolve_model(spec, config)
            if sid in self._abandoned:  # deleted during the model check: no room is made
                raise CreateAbandoned(f"session {sid!r} was deleted while it was being created")
            session = Session(config, self.triton)
            await session.open(rejoin=rejoin)  # cleans up after itself on failure
            if served is not None:
                await self._attach(session, spec, *served, rejoin=rejoin)
            if sid in self._abandoned:  # deleted meanwhile: it must not appear afterwards
                await session.close(delete_rooms=not rejoin)
                raise CreateAbandoned(f"session {sid!r} was deleted while it was being created")
            self._sessions[sid] = session
        finally:
            self._pending.pop(sid, None)
            if sid in self._abandoned:  # its delete, and a create of the id, wait for this
                self._abandoned.discard(sid)
                self._closing.pop(sid).set()
        if served is None:
            assert source is not None
            self._provisioning[sid] = asyncio.create_task(
                self._provide(session, source), name=f"provide-{sid}")
        log.info(
            "session %s created: model %s, workspace %s, cameras %s", sid,
            served[0] if served else f"{spec.policy_path} (exporting)", config.workspace_id,
            list(config.cameras),
        )
        return session.rooms()

    def _claim_rooms(self, config: SessionConfig) -> None:
        """Refuse video rooms another session here has (409); hold them while creating."""
        configs = [s.config for s in self._sessions.values()]
        configs += [c for c in self._pending.values() if c is not None]
        clash = camera_room_clash(config.spec, config.workspace_id, (
            replace(c.spec, workspace_id=c.workspace_id) for c in configs))
        if clash is not None:
            raise SessionExists(clash)
        self._pending[config.session_id] = config

    async def _attach(self, session: Session, spec: SessionSpec, policy: PolicyRef,
                      contract: ModelContract, *, rejoin: bool) -> None:
        """Bind the model to an opened session; on failure close it (its rooms, connections
        and tasks go) and say why: a limit or alias the control loop refuses is the
        request's fault."""
        try:
            await session.attach(ModelBinding.create(spec, self.settings, policy, contract))
        except BaseException as exc:
            await session.close(delete_rooms=not rejoin)  # a rejoin keeps the robot's rooms
            if isinstance(exc, ValueError):
                raise InvalidSessionRequest(f"session {spec.session_id!r}: {exc}") from exc
            raise

    async def delete(self, session_id: str, *, delete_rooms: bool = True) -> None:
        """Close the session; ``delete_rooms=False`` leaves its rooms to whoever owns it now
        (a fleet worker dropping a session that moved to another worker). One still being
        created is closed, rooms and all, by its create (which then answers 409); this
        answers when that is done, as for any delete: the id is free to create again."""
        if session_id in self._pending and session_id not in self._sessions:
            self._abandoned.add(session_id)
            ended = self._closing.setdefault(session_id, asyncio.Event())
            log.info("session %s deleted while being created", session_id)
            await ended.wait()
            return
        closing = self._closing.get(session_id)
        if closing is not None and session_id not in self._sessions:
            # Another delete of it is under way: this one answers once the rooms are gone,
            # so whoever re-creates the id after either answer finds them free.
            await closing.wait()
            raise SessionNotFound(f"session {session_id!r} not found (it was being deleted)")
        session = self.get(session_id)
        self._sessions.pop(session_id, None)
        waiting = self._provisioning.pop(session_id, None)
        if waiting is not None:  # the export goes on for others; this session stops waiting
            waiting.cancel()
        done = self._closing[session_id] = asyncio.Event()
        try:
            await session.close(delete_rooms=delete_rooms)
        finally:
            del self._closing[session_id]
            done.set()
        log.info("session %s deleted", session_id)

    async def close_all(self) -> None:
        sessions, self._sessions = list(self._sessions.values()), {}
        for waiting in self._provisioning.values():
            waiting.cancel()
        self._provisioning.clear()
        await asyncio.gather(*(s.close(delete_rooms=True) for s in sessions),
                             return_exceptions=True)

    # -- lifecycle -----------------------------------------------------------------------
    async def start(self, session_id: str) -> Session:
        session = self.get(session_id)
        await session.start()
        return session

    async def stop(self, session_id: str) -> Session:
        session = self.get(session_id)
        await session.stop()
        return session

    async def restart(self, session_id: str) -> Session:
        session = self.get(session_id)
        await session.restart()
        return session

    async def reset(self, session_id: str) -> None:
        await self.get(session_id).reset()

    async def queue_info(self, session_id: str) -> dict[str, Any]:
        return self.get(session_id).queue_info()

    async def status(self, session_id: str) -> dict[str, Any]:
        """The session's status with the shared model's batching figures from Triton."""
        session = self.get(session_id)
        status = session.status()
        if session.binding is None:
            return status
        ref = session.binding.policy
        try:
            # A status is polled by pages: a frozen Triton costs it seconds, not the
            # control calls' timeout.
            stats = await self.triton.statistics(ref.name, ref.version,
                                                 timeout_s=STATUS_STATS_TIMEOUT_S)
            status["stats"]["triton"] = {
                "model": str(ref),
                "inference_count": stats.inference_count,
                "execution_count": stats.execution_count,
                "average_batch_size": round(stats.average_batch_size, 3),
                "batch_sizes": {str(k): v for k, v in stats.batch_sizes.items()},
                "note": "model-wide, all sessions sharing this model",
            }
        except TritonError as exc:
            status["stats"]["triton"] = {"model": str(ref), "error": str(exc)}
        return status

    async def worker_metrics(self) -> dict[str, Any]:
        """Per-session metrics held by other processes: none, sessions live here."""
        return {}

    async def triton_status(self) -> dict[str, Any]:
        refs = {str(s.binding.policy): s.binding.policy for s in self.sessions() if s.binding}
        # All at once, each within a probe's bound: one after another, a stalled server
        # held the answer for as many bounds as there are models.
        ready, *models = await asyncio.gather(self.triton.is_server_ready(), *(
            self.triton.is_model_ready(r.name, r.version, timeout_s=PROBE_TIMEOUT_S)
            for r in refs.values()))
        return {"url": self.triton.url, "server_ready": ready,
                "models_ready": dict(zip(refs, models, strict=True))}

    # -- validation ----------------------------------------------------------------------
    def _validate(self, spec: SessionSpec) -> SessionConfig:
        """Everything that needs no server: cameras, policy type, Arena URL, workspace."""
        s = self.settings
        if spec.policy_type.strip().lower() not in SERVED_POLICY_TYPES:
            raise InvalidSessionRequest(
                f"policy_type {spec.policy_type!r} is not served here: this server serves "
                f"{', '.join(SERVED_POLICY_TYPES)} policies only (policy_type 'act')"
            )
        cameras = list(spec.camera_names)
        if not cameras or len(cameras) > s.max_cameras_per_session:
            raise InvalidSessionRequest(
                f"camera_names must list 1..{s.max_cameras_per_session} cameras, got {len(cameras)}"
            )
        if len(set(cameras)) != len(cameras) or not all(
            _plain(c) and len(c) <= 64 for c in cameras
        ):
            raise InvalidSessionRequest(
                f"camera_names must be unique names of letters, digits, '_' or '-': {cameras}"
            )
        if JOINTS in cameras:  # the joint state's name among the sources in every status
            raise InvalidSessionRequest(
                f"camera name {JOINTS!r} is reserved for the joint state; rename the camera")
        stale_after_s, latency = staleness(spec, s)
        if latency is not None and latency >= stale_after_s:
            raise InvalidSessionRequest(
                f"camera_latency_s {latency} must be below stale_after_s {stale_after_s}: "
                "every frame would be past the staleness limit when it arrives, and no chunk "
                "would ever be asked")
        arena_url = through_loopback_alias(check_arena_url(
            spec.arena_url or s.arena_default_url, s.arena_default_url, s.arena_allowlist),
            s.arena_loopback_url)
        workspace = spec.workspace_id or str(uuid.uuid4())
        if not _plain(workspace):
            raise InvalidSessionRequest(
                f"workspace_id {workspace!r} must be letters, digits, '-' and '_', with at "
                "least one letter or digit"
            )
        return SessionConfig.from_spec(spec, s, arena_url, workspace)

    async def _resolve_model(
        self, spec: SessionSpec, config: SessionConfig
    ) -> tuple[tuple[PolicyRef, ModelContract] | None, HubSource | FolderSource | None]:
        """A served model for ``policy_path`` (checked against the request), or the source
        to export on demand once the session exists (checked as far as it can be now)."""
        try:
            source = parse_source(spec.policy_path)
        except ValueError as exc:
            raise InvalidSessionRequest(f"policy_path: {exc}") from exc
        if source is None:
            policy = parse_policy_path(spec.policy_path)
            contract = await self.models.contract(policy.name, policy.version)
            self._check_model(spec, policy, contract)
            return (policy, contract), None
        served = await self.models.find_served(source)
        if served is not None:
            self._check_model(spec, *served)
            return served, None
        checkpoint = await self.models.check_source(source)
        if sorted(config.cameras) != sorted(checkpoint.cameras):
            raise InvalidSessionRequest(
                f"camera_names {list(config.cameras)} do not match the cameras of "
                f"{spec.policy_path}: {list(checkpoint.cameras)}"
            )
        return None, source

    @staticmethod
    def _check_model(spec: SessionSpec, policy: PolicyRef, contract: ModelContract) -> None:
        cameras = list(spec.camera_names)
        if sorted(cameras) != sorted(contract.cameras):
            raise InvalidSessionRequest(
                f"camera_names {cameras} do not match the cameras of model {policy}: "
                f"{list(contract.cameras)}"
            )
        if spec.joint_limits:
            unknown = sorted(set(spec.joint_limits) - set(contract.action_names))
            bad = [j for j, (lo, hi) in spec.joint_limits.items()
                   if not (math.isfinite(lo) and math.isfinite(hi) and lo < hi)]
            if unknown or bad:
                raise InvalidSessionRequest(
                    f"joint_limits: unknown joints {unknown} (model joints: "
                    f"{list(contract.action_names)}); low must be below high, both finite, "
                    f"for {bad}"
                )
        if spec.joint_aliases:
            targets = set(contract.state_names) | set(contract.action_names)
            unknown = sorted(set(spec.joint_aliases.values()) - targets)
            if unknown:
                raise InvalidSessionRequest(
                    f"joint_aliases map to joints the model does not have: {unknown} "
                    f"(model joints: {list(contract.state_names)})"
                )

    # -- on-demand export ----------------------------------------------------------------
    async def _provide(self, session: Session, source: HubSource | FolderSource) -> None:
        """Wait for the shared export of ``source``, then bind its model to the session.
        A failure is this session's error only: nothing else is touched."""
        job = self.models.provision(source)
        stop_watching = watch_step(job, lambda step: setattr(session, "init_step", step))
        try:
            assert job.task is not None
            policy, contract = await asyncio.shield(job.task)
            spec = session.config.spec
            self._check_model(spec, policy, contract)
            await session.attach(ModelBinding.create(spec, self.settings, policy, contract))
        except asyncio.CancelledError:
            raise
        except (ProvisionFailed, TritonError) as exc:
            session.fail(str(exc))
        except Exception as exc:  # a session error (camera mismatch...) or a bug: say why
            message = getattr(exc, "message", None) or f"{type(exc).__name__}: {exc}"
            log.warning("session %s: model for %s not ready: %s", session.session_id,
                        source, message)
            session.fail(message)
        finally:
            stop_watching()
            self._provisioning.pop(session.session_id, None)


def _plain(name: str) -> bool:
    """ASCII letters, digits, '_' and '-' (str.isalnum alone also takes any script's)."""
    return bool(name) and name.isascii() and name.replace("_", "").replace("-", "").isalnum()
