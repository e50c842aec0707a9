"""Run the orchestrator API for real (uvicorn on a free loopback port) inside the test's
event loop, beside the sessions' control loops, as in production."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import httpx
import uvicorn
from fastapi import FastAPI

from local_stack.stack import QuietServer
from orchestrator.api.app import create_app
from orchestrator.sessions.manager import SessionManager
from orchestrator.settings import Settings
from tests.support.arena import free_port


@dataclass
class Orchestrator:
    base_url: str
    app: FastAPI
    http: httpx.AsyncClient

    @property
    def manager(self) -> SessionManager:
        manager: SessionManager = self.app.state.manager
        return manager

    async def create_session(self, **body: Any) -> dict[str, Any]:
        response = await self.http.post("/sessions", json=body)
        assert response.status_code == 200, response.text
        data: dict[str, Any] = response.json()
        return data

    async def status(self, session_id: str) -> dict[str, Any]:
        response = await self.http.get(f"/sessions/{session_id}")
        assert response.status_code == 200, response.text
        data: dict[str, Any] = response.json()
        return data


@contextlib.asynccontextmanager
async def run_orchestrator(settings: Settings, start_timeout_s: float = 30.0
                           ) -> AsyncIterator[Orchestrator]:
    port = free_port()
    settings = settings.model_copy(update={"host": "127.0.0.1", "port": port})
    app = create_app(settings)
    server = QuietServer(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    task = asyncio.create_task(server.serve(), name="orchestrator-api")
    try:
        deadline = time.monotonic() + start_timeout_s
        while not server.started:
            if task.done():
                task.result()
            assert time.monotonic() < deadline, "orchestrator API did not start"
            await asyncio.sleep(0.02)
        base = f"http://127.0.0.1:{port}"
        headers = {"X-API-Key": settings.api_key.get_secret_value()} if settings.api_key else {}
        async with httpx.AsyncClient(base_url=base, timeout=30.0, headers=headers) as http:
            yield Orchestrator(base, app, http)
    finally:
        server.should_exit = True
        with contextlib.suppress(Exception):
            await asyncio.wait_for(task, 30)


async def wait_for(
    predicate: Callable[[], Awaitable[bool] | bool], timeout_s: float = 20.0,
    what: str = "condition", interval_s: float = 0.05,
    explain: Callable[[], Awaitable[object]] | None = None,
) -> None:
    """Poll until ``predicate`` holds; a clear failure (not a hang) when it never does,
    with what ``explain`` reads then (a session's status, say)."""
    deadline = time.monotonic() + timeout_s
    while True:
        result = predicate()
        if isinstance(result, Awaitable):
            result = await result
        if result:
            return
        if time.monotonic() > deadline:
            why = f": {await explain()}" if explain is not None else ""
            raise AssertionError(f"timed out after {timeout_s:.0f} s waiting for {what}{why}")
        await asyncio.sleep(interval_s)
