"""Browser access over real HTTP (uvicorn on loopback): CORS on every route with preflights
answered, the same API at the root and under /api (docs and OpenAPI too), the API key still
required under /api, and request bodies of the RobotHub front-end checked before anything
is created. Triton is not running here: these answers must not need it."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import pytest
from pydantic import SecretStr

from orchestrator.settings import Settings
from tests.support.arena import free_port
from tests.support.browser import blank_page, chromium
from tests.support.orchestrator import Orchestrator, run_orchestrator

ORIGIN = "http://localhost:5173"  # the front-end's dev server
KEY = "browser-key"


def _settings(**overrides: object) -> Settings:
    # A closed port: Triton is unreachable, and nothing here may need it.
    return Settings(triton_url=f"127.0.0.1:{free_port()}", triton_timeout_s=0.5, **overrides)


@pytest.fixture
async def orch() -> AsyncIterator[Orchestrator]:
    async with run_orchestrator(_settings()) as orchestrator:
        yield orchestrator


@pytest.mark.parametrize("base", ["", "/api"])
async def test_preflight_and_cors_on_every_route(orch: Orchestrator, base: str) -> None:
    preflight = await orch.http.options(
        f"{base}/sessions",
        headers={"Origin": ORIGIN, "Access-Control-Request-Method": "POST",
                 "Access-Control-Request-Headers": "content-type"},
    )
    assert preflight.status_code == 200, preflight.text
    assert preflight.headers["access-control-allow-origin"] in ("*", ORIGIN)
    assert "POST" in preflight.headers["access-control-allow-methods"]
    assert "content-type" in preflight.headers["access-control-allow-headers"].lower()
    for method, path in (("GET", "/"), ("GET", "/health"), ("GET", "/sessions"),
                         ("GET", "/sessions/nope"), ("POST", "/sessions/nope/start"),
                         ("DELETE", "/sessions/nope")):
        response = await orch.http.request(method, f"{base}{path}", headers={"Origin": ORIGIN})
        assert response.headers.get("access-control-allow-origin") in ("*", ORIGIN), (
            method, path, response.status_code)


async def test_a_private_network_preflight_is_answered(orch: Orchestrator) -> None:
    """The front-end served from a public origin (a Space) calling this API on a private
    address: Chromium adds Access-Control-Request-Private-Network to the preflight."""
    preflight = await orch.http.options(
        "/api/sessions",
        headers={"Origin": "https://robothub.example", "Access-Control-Request-Method": "POST",
                 "Access-Control-Request-Headers": "content-type",
                 "Access-Control-Request-Private-Network": "true"},
    )
    assert preflight.status_code == 200, preflight.text
    assert preflight.headers["access-control-allow-private-network"] == "true"


# A page's call as the front-end makes it; [status, body] or ["error", why].
FETCH_JS = """async ([url, method, body]) => { try {
  const init = body === null ? {method} : {method, body: JSON.stringify(body),
                                           headers: {"Content-Type": "application/json"}};
  const response = await fetch(url, init);
  return [response.status, await response.json()];
} catch (e) { return ["error", String(e)]; } }"""


@pytest.mark.parametrize("allowed", [True, False])
async def test_a_page_on_a_public_https_origin_reaches_the_api(tmp_path: Path,
                                                                allowed: bool) -> None:
    """The hosted front-end (https, a public address) calling this API on loopback, in a
    real Chromium that takes the page's address as public: no mixed-content block for
    http://127.0.0.1; the user's local-network-access grant (given here as the user would at
    Chromium's prompt), then CORS answers for the page's origin, and the page reads them.
    With its origin not allowed, the same calls fail."""
    with blank_page(tls_dir=tmp_path) as url:
        origin = f"https://127.0.0.1:{urlsplit(url).port}"
        origins = [origin] if allowed else ["https://robothub.example"]
        async with (run_orchestrator(_settings(cors_allow_origins=origins)) as orchestrator,
                    chromium([f"--ip-address-space-overrides=127.0.0.1:{urlsplit(url).port}"
                              "=public", "--ignore-certificate-errors"]) as browser):
            context = await browser.new_context(ignore_https_errors=True)
            await context.grant_permissions(["local-network-access"])
            page = await context.new_page()
            await page.goto(url)
            api = f"{orchestrator.base_url}/api/sessions"
            listed = await page.evaluate(FETCH_JS, [api, "GET", None])
            refused = await page.evaluate(FETCH_JS, [api, "POST", {"session_id": "page"}])
            if allowed:
                assert listed == [200, []], listed
                # A preflighted POST (JSON body): the validation error reaches the page.
                assert refused[0] == 422 and "policy_path" in json.dumps(refused[1]), refused
            else:
                assert listed[0] == refused[0] == "error", (listed, refused)
            assert (await orchestrator.http.get("/sessions")).json() == []


async def test_api_prefix_serves_the_same_routes_docs_and_openapi(orch: Orchestrator) -> None:
    for path in ("/", "/health", "/sessions"):
        root, prefixed = await orch.http.get(path), await orch.http.get(f"/api{path}")
        assert root.status_code == prefixed.status_code == 200, (path, prefixed.text)
    assert (await orch.http.get("/api")).status_code == 200  # the front-end's "{base}/"
    assert (await orch.http.get("/api/")).json()["docs"] == "/api/docs"
    missing = await orch.http.get("/api/sessions/nope")
    assert missing.status_code == 404 and "nope" in missing.json()["detail"]
    root_doc = (await orch.http.get("/openapi.json")).json()
    api_doc = (await orch.http.get("/api/openapi.json")).json()
    assert api_doc["servers"] == [{"url": "/api"}] and "servers" not in root_doc
    assert api_doc["paths"] == root_doc["paths"]
    assert "/sessions" in root_doc["paths"] and not any(p.startswith("/api") for p in
                                                         root_doc["paths"])
    docs = await orch.http.get("/api/docs")
    assert docs.status_code == 200 and "/api/openapi.json" in docs.text
    assert "/openapi.json" in (await orch.http.get("/docs")).text


async def test_a_base_url_with_a_trailing_slash_reaches_the_routes(orch: Orchestrator) -> None:
    """The front-end joins its base URL and the path: `http://host:8001/api/` gives `//`."""
    for path in ("/api//sessions", "//sessions", "/api//health", "/api///sessions"):
        response = await orch.http.get(path)
        assert response.status_code == 200, (path, response.text)
    missing = await orch.http.post("/api//sessions/nope/start")
    assert missing.status_code == 404 and "nope" in missing.json()["detail"]


async def test_origins_are_configurable() -> None:
    allowed = "https://robothub.example"
    async with run_orchestrator(_settings(cors_allow_origins=[allowed])) as orchestrator:
        ok = await orchestrator.http.get("/api/health", headers={"Origin": allowed})
        assert ok.headers.get("access-control-allow-origin") == allowed
        other = await orchestrator.http.get("/api/health", headers={"Origin": ORIGIN})
        assert "access-control-allow-origin" not in other.headers
        refused = await orchestrator.http.options(
            "/api/sessions", headers={"Origin": ORIGIN, "Access-Control-Request-Method": "POST"})
        assert refused.status_code == 400
        # The private-network opt-in is no way around the origin list.
        private = await orchestrator.http.options(
            "/api/sessions", headers={"Origin": ORIGIN, "Access-Control-Request-Method": "POST",
                                      "Access-Control-Request-Private-Network": "true"})
        assert private.status_code == 400


async def test_api_key_still_required_under_api_and_errors_readable_by_pages() -> None:
    async with (run_orchestrator(_settings(api_key=SecretStr(KEY))) as orchestrator,
                httpx.AsyncClient(base_url=orchestrator.base_url) as anonymous):
            # A preflight carries no key: it is answered, the real call is not.
            preflight = await anonymous.options(
                "/api/sessions", headers={"Origin": ORIGIN, "Access-Control-Request-Method":
                                          "POST", "Access-Control-Request-Headers": "x-api-key"})
            assert preflight.status_code == 200
            for path in ("/api/sessions", "/sessions", "/api/debug/system"):
                denied = await anonymous.get(path, headers={"Origin": ORIGIN})
                assert denied.status_code == 401, path
                # The page can read why (CORS headers on the error too).
                assert denied.headers.get("access-control-allow-origin") in ("*", ORIGIN)
            assert (await anonymous.get("/api/health")).status_code == 200
            assert (await anonymous.get("/api/sessions", headers={"X-API-Key": "wrong"})
                    ).status_code == 403
            ok = await anonymous.get("/api/sessions", headers={"X-API-Key": KEY, "Origin": ORIGIN})
            assert ok.status_code == 200 and ok.json() == []


async def test_front_end_bodies_checked_before_anything_is_created(orch: Orchestrator) -> None:
    body = {"session_id": "fe1", "policy_path": "LaetusH/act_so101_beyond",
            "camera_names": ["front"], "transport_server_url": "http://127.0.0.1:9/api",
            "workspace_id": "ws-1", "policy_type": "act"}
    both = await orch.http.post("/api/sessions", json={**body,
                                "arena_server_url": "http://127.0.0.1:8000"})
    assert both.status_code == 422
    text = str(both.json()["detail"])
    assert "transport_server_url" in text and "arena_server_url" in text
    for policy_type in ("smolvla", "diffusion", "pi0", "groot"):
        refused = await orch.http.post("/api/sessions", json={**body, "policy_type": policy_type})
        assert refused.status_code == 400, refused.text
        detail = refused.json()["detail"]
        assert "policy_type" in detail and policy_type in detail and "act" in detail
    forbidden = await orch.http.post(
        "/api/sessions", json={**body, "transport_server_url": "https://arena.example/api"})
    assert forbidden.status_code == 403
    assert "ORCHESTRATOR_ARENA_ALLOWLIST" in forbidden.json()["detail"]
    # The same URL twice (trailing slash aside) is one server, not a conflict: it gets past
    # validation and fails on the unreachable Triton instead.
    same = await orch.http.post("/api/sessions", json={
        **body, "policy_path": "tiny", "arena_server_url": "http://127.0.0.1:9/api/"})
    assert same.status_code == 503, same.text
    assert (await orch.http.get("/api/sessions")).json() == []


async def test_a_blank_api_key_is_no_key(monkeypatch: pytest.MonkeyPatch) -> None:
    """docker-compose passes ORCHESTRATOR_API_KEY through as "" when the operator sets none:
    that was a key no request could match, and the front-end was locked out."""
    for blank in ("", "  "):
        monkeypatch.setenv("ORCHESTRATOR_API_KEY", blank)
        assert Settings().api_key is None
    monkeypatch.setenv("ORCHESTRATOR_API_KEY", KEY)
    assert Settings().api_key == SecretStr(KEY)
    async with run_orchestrator(_settings(api_key="")) as orchestrator:
        response = await orchestrator.http.get("/sessions", headers={"Origin": ORIGIN})
        assert response.status_code == 200, response.text


@pytest.mark.parametrize("base", ["", "/api"])
async def test_an_unexpected_error_reaches_the_page_with_its_detail(
    orch: Orchestrator, monkeypatch: pytest.MonkeyPatch, base: str
) -> None:
    """A 500 came without CORS headers (Starlette answers it outside every middleware): the
    page saw an opaque network error. Injected: a bug in the session listing, as no 500 can
    be caused here on purpose."""
    def broken() -> list[object]:
        raise RuntimeError("a bug")

    monkeypatch.setattr(orch.app.state.manager, "sessions", broken)
    response = await orch.http.get(f"{base}/sessions", headers={"Origin": ORIGIN})
    assert response.status_code == 500
    assert response.headers.get("access-control-allow-origin") in ("*", ORIGIN)
    assert response.json()["detail"] == "internal error (RuntimeError); see /debug/logs"
    monkeypatch.undo()
    assert (await orch.http.get(f"{base}/sessions")).status_code == 200  # the server goes on
