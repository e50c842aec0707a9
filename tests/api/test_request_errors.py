"""Request bodies JSON allows but no session can take, over real HTTP: each is a 4xx that
says what is wrong, never a 500, and nothing is created. Triton is not running here: these
answers must not need it."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator

import pytest

from orchestrator.settings import Settings
from tests.support.arena import free_port
from tests.support.orchestrator import Orchestrator, run_orchestrator

BODY = {"session_id": "odd", "policy_path": "act_demo", "camera_names": ["front"],
        "arena_server_url": "http://127.0.0.1:9"}


@pytest.fixture
async def orch() -> AsyncIterator[Orchestrator]:
    settings = Settings(triton_url=f"127.0.0.1:{free_port()}", triton_timeout_s=0.5)
    async with run_orchestrator(settings) as orchestrator:
        yield orchestrator


async def _post(orch: Orchestrator, text: str) -> tuple[int, str]:
    response = await orch.http.post("/sessions", content=text.encode(),
                                    headers={"Content-Type": "application/json"})
    assert "detail" in response.json(), response.text
    return response.status_code, json.dumps(response.json()["detail"])


@pytest.mark.parametrize("field", ["session_id", "policy_path", "workspace_id",
                                   "language_instruction", "policy_type", "arena_server_url"])
async def test_a_lone_surrogate_is_a_422(orch: Orchestrator, field: str) -> None:
    """JSON's \\ud800 escape decodes to a string UTF-8 cannot encode: the 422 that echoed it
    failed to encode itself (a 500)."""
    text = json.dumps(BODY)[:-1] + f', "{field}": "a\\ud800"}}'
    status, detail = await _post(orch, text)
    assert status == 422, detail
    assert field in detail
    assert (await orch.http.get("/sessions")).json() == []


@pytest.mark.parametrize("value", ["NaN", "Infinity", "-Infinity", "1e999"])
@pytest.mark.parametrize("field", ["rate_hz", "max_step", "stale_after_s", "camera_latency_s"])
async def test_non_finite_numbers_are_a_422(orch: Orchestrator, field: str, value: str) -> None:
    """Python's JSON parser takes NaN and Infinity: the 422 that echoed one was a 500, and
    max_step Infinity was taken (no step limit)."""
    status, detail = await _post(orch, json.dumps(BODY)[:-1] + f', "{field}": {value}}}')
    assert status == 422, detail
    assert field in detail and "finite" in detail
    limits = json.dumps(BODY)[:-1] + f', "joint_limits": {{"gripper": [0, {value}]}}}}'
    status, detail = await _post(orch, limits)
    assert status == 422 and "joint_limits" in detail, detail
    assert (await orch.http.get("/sessions")).json() == []


@pytest.mark.parametrize("url", [
    "http://127.0.0.1:8000\n", "http://127.0.0.1:8000\t", "http://127.0.0.1:8000/\u0000",
    "http://127.0.0.1:8000/\u007f", "http://[zz]:8000", "http://[::1]x:8000",
    "http://127.0.0.1:99999", "http://user:secret@127.0.0.1:8000",
])
@pytest.mark.parametrize("field", ["arena_server_url", "transport_server_url"])
async def test_a_malformed_server_url_is_a_400(orch: Orchestrator, field: str, url: str) -> None:
    """Control characters, brackets around no address, junk after them: a 500 from deep in
    the HTTP client. A password in the URL would be shown in every status."""
    body = {**BODY, field: url}
    if field == "transport_server_url":
        del body["arena_server_url"]
    status, detail = await _post(orch, json.dumps(body))
    assert status == 400, detail
    assert "arena_server_url" in detail and "secret" not in detail
    assert (await orch.http.get("/sessions")).json() == []


@pytest.mark.parametrize("version", ["99999999999999999999", "0"])
async def test_a_model_version_triton_cannot_read_is_a_400(orch: Orchestrator,
                                                           version: str) -> None:
    """Triton reads versions as int64: a longer one was its parse error, reported as
    "Triton unavailable" (503)."""
    status, detail = await _post(orch, json.dumps({**BODY, "policy_path": f"act_demo:{version}"}))
    assert status == 400 and "VERSION a positive integer" in detail, detail


@pytest.mark.parametrize("workspace", ["-", "_", "a.b", "/"])
async def test_a_workspace_id_refused_says_what_it_must_be(orch: Orchestrator,
                                                          workspace: str) -> None:
    """"-" was refused as holding other than letters, digits, '-' and '_'."""
    status, detail = await _post(orch, json.dumps({**BODY, "workspace_id": workspace}))
    assert status == 400 and "at least one letter or digit" in detail, detail


@pytest.mark.parametrize(("extra", "says"), [
    ({"camera_latency_s": 0.5}, "camera_latency_s 0.5 must be below stale_after_s 0.5"),
    ({"camera_latency_s": 1.0, "stale_after_s": 0.8}, "must be below stale_after_s 0.8"),
    ({"camera_names": ["joints"]}, "'joints' is reserved"),
])
async def test_a_session_that_could_never_ask_for_a_chunk_is_a_400(
    orch: Orchestrator, extra: dict[str, object], says: str
) -> None:
    """Frames older than the staleness limit when they arrive are never asked about; a
    camera called "joints" made every tick fail (its name is the joint state's). Both were
    taken, and the session ran, "running", publishing nothing."""
    status, detail = await _post(orch, json.dumps({**BODY, **extra}))
    assert status == 400, detail
    assert says in detail, detail
    assert (await orch.http.get("/sessions")).json() == []
