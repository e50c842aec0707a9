"""The API at the root and under ``/api`` (where the server it replaces is deployed, and
where the RobotHub front-end's base URL points): one app, one set of routes.

A request for ``/api/...`` gets ``root_path="/api"``; Starlette routes on the path below
the root path, and every route, including the docs and the OpenAPI document, answers
there too. Repeated slashes are one (a base URL set with a trailing slash gives
``/api//sessions``, which would be a 404)."""

from __future__ import annotations

import re

from starlette.types import ASGIApp, Receive, Scope, Send

API_PREFIX = "/api"
_SLASHES = re.compile(r"/{2,}")
_RAW_SLASHES = re.compile(rb"/{2,}")


def route_path(scope: Scope) -> str:
    """The path below the root path (what the routes see)."""
    path: str = scope["path"]
    root = scope.get("root_path", "")
    return path[len(root):] or "/" if root and path.startswith(root) else path


class PrefixAlias:
    """ASGI middleware: serve ``prefix/<path>`` as ``<path>`` below a root path."""

    def __init__(self, app: ASGIApp, prefix: str = API_PREFIX) -> None:
        self.app = app
        self.prefix = prefix.rstrip("/")

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] in ("http", "websocket"):
            path: str = scope["path"]
            if "//" in path:
                path = _SLASHES.sub("/", path)
                # raw_path stays percent-encoded: only its slashes are collapsed.
                raw = _RAW_SLASHES.sub(b"/", scope.get("raw_path") or path.encode())
                scope = {**scope, "path": path, "raw_path": raw}
            root = scope.get("root_path", "")
            below = path[len(root):] if root and path.startswith(root) else path
            if below == self.prefix or below.startswith(self.prefix + "/"):
                scope = dict(scope)
                scope["root_path"] = root + self.prefix
                if below == self.prefix:  # "/api" is the API's root, "/"
                    scope["path"] = path + "/"
                    scope["raw_path"] = scope["path"].encode()
        await self.app(scope, receive, send)
