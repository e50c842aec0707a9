"""Access control over real HTTP: the API key (both header styles, 401 without, 403 wrong,
never logged), the Arena URL allowlist (forbidden hosts get 403 and nothing is created), and
the limits from settings (sessions, cameras, session_id format)."""

from __future__ import annotations

import logging
import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from pydantic import SecretStr

from orchestrator.arena.rest import ArenaRest
from orchestrator.triton.launcher import LocalTriton
from tests.e2e.conftest import e2e_settings
from tests.support.arena import ArenaServerProcess
from tests.support.orchestrator import Orchestrator, run_orchestrator

KEY = "s3cret-" + uuid.uuid4().hex
OPEN = {"/", "/health"}
DOCS = {"/docs", "/redoc", "/openapi.json"}  # readable without a key: no session data


class Recorder(logging.Handler):
    def __init__(self) -> None:
        super().__init__(level=logging.DEBUG)
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(f"{record.getMessage()} {record.args!r} {record.exc_text or ''}")


@pytest.fixture
def recorded_logs() -> Iterator[Recorder]:
    recorder = Recorder()
    root = logging.getLogger()
    old = root.level
    root.addHandler(recorder)
    root.setLevel(logging.DEBUG)
    try:
        yield recorder
    finally:
        root.removeHandler(recorder)
        root.setLevel(old)


def operations(orch: Orchestrator) -> list[tuple[str, str]]:
    """Every operation the app serves, from its own OpenAPI document."""
    out: list[tuple[str, str]] = []
    for path, methods in orch.app.openapi()["paths"].items():
        concrete = path.replace("{session_id}", "no-such-session")
        out.extend((method.upper(), concrete) for method in methods)
    return out


async def test_api_key_guards_every_endpoint_but_root_and_health_and_is_never_logged(
    e2e_triton: LocalTriton, recorded_logs: Recorder
) -> None:
    settings = e2e_settings(e2e_triton, api_key=SecretStr(KEY))
    async with run_orchestrator(settings) as orch:
        ops = operations(orch)
        assert len(ops) >= 13 and ("GET", "/metrics") in ops
        async with httpx.AsyncClient(base_url=orch.base_url, timeout=30) as bare:
            for method, path in ops:
                body: dict[str, Any] | None = {} if method == "POST" else None
                plain = await bare.request(method, path, json=body)
                wrong = await bare.request(method, path, json=body,
                                           headers={"X-API-Key": KEY + "x"})
                wrong_bearer = await bare.request(method, path, json=body,
                                                  headers={"Authorization": "Bearer nope"})
                right = await bare.request(method, path, json=body, headers={"X-API-Key": KEY})
                bearer = await bare.request(method, path, json=body,
                                            headers={"Authorization": f"Bearer {KEY}"})
                if path in OPEN:
                    assert plain.status_code == 200, (method, path)
                    continue
                assert plain.status_code == 401, (method, path, plain.status_code)
                assert "X-API-Key" in plain.json()["detail"]
                assert plain.headers["www-authenticate"] == "Bearer"
                assert wrong.status_code == wrong_bearer.status_code == 403, (method, path)
                assert wrong.json()["detail"] == "invalid API key"
                # With the key the request reaches the route (404: no such session, 422: no body).
                assert right.status_code not in (401, 403), (method, path)
                assert bearer.status_code == right.status_code, (method, path)
            for path in DOCS:
                assert (await bare.get(path)).status_code == 200
            # Other schemes, empty or padded keys are not the key.
            for headers in ({"Authorization": f"Basic {KEY}"}, {"X-API-Key": ""},
                            {"Authorization": "Bearer"}, {"X-API-Key": KEY[:-1]}):
                response = await bare.get("/sessions", headers=headers)
                assert response.status_code in (401, 403), headers
            logs = await bare.get("/debug/logs", params={"limit": 5000},
                                  headers={"X-API-Key": KEY})
            assert KEY not in logs.text
    assert recorded_logs.lines, "the recorder saw nothing: the check below would be vacuous"
    assert not [line for line in recorded_logs.lines if KEY in line]


