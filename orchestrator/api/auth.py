"""Optional API-key authentication matching the seed contract's security schemes:
``X-API-Key: KEY`` or ``Authorization: Bearer KEY``. Keys are compared in constant time and
never logged."""

from __future__ import annotations

import hmac

from fastapi import Request
from fastapi.responses import JSONResponse
from starlette.middleware.base import BaseHTTPMiddleware, RequestResponseEndpoint
from starlette.responses import Response
from starlette.types import ASGIApp

from orchestrator.api.prefix import route_path

# The API docs stay readable without a key; they hold no session data.
OPEN_PATHS = frozenset(
    {"/", "/health", "/docs", "/redoc", "/openapi.json", "/docs/oauth2-redirect"}
)


def is_open(path: str) -> bool:
    # The console's page and assets are static (no session data); its API calls need the key.
    console = path.removeprefix("/api")
    return path in OPEN_PATHS or console == "/console" or console.startswith("/console/")


def presented_key(request: Request) -> str | None:
    key = request.headers.get("x-api-key")
    if key:
        return key
    scheme, _, token = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() == "bearer" and token.strip():
        return token.strip()
    return None


class ApiKeyMiddleware(BaseHTTPMiddleware):
    def __init__(self, app: ASGIApp, api_key: str) -> None:
        super().__init__(app)
        self._key = api_key.encode()

    async def dispatch(self, request: Request, call_next: RequestResponseEndpoint) -> Response:
        # Below the root path: /api/health is /health.
        if is_open(route_path(request.scope)) or request.method == "OPTIONS":
            return await call_next(request)
        key = presented_key(request)
        if key is None:
            return JSONResponse(
                {"detail": "authentication required: send X-API-Key or Authorization: Bearer"},
                status_code=401,
                headers={"WWW-Authenticate": "Bearer"},
            )
        if not hmac.compare_digest(key.encode(), self._key):
            return JSONResponse({"detail": "invalid API key"}, status_code=403)
        return await call_next(request)
