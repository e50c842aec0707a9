"""What the console stands on, over real HTTP: ``GET /models`` from a real local Triton, the
page and its assets at ``/console`` and ``/api/console``, open without the API key (the API
calls it makes are not)."""

from __future__ import annotations

import httpx
from pydantic import SecretStr

from orchestrator.settings import Settings
from orchestrator.triton.launcher import LocalTriton
from tests.e2e.conftest import e2e_settings
from tests.support.arena import free_port
from tests.support.exports import ExportedRepository
from tests.support.orchestrator import Orchestrator, run_orchestrator


async def test_models_lists_what_triton_serves_with_cameras_and_joints(
    orchestrator: Orchestrator, e2e_model: ExportedRepository
) -> None:
    response = await orchestrator.http.get("/models")
    assert response.status_code == 200, response.text
    models = {m["name"]: m for m in response.json()}
    contract = e2e_model.result.contract
    tiny = models[e2e_model.name]
    assert tiny["versions"] == ["1"]
    assert tiny["cameras"] == list(contract.cameras)
    assert tiny["image_sizes"] == {c: list(s) for c, s in contract.image_sizes.items()}
    assert tiny["state_joints"] == list(contract.state_names)
    assert tiny["action_joints"] == list(contract.action_names)
    assert tiny["chunk_size"] == contract.chunk_size
    assert tiny["fps"] == contract.fps
    # Under /api too, with the same answer.
    assert (await orchestrator.http.get("/api/models")).json() == response.json()


async def test_models_without_triton_is_a_503_with_a_detail() -> None:
    # A port nobody listens on: Triton is down for real.
    settings = Settings(triton_url=f"127.0.0.1:{free_port()}", triton_timeout_s=1.0)
    async with run_orchestrator(settings) as orch:
        response = await orch.http.get("/models")
    assert response.status_code == 503
    assert "Triton is unreachable" in response.json()["detail"]


async def test_console_page_and_assets_at_root_and_under_api(orchestrator: Orchestrator) -> None:
    http = orchestrator.http
    for base in ("", "/api"):
        page = await http.get(f"{base}/console")
        assert page.status_code == 200, (base, page.text)
        assert page.headers["content-type"].startswith("text/html")
        assert 'src="console/console.js"' in page.text  # relative: works under both
        script = await http.get(f"{base}/console/console.js")
        assert script.status_code == 200
        assert "javascript" in script.headers["content-type"]
        assert (await http.get(f"{base}/console/console.css")).headers[
            "content-type"].startswith("text/css")
    for bad in ("/console/nope.js", "/console/..%2Fconsole.py", "/console/%2E%2E"):
        assert (await http.get(bad)).status_code == 404, bad


async def test_console_is_open_but_its_api_calls_need_the_key(e2e_triton: LocalTriton) -> None:
    key = "console-key-test"
    settings = e2e_settings(e2e_triton, api_key=SecretStr(key))
    async with run_orchestrator(settings) as orch, httpx.AsyncClient(
        base_url=orch.base_url
    ) as anonymous:
        for path in ("/console", "/console/console.js", "/api/console"):
            assert (await anonymous.get(path)).status_code == 200, path
        assert (await anonymous.get("/models")).status_code == 401
        assert (await anonymous.get("/api/models")).status_code == 401
        keyed = await anonymous.get("/models", headers={"X-API-Key": key})
        assert keyed.status_code == 200, keyed.text