async def test_arena_url_allowlist(
    e2e_triton: LocalTriton, arena: ArenaServerProcess
) -> None:
    settings = e2e_settings(e2e_triton, arena_default_url="http://arena.internal:8000",
                            arena_allowlist=["robots.example.org", "lab.example.org:9000"])
    async with run_orchestrator(settings) as orch:

        async def create(url: str, **extra: Any) -> httpx.Response:
            sid = f"acl-{uuid.uuid4().hex[:6]}"
            return await orch.http.post("/sessions", json={
                "session_id": sid, "policy_path": "tiny_act", "camera_names": ["front"],
                "arena_server_url": url, **extra})

        forbidden = [
            "http://example.com:8000", "https://10.0.0.1", "http://169.254.169.254/latest",
            "http://127.0.0.1@evil.example.com/", "http://evil.example.com#@127.0.0.1",
            "http://localhost.evil.example.com", "http://0.0.0.0:8000",
            "http://lab.example.org:9001",  # allowlisted on another port only
            "http://2130706433:8000",  # 127.0.0.1 spelled as a number: not resolved here
        ]
        for url in forbidden:
            response = await create(url)
            assert response.status_code == 403, (url, response.text)
            assert "not allowed" in response.json()["detail"]
            assert "ORCHESTRATOR_ARENA_ALLOWLIST" in response.json()["detail"]
        for url in ("ftp://127.0.0.1", "not a url", "http://:80", "http://127.0.0.1:99999"):
            response = await create(url)
            assert response.status_code == 400, (url, response.text)
        assert (await orch.http.get("/sessions")).json() == []
        assert orch.manager.sessions() == []

        # Allowed hosts pass the check (then fail to connect, which says so: 503).
        for url in ("http://arena.internal:8000", "http://robots.example.org:8000",
                    "http://lab.example.org:9000", "http://localhost:1", "http://[::1]:1",
                    "http://127.0.0.2:1"):
            response = await create(url)
            assert response.status_code == 503, (url, response.text)
            assert "Arena server" in response.json()["detail"]

        # And a real one works.
        response = await create(arena.base_url)
        assert response.status_code == 200, response.text
        workspace = response.json()["workspace_id"]
        for session in orch.manager.sessions():
            assert (await orch.http.delete(f"/sessions/{session.session_id}")).status_code == 200
        async with ArenaRest(arena.base_url) as rest:
            assert await rest.list_robotics_rooms(workspace) == []


async def test_limits_sessions_cameras_and_session_id_format(
    e2e_triton: LocalTriton, arena: ArenaServerProcess
) -> None:
    settings = e2e_settings(e2e_triton, max_sessions=2, max_cameras_per_session=1)
    async with run_orchestrator(settings) as orch:
        def body(sid: str, **extra: Any) -> dict[str, Any]:
            return {"session_id": sid, "policy_path": "tiny_act", "camera_names": ["front"],
                    "arena_server_url": arena.base_url, **extra}

        bad_ids = ["a/b", "../etc", "a\\b", "", "x" * 65, "-lead", ".hidden", "a b", "a%2Fb",
                   "é", "a\nb", "a?b", "a#b"]
        for sid in bad_ids:
            response = await orch.http.post("/sessions", json=body(sid))
            assert response.status_code == 422, (sid, response.text)
            assert response.json()["detail"][0]["loc"] == ["body", "session_id"]
        response = await orch.http.post("/sessions", json=body("x" * 64))  # the longest
        assert response.status_code == 200, response.text

        response = await orch.http.post("/sessions",
                                        json=body("two-cams", camera_names=["front", "side"]))
        assert response.status_code == 400
        assert "1..1 cameras" in response.json()["detail"]

        tag = uuid.uuid4().hex[:6]
        assert (await orch.http.post("/sessions", json=body(f"second-{tag}"))).status_code == 200
        response = await orch.http.post("/sessions", json=body(f"third-{tag}"))
        assert response.status_code == 429
        assert "session limit reached (2)" in response.json()["detail"]
        assert len(orch.manager.sessions()) == 2
        async with ArenaRest(arena.base_url) as rest:  # nothing of the refused one exists
            for session in orch.manager.sessions():
                ws = session.config.workspace_id
                rooms = {r["id"] for r in await rest.list_robotics_rooms(ws)}
                assert not any(r.startswith(f"third-{tag}") for r in rooms)
        for session in orch.manager.sessions():
            assert (await orch.http.delete(f"/sessions/{session.session_id}")).status_code == 200
        # Deleting frees the slot.
        assert (await orch.http.post("/sessions", json=body(f"fourth-{tag}"))).status_code == 200
        assert (await orch.http.delete(f"/sessions/fourth-{tag}")).status_code == 200


async def test_a_create_without_a_server_url_uses_the_orchestrators_default(
    e2e_triton: LocalTriton, arena: ArenaServerProcess
) -> None:
    """ORCHESTRATOR_ARENA_DEFAULT_URL is where a session goes when its request names no
    server (docker-compose sets http://arena:8000); the field's documented default is the
    seed contract's, and it was taken instead, so such a create went to localhost:8000."""
    settings = e2e_settings(e2e_triton, arena_default_url=arena.base_url)
    async with run_orchestrator(settings) as orch:
        sid = f"dflt-{uuid.uuid4().hex[:6]}"
        response = await orch.http.post("/sessions", json={"session_id": sid,
                                                           "policy_path": "tiny_act"})
        assert response.status_code == 200, response.text
        status = await orch.status(sid)
        assert status["rooms"]["arena_server_url"] == arena.base_url
        # Named explicitly, the seed's default is what it says.
        other = f"dflt-{uuid.uuid4().hex[:6]}"
        response = await orch.http.post("/sessions", json={
            "session_id": other, "policy_path": "tiny_act",
            "arena_server_url": "http://localhost:1"})
        assert response.status_code == 503 and "localhost:1" in response.json()["detail"]
        assert (await orch.http.delete(f"/sessions/{sid}")).status_code == 200
