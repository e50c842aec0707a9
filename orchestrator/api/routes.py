"""HTTP routes: parse, call the session manager, return. Errors are mapped in app.py.

Function names are the seed contract's: FastAPI derives the operationIds from them."""

from __future__ import annotations

import asyncio
import logging
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Query, Request

from orchestrator.api.schemas import (
    CreateSessionRequest,
    CreateSessionResponse,
    ErrorResponse,
    SessionStatusResponse,
)
from orchestrator.api.service import SessionService
from orchestrator.observability.system import system_info
from orchestrator.sessions.errors import SessionNotFound

router = APIRouter()

_ERRORS: dict[int | str, dict[str, Any]] = {
    code: {"model": ErrorResponse, "description": text}
    for code, text in (
        (404, "Unknown session or model"),
        (409, "Session exists, was deleted while being created, or transition not allowed"),
        (503, "Triton or the Arena server is unreachable"),
    )
}
_CREATE_ERRORS: dict[int | str, dict[str, Any]] = {
    **_ERRORS,
    400: {"model": ErrorResponse, "description": "Request cannot be served as given"},
    403: {"model": ErrorResponse, "description": "Arena host not allowed"},
    429: {"model": ErrorResponse, "description": "Session limit reached"},
    502: {"model": ErrorResponse, "description": "The Arena server refused (answered 4xx)"},
}


def _manager(request: Request) -> SessionService:
    manager: SessionService = request.app.state.manager
    return manager


@router.get("/", tags=["Health"])
async def root(request: Request) -> dict[str, Any]:
    base = request.scope.get("root_path", "").rstrip("/")
    return {
        "name": "ACT policy orchestrator",
        "status": "healthy",
        "docs": f"{base}/docs",
        "health": f"{base}/health",
        "sessions": f"{base}/sessions",
    }


@router.get("/health", tags=["Health"])
async def health_check(request: Request) -> dict[str, Any]:
    manager = _manager(request)
    triton_ready = await manager.triton.is_server_ready()
    return {
        "status": "healthy" if triton_ready else "degraded",
        "triton_ready": triton_ready,
        "active_sessions": len(manager.sessions()),
        # The tick thread's CPU priority, where sessions run here (ORCHESTRATOR_CONTROL_NICE).
        **({"control_priority": priority.describe()}
           if (priority := getattr(manager, "priority", None)) else {}),
        # Sessions in Ray workers: which workers answer (absent when sessions run here).
        **({"workers": await workers()} if (workers := getattr(manager, "workers_health", None))
           else {}),
    }


@router.get("/sessions", tags=["Sessions"], response_model=list[SessionStatusResponse])
async def list_sessions(request: Request) -> list[SessionStatusResponse]:
    manager = _manager(request)
    if (listing := getattr(manager, "listing", None)) is not None:  # sessions in workers
        return [SessionStatusResponse(**status) for status in await listing()]

    async def one(session_id: str) -> SessionStatusResponse | None:
        try:
            return SessionStatusResponse(**await manager.status(session_id))
        except SessionNotFound:  # deleted while we were listing
            return None

    # At once: each status asks Triton for its model's figures (a frozen one: seconds each).
    listed = await asyncio.gather(*(one(s.session_id) for s in manager.sessions()))
    return [status for status in listed if status is not None]


@router.post(
    "/sessions", tags=["Sessions"], response_model=CreateSessionResponse, responses=_CREATE_ERRORS
)
async def create_session(body: CreateSessionRequest, request: Request) -> CreateSessionResponse:
    return CreateSessionResponse.of(await _manager(request).create(body.to_spec()))


@router.get(
    "/sessions/{session_id}",
    tags=["Sessions"],
    response_model=SessionStatusResponse,
    responses=_ERRORS,
)
async def get_session_status(session_id: str, request: Request) -> SessionStatusResponse:
    return SessionStatusResponse(**await _manager(request).status(session_id))


@router.delete("/sessions/{session_id}", tags=["Sessions"], responses=_ERRORS)
async def delete_session(session_id: str, request: Request) -> dict[str, Any]:
    await _manager(request).delete(session_id)
    return {"message": f"session {session_id} deleted", "session_id": session_id}


@router.post("/sessions/{session_id}/start", tags=["Control"], responses=_ERRORS)
async def start_inference(session_id: str, request: Request) -> dict[str, Any]:
    session = await _manager(request).start(session_id)
    state = session.state.value
    if state == "initializing":  # its model is still being exported or loaded
        return {"message": f"session {session_id} starts when its model is ready",
                "status": state}
    return {"message": f"session {session_id} started", "status": state}


@router.post("/sessions/{session_id}/stop", tags=["Control"], responses=_ERRORS)
async def stop_inference(session_id: str, request: Request) -> dict[str, Any]:
    session = await _manager(request).stop(session_id)
    return {"message": f"session {session_id} stopped", "status": session.state.value}


@router.post("/sessions/{session_id}/restart", tags=["Control"], responses=_ERRORS)
async def restart_inference(session_id: str, request: Request) -> dict[str, Any]:
    session = await _manager(request).restart(session_id)
    state = session.state.value
    if state == "initializing":
        return {"message": f"session {session_id} starts when its model is ready",
                "status": state}
    return {"message": f"session {session_id} restarted", "status": state}


@router.get("/debug/system", tags=["Debug"])
async def get_system_info(request: Request) -> dict[str, Any]:
    manager = _manager(request)
    info = system_info()
    info["triton"] = await manager.triton_status()
    info["sessions"] = {s.session_id: s.state.value for s in manager.sessions()}
    return info


@router.get("/debug/logs", tags=["Debug"])
async def get_recent_logs(
    request: Request,
    limit: Annotated[int, Query(ge=1, le=5000)] = 100,
    level: Literal["DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"] = "DEBUG",
) -> dict[str, Any]:
    records = request.app.state.log_ring.recent(limit, logging.getLevelNamesMapping()[level])
    return {"logs": records, "count": len(records)}


@router.post("/debug/sessions/{session_id}/reset", tags=["Debug"], responses=_ERRORS)
async def debug_reset_session(session_id: str, request: Request) -> dict[str, Any]:
    await _manager(request).reset(session_id)
    return {"message": f"session {session_id} reset: plan and joint state cleared"}


@router.get("/debug/sessions/{session_id}/queue", tags=["Debug"], responses=_ERRORS)
async def get_session_queue_info(session_id: str, request: Request) -> dict[str, Any]:
    return await _manager(request).queue_info(session_id)
