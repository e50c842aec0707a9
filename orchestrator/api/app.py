"""The FastAPI application: one lifespan owns the Triton client and the session manager."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.middleware.cors import CORSMiddleware
from fastapi.openapi.docs import (
    get_redoc_html,
    get_swagger_ui_html,
    get_swagger_ui_oauth2_redirect_html,
)
from fastapi.openapi.utils import get_openapi
from fastapi.responses import HTMLResponse, JSONResponse

from orchestrator.api.auth import ApiKeyMiddleware
from orchestrator.api.console import console_router
from orchestrator.api.internal_errors import InternalErrors, validation_error
from orchestrator.api.prefix import PrefixAlias
from orchestrator.api.routes import router
from orchestrator.api.service import SessionService
from orchestrator.observability.logs import install_log_ring
from orchestrator.observability.metrics import GC_PAUSES, metrics_router
from orchestrator.sessions.errors import SessionError
from orchestrator.sessions.manager import SessionManager
from orchestrator.settings import Settings
from orchestrator.triton.client import TritonClient
from orchestrator.triton.replicas import make_triton

log = logging.getLogger(__name__)

TAGS = [
    {"name": "Health", "description": "Health check and server status endpoints"},
    {"name": "Sessions", "description": "Inference session management - create, control, and "
     "monitor AI sessions"},
    {"name": "Control", "description": "Session control operations - start, stop, restart "
     "inference"},
    {"name": "Debug", "description": "Debug and monitoring endpoints for system diagnostics"},
    {"name": "Metrics", "description": "Prometheus metrics"},
]

DESCRIPTION = """
Serves LeRobot ACT policies to many robots at once. Each session reads camera frames and
joint positions from Arena rooms, sends observations to NVIDIA Triton (whose dynamic
batcher merges all sessions' requests) and publishes joint commands at a fixed rate.

Joint values are **normalized**: -100..100 for arm joints, 0..100 for the gripper.
`policy_path` names a model in Triton's repository (`NAME` or `NAME:VERSION`); export a
LeRobot checkpoint with `python -m export CHECKPOINT --repository model_repository --name NAME`,
or name a Hugging Face hub repo id / checkpoint folder to have it exported on demand.

The same API answers at the root and under `/api`; browser pages may call it (CORS).
"""


def create_app(settings: Settings, triton: TritonClient | None = None) -> FastAPI:
    """Build the app. ``triton`` may be injected (tests); otherwise one is made from settings."""

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        client = triton or make_triton(
            settings.triton_url or f"127.0.0.1:{settings.local_triton_port_base + 1}",
            timeout_s=settings.triton_timeout_s,
            shared_memory=settings.triton_shared_memory,
            keepalive_s=settings.triton_keepalive_s,
        )
        # The API process's own collections (idempotent): with workers, no session manager
        # in this process installs it, and its series would read 0 collections.
        GC_PAUSES.install()
        manager: SessionService
        if settings.workers > 1 or settings.ray_address:
            from orchestrator.fleet.router import FleetRouter  # imports Ray: only when used

            manager = FleetRouter(settings, client)
            await manager.open()
        else:
            manager = SessionManager(settings, client)
        app.state.manager = manager
        try:
            yield
        finally:
            await manager.close_all()
            if triton is None:
                await client.close()

    app = FastAPI(
        title="LeRobot Arena AI Server",
        summary="ACT Model Inference Server for Real-time Robot Control",
        description=DESCRIPTION,
        version="1.0.0",
        openapi_tags=TAGS,
        lifespan=lifespan,
        # Served by the routes below, so that each answers at the root and under /api.
        openapi_url=None, docs_url=None, redoc_url=None,
    )
    app.state.settings = settings
    app.state.log_ring = install_log_ring(settings.log_buffer_size)
    # Outermost first: CORS (also on 401s, 500s and preflights), unexpected errors, /api,
    # then the key.
    if settings.api_key is not None:
        app.add_middleware(ApiKeyMiddleware, api_key=settings.api_key.get_secret_value())
    app.add_middleware(PrefixAlias)
    app.add_middleware(InternalErrors)
    any_origin = "*" in settings.cors_allow_origins
    # A page served from a public origin calling this API on a private address gets a
    # Private Network Access preflight from Chromium; without the opt-in it is refused
    # (400). Which origins may call at all is still decided by the origin list.
    app.add_middleware(
        CORSMiddleware, allow_origins=settings.cors_allow_origins, allow_methods=["*"],
        allow_headers=["*"], allow_credentials=not any_origin, max_age=600,
        allow_private_network=True,
    )

    app.add_exception_handler(RequestValidationError, validation_error)

    @app.exception_handler(SessionError)
    async def session_error(_: Request, exc: SessionError) -> JSONResponse:
        return JSONResponse({"detail": exc.message}, status_code=exc.status_code)

    app.include_router(router)
    app.include_router(metrics_router)
    app.include_router(console_router)

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            schema = get_openapi(
                title=app.title, version=app.version, summary=app.summary,
                description=app.description, routes=app.routes, tags=app.openapi_tags,
            )
            schema["info"]["license"] = {
                "name": "Apache 2.0", "url": "https://www.apache.org/licenses/LICENSE-2.0.html"
            }
            schema.setdefault("components", {})["securitySchemes"] = {
                "BearerAuth": {"type": "http", "scheme": "bearer", "bearerFormat": "JWT"},
                "ApiKeyAuth": {"type": "apiKey", "in": "header", "name": "X-API-Key"},
            }
            app.openapi_schema = schema
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
    _docs_routes(app)
    return app


def _docs_routes(app: FastAPI) -> None:
    """OpenAPI and docs at the root and under /api: the document names its server."""

    @app.get("/openapi.json", include_in_schema=False)
    async def openapi_document(request: Request) -> JSONResponse:
        schema = dict(app.openapi())
        root = request.scope.get("root_path", "").rstrip("/")
        if root:
            schema["servers"] = [{"url": root}]
        return JSONResponse(schema)

    @app.get("/docs", include_in_schema=False)
    async def swagger(request: Request) -> HTMLResponse:
        root = request.scope.get("root_path", "").rstrip("/")
        return get_swagger_ui_html(
            openapi_url=f"{root}/openapi.json", title=f"{app.title} - docs",
            oauth2_redirect_url=f"{root}/docs/oauth2-redirect",
        )

    @app.get("/docs/oauth2-redirect", include_in_schema=False)
    async def swagger_redirect() -> HTMLResponse:
        return get_swagger_ui_oauth2_redirect_html()

    @app.get("/redoc", include_in_schema=False)
    async def redoc(request: Request) -> HTMLResponse:
        root = request.scope.get("root_path", "").rstrip("/")
        return get_redoc_html(openapi_url=f"{root}/openapi.json", title=f"{app.title} - ReDoc")
