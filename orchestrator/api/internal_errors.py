"""Unexpected errors answered as a 500 with a readable detail, inside the CORS layer.

Starlette's own handler for them sits outside every middleware, CORS included: a page got
a 500 without ``Access-Control-Allow-Origin`` and saw only an opaque network error, never
the detail that points to /debug/logs."""

from __future__ import annotations

import logging

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
