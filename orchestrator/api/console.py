"""The operator's console (a static page that uses the public API only) and ``GET /models``,
the models Triton serves with what a session needs to know about them."""

from __future__ import annotations

import logging
import mimetypes
from pathlib import Path

from fastapi import APIRouter, HTTPException, Request
from fastapi.responses import FileResponse
from pydantic import BaseModel

from orchestrator.api.schemas import ErrorResponse
from orchestrator.sessions.manager import SessionManager
from orchestrator.triton.errors import TritonError, TritonUnavailable
from orchestrator.triton.model_contract import ContractError

log = logging.getLogger(__name__)

STATIC = Path(__file__).parent / "static" / "console"
# Only the files shipped with the package are served: the name is looked up, never joined.
_ASSETS = {p.name: p for p in STATIC.iterdir() if p.is_file()} if STATIC.is_dir() else {}
_NO_CACHE = {"Cache-Control": "no-cache"}

console_router = APIRouter()


class ModelInfo(BaseModel):
    name: str
    versions: list[str]
    cameras: list[str]
    image_sizes: dict[str, list[int]]
    state_joints: list[str]
    action_joints: list[str]
    chunk_size: int
    fps: float
    demo: bool


@console_router.get("/console", include_in_schema=False)
async def console_page() -> FileResponse:
    return FileResponse(STATIC / "index.html", media_type="text/html", headers=_NO_CACHE)


@console_router.get("/console/{asset}", include_in_schema=False)
async def console_asset(asset: str) -> FileResponse:
    path = _ASSETS.get(asset)
    if path is None:
        raise HTTPException(404, f"no console asset {asset!r}")
    media_type = mimetypes.guess_type(path.name)[0] or "application/octet-stream"
    return FileResponse(path, media_type=media_type, headers=_NO_CACHE)


@console_router.get(
    "/models",
    tags=["Sessions"],
    response_model=list[ModelInfo],
    responses={503: {"model": ErrorResponse, "description": "Triton is unreachable"}},
)
async def list_models(request: Request) -> list[ModelInfo]:
    """The ACT policies Triton serves (ready versions), with their cameras and joints: what
    ``policy_path`` and ``camera_names`` of a new session can be."""
    manager: SessionManager = request.app.state.manager
    try:
        index = await manager.triton.repository_index()
    except TritonError as exc:
        raise HTTPException(503, f"Triton is unreachable: {exc}") from exc
    ready: dict[str, list[str]] = {}
    for name, version, state in index:
        if state == "READY":
            versions = ready.setdefault(name, [])
            if version:
                versions.append(version)
    out = []
    for name, versions in sorted(ready.items()):
        try:
            c = await manager.triton.contract(name)
        except TritonUnavailable as exc:
            raise HTTPException(503, f"Triton is unreachable: {exc}") from exc
        except (TritonError, ContractError) as exc:  # not an ACT policy, or just unloaded
            log.debug("model %s left out of /models: %s", name, exc)
            continue
        out.append(ModelInfo(
            name=name, versions=sorted(versions, key=lambda v: (len(v), v)),
            cameras=list(c.cameras), image_sizes={k: list(v) for k, v in c.image_sizes.items()},
            state_joints=list(c.state_names), action_joints=list(c.action_names),
            chunk_size=c.chunk_size, fps=c.fps, demo=c.is_demo,
        ))
    return out
