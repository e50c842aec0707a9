"""The registry of sessions: create (validate, resolve the model, open rooms), look up,
drive the lifecycle, delete. Route handlers call this and nothing below it."""

from __future__ import annotations

import asyncio
import logging
import uuid
from typing import Any

from orchestrator.api.schemas import CreateSessionRequest, CreateSessionResponse
from orchestrator.sessions.errors import (
    DependencyUnavailable,
    InvalidSessionRequest,
    PolicyNotFound,
    SessionExists,
    SessionNotFound,
    TooManySessions,
)
from orchestrator.sessions.policy import check_arena_url, parse_policy_path
from orchestrator.sessions.session import Session, SessionConfig
from orchestrator.settings import Settings
from orchestrator.triton.client import ModelNotReady, TritonClient, TritonError, TritonUnavailable
from orchestrator.triton.model_contract import ContractError, ModelContract

log = logging.getLogger(__name__)


class SessionManager:
    def __init__(self, settings: Settings, triton: TritonClient) -> None:
        self.settings = settings
        self.triton = triton
        self._sessions: dict[str, Session] = {}
        self._pending: set[str] = set()  # ids being created: a second create gets 409
        self._lock = asyncio.Lock()

    # -- lookups -------------------------------------------------------------------------
    def sessions(self) -> list[Session]:
        return list(self._sessions.values())

    def get(self, session_id: str) -> Session:
        try:
            return self._sessions[session_id]
        except KeyError:
            raise SessionNotFound(f"session {session_id!r} not found") from None

    # -- create / delete -----------------------------------------------------------------
    async def create(self, request: CreateSessionRequest) -> CreateSessionResponse:
        sid = request.session_id
        async with self._lock:
            if sid in self._sessions or sid in self._pending:
                raise SessionExists(f"session {sid!r} already exists")
            if len(self._sessions) + len(self._pending) >= self.settings.max_sessions:
                raise TooManySessions(
                    f"session limit reached ({self.settings.max_sessions}); delete a session first"
                )
            self._pending.add(sid)
        try:
            config = await self._resolve(request)
            session = Session(config, self.triton)
            await session.open()  # cleans up after itself on failure
            self._sessions[sid] = session
        finally:
            self._pending.discard(sid)
        log.info(
            "session %s created: model %s, workspace %s, cameras %s",
            sid, config.policy, config.workspace_id, list(config.cameras),
        )
        return session.create_response()

    async def delete(self, session_id: str) -> None:
        session = self.get(session_id)
        self._sessions.pop(session_id, None)
        await session.close(delete_rooms=True)
        log.info("session %s deleted", session_id)

    async def close_all(self) -> None:
        sessions, self._sessions = list(self._sessions.values()), {}
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

    async def status(self, session_id: str) -> dict[str, Any]:
        """The session's status with the shared model's batching figures from Triton."""
        session = self.get(session_id)
        status = session.status()
        ref = session.config.policy
        try:
            stats = await self.triton.statistics(ref.name, ref.version)
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

    async def triton_status(self) -> dict[str, Any]:
        ready = await self.triton.is_server_ready()
        models: dict[str, Any] = {}
        for session in self.sessions():
            ref = session.config.policy
            if str(ref) not in models:
                models[str(ref)] = await self.triton.is_model_ready(ref.name, ref.version)
        return {"url": self.triton.url, "server_ready": ready, "models_ready": models}

    # -- validation ----------------------------------------------------------------------
    async def _resolve(self, request: CreateSessionRequest) -> SessionConfig:
        s = self.settings
        cameras = list(request.camera_names)
        if not cameras or len(cameras) > s.max_cameras_per_session:
            raise InvalidSessionRequest(
                f"camera_names must list 1..{s.max_cameras_per_session} cameras, got {len(cameras)}"
            )
        if len(set(cameras)) != len(cameras) or not all(
            c and c.replace("_", "").replace("-", "").isalnum() and len(c) <= 64 for c in cameras
        ):
            raise InvalidSessionRequest(
                f"camera_names must be unique names of letters, digits, '_' or '-': {cameras}"
            )
        arena_url = check_arena_url(request.arena_server_url, s.arena_default_url,
                                    s.arena_allowlist)
        policy = parse_policy_path(request.policy_path)
        contract = await self._contract(policy.name, policy.version)
        if sorted(cameras) != sorted(contract.cameras):
            raise InvalidSessionRequest(
                f"camera_names {cameras} do not match the cameras of model {policy}: "
                f"{list(contract.cameras)}"
            )
        if request.joint_limits:
            unknown = sorted(set(request.joint_limits) - set(contract.action_names))
            bad = [j for j, (lo, hi) in request.joint_limits.items() if not lo < hi]
            if unknown or bad:
                raise InvalidSessionRequest(
                    f"joint_limits: unknown joints {unknown} (model joints: "
                    f"{list(contract.action_names)}); low must be below high for {bad}"
                )
        if request.joint_aliases:
            targets = set(contract.state_names) | set(contract.action_names)
            unknown = sorted(set(request.joint_aliases.values()) - targets)
            if unknown:
                raise InvalidSessionRequest(
                    f"joint_aliases map to joints the model does not have: {unknown} "
                    f"(model joints: {list(contract.state_names)})"
                )
        workspace = request.workspace_id or str(uuid.uuid4())
        if not workspace.replace("-", "").replace("_", "").isalnum():
            raise InvalidSessionRequest(
                f"workspace_id {workspace!r} may hold only letters, digits, '-' and '_'"
            )
        return SessionConfig.from_request(request, s, contract, policy, arena_url, workspace)

    async def _contract(self, name: str, version: str) -> ModelContract:
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
            raise DependencyUnavailable(f"Triton could not describe model {name!r}: {exc}") from exc
