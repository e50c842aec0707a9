"""Unexpected errors answered as a 500 with a readable detail, inside the CORS layer.

Starlette's own handler for them sits outside every middleware, CORS included: a page got
a 500 without ``Access-Control-Allow-Origin`` and saw only an opaque network error, never
the detail that points to /debug/logs."""

from __future__ import annotations

import logging
import math
from typing import Any

from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

log = logging.getLogger(__name__)


class InternalErrors:
    """ASGI middleware: an exception from below becomes a JSON 500 (logged, with its
    traceback), unless the response had already started (then it goes on up)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = False

        async def tracked(message: Message) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, receive, tracked)
        except Exception as exc:
            log.exception("unhandled error on %s %s", scope.get("method"), scope.get("path"))
            if started:
                raise
            response = JSONResponse(
                {"detail": f"internal error ({type(exc).__name__}); see /debug/logs"},
                status_code=500)
            await response(scope, receive, send)


def _json_safe(value: Any) -> Any:
    """What JSON can carry of a value a request sent: a lone surrogate escaped, NaN and
    infinities as text (FastAPI's own 422 echoed them and failed, as a 500)."""
    if isinstance(value, str):
        return value.encode("utf-8", "backslashreplace").decode("utf-8")
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    if isinstance(value, dict):
        return {_json_safe(k): _json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_json_safe(v) for v in value]
    return value


async def validation_error(_: Request, exc: Exception) -> JSONResponse:
    """A request that fails validation: FastAPI's 422 (each error with its input), safe to
    encode whatever the input held."""
    assert isinstance(exc, RequestValidationError)
    return JSONResponse({"detail": _json_safe(jsonable_encoder(exc.errors()))},
                        status_code=422)
