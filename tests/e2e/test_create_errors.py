"""POST /sessions refuses what it cannot serve with a message that says why, and a failed
create leaves no session, rooms, connections or tasks behind."""

from __future__ import annotations

import asyncio
import time
import uuid
from pathlib import Path

from pydantic import SecretStr

from export.synthetic import make_one_camera_checkpoint
from orchestrator.arena.rest import ArenaRest
from orchestrator.settings import Settings
from orchestrator.triton.client import TritonClient
from orchestrator.triton.launcher import LocalTriton
from tests.e2e.conftest import e2e_settings
from tests.e2e.test_sessions import session_body
from tests.support.arena import ArenaServerProcess, free_port
from tests.support.exports import ExportedRepository
from tests.support.orchestrator import Orchestrator, run_orchestrator
from tests.support.processes import stopped


def _sid() -> str:
    return f"err-{uuid.uuid4().hex[:6]}"


async def _post(orch: Orchestrator, body: dict[str, object]) -> tuple[int, str]:
    response = await orch.http.post("/sessions", json=body)
    detail = response.json().get("detail")
    assert isinstance(detail, str | list) and detail, response.text
    return response.status_code, str(detail)


async def test_checkpoint_folders_without_on_demand_export(
    orchestrator: Orchestrator, arena: ArenaServerProcess, e2e_model: ExportedRepository,
    tmp_path: Path,
) -> None:
    """This orchestrator has no export worker: the folder a served model came from resolves
    to that model; a missing folder says so; a checkpoint folder no served model came from
    gets the export command and the setting that turns on-demand export on."""
    served_folder = str(e2e_model.checkpoint.path)
    sid = _sid()
    created = await orchestrator.http.post(
        "/sessions", json=session_body(sid, arena, policy_path=served_folder))
    assert created.status_code == 200, created.text
    status = await orchestrator.status(sid)
    assert status["status"] == "ready" and status["policy_path"] == served_folder
    assert status["inference_stats"]["model"] == e2e_model.name
    await orchestrator.http.delete(f"/sessions/{sid}")

    body = session_body(_sid(), arena, policy_path="./outputs/train/act/checkpoints/last")
    code, detail = await _post(orchestrator, body)
    assert code == 400 and "checkpoint folder not found" in detail
    folder = str(make_one_camera_checkpoint(tmp_path / "unserved").path)
    code, detail = await _post(orchestrator, session_body(_sid(), arena, policy_path=folder))
    assert code == 400
    assert f"python -m export {folder}" in detail and "ORCHESTRATOR_EXPORT_JOBS_DIR" in detail
    assert orchestrator.manager.sessions() == []


async def test_unknown_model_and_camera_mismatch_name_both_sides(
    orchestrator: Orchestrator, arena: ArenaServerProcess
) -> None:
    status, detail = await _post(orchestrator, session_body(_sid(), arena,
                                                            policy_path="no_such_model"))
    assert status == 404 and "no_such_model" in detail
    status, detail = await _post(orchestrator, session_body(_sid(), arena,
                                                            camera_names=["wrist", "top"]))
    assert status == 400
    assert "['wrist', 'top']" in detail and "['front']" in detail
    # Nothing was created for either.
    assert orchestrator.manager.sessions() == []


async def test_limits_the_safety_layer_cannot_hold_are_refused_and_leave_no_rooms(
    orchestrator: Orchestrator, arena: ArenaServerProcess
) -> None:
    """JSON floats pass "inf" through; the safety layer needs finite limits to clamp to
    (refused by the request's validation, before anything is opened)."""
    tasks_before = len(asyncio.all_tasks())
    sid, workspace = _sid(), uuid.uuid4().hex
    body = session_body(sid, arena, workspace_id=workspace,
                        joint_limits={"joint_0.pos": ["-inf", "inf"]})
    status, detail = await _post(orchestrator, body)
    assert status == 422 and "joint_0.pos" in detail and "finite" in detail
    assert orchestrator.manager.sessions() == []
    async with ArenaRest(arena.base_url) as rest:
        assert await rest.list_robotics_rooms(workspace) == []
        assert await rest.list_video_rooms(workspace) == []
    await asyncio.sleep(0.2)
    assert len(asyncio.all_tasks()) <= tasks_before


async def test_unknown_and_duplicate_sessions(
    orchestrator: Orchestrator, arena: ArenaServerProcess
) -> None:
    for method, path in (("GET", "/sessions/nope"), ("DELETE", "/sessions/nope"),
                         ("POST", "/sessions/nope/start"), ("POST", "/sessions/nope/stop"),
                         ("POST", "/sessions/nope/restart"),
                         ("POST", "/debug/sessions/nope/reset"),
                         ("GET", "/debug/sessions/nope/queue")):
        response = await orchestrator.http.request(method, path)
        assert response.status_code == 404, (method, path, response.text)
        assert "nope" in response.json()["detail"]
    sid = _sid()
    await orchestrator.create_session(**session_body(sid, arena))
    status, detail = await _post(orchestrator, session_body(sid, arena))
    assert status == 409 and sid in detail
    # A session that is not running cannot be started twice, but stop always works.
    assert (await orchestrator.http.post(f"/sessions/{sid}/stop")).status_code == 200
    assert (await orchestrator.http.delete(f"/sessions/{sid}")).status_code == 200


async def test_unreachable_arena_is_503_and_leaves_nothing(
    orchestrator: Orchestrator,
) -> None:
    tasks_before = len(asyncio.all_tasks())
    body = {"session_id": _sid(), "policy_path": "tiny_act", "camera_names": ["front"],
            "arena_server_url": f"http://127.0.0.1:{free_port()}"}
    status, detail = await _post(orchestrator, body)
    assert status == 503
    assert "Arena server" in detail and body["arena_server_url"] in detail
    assert orchestrator.manager.sessions() == []
    await asyncio.sleep(0.2)
    assert len(asyncio.all_tasks()) <= tasks_before


async def test_an_arena_url_that_refuses_is_502_and_leaves_nothing(
    orchestrator: Orchestrator,
) -> None:
    """A server that answers 4xx (here: an orchestrator that wants an API key, as a
    private Space's proxy would) is no Arena server to retry: 502 naming its answer."""
    settings = Settings(triton_url=f"127.0.0.1:{free_port()}", api_key=SecretStr("not-yours"))
    async with run_orchestrator(settings) as guarded:
        body = {"session_id": _sid(), "policy_path": "tiny_act", "camera_names": ["front"],
                "arena_server_url": guarded.base_url}
        status, detail = await _post(orchestrator, body)
    assert status == 502, detail
    assert "refused" in detail and "401" in detail and guarded.base_url in detail
    assert orchestrator.manager.sessions() == []


async def test_unreachable_triton_is_503(arena: ArenaServerProcess,
                                         e2e_triton: LocalTriton) -> None:
    settings = e2e_settings(e2e_triton).model_copy(
        update={"triton_url": f"127.0.0.1:{free_port()}", "triton_timeout_s": 1.0}
    )
    async with run_orchestrator(settings) as orch:
        sid, workspace = _sid(), uuid.uuid4().hex
        status, detail = await _post(orch, session_body(sid, arena, workspace_id=workspace))
        assert status == 503
        assert "Triton" in detail and settings.triton_url in detail
        # The check comes before any room is made.
        async with ArenaRest(arena.base_url) as rest:
            assert await rest.list_robotics_rooms(workspace) == []
            assert await rest.list_video_rooms(workspace) == []
        health = (await orch.http.get("/health")).json()
        assert health["triton_ready"] is False



async def frozen(url: str, within_s: float = 10.0) -> None:
    """Until a fresh client of the test's own gets no answer: the stop has taken hold. (Once
    in a CI run, the first request after the SIGSTOP was answered.)"""
    deadline = time.monotonic() + within_s
    async with TritonClient(url, control_timeout_s=0.5) as probe:
        while await probe.is_server_ready(timeout_s=0.5):
            assert time.monotonic() < deadline, f"Triton at {url} still answers when stopped"


async def test_a_frozen_triton_is_503_for_a_hub_id_too(
    arena: ArenaServerProcess, e2e_triton: LocalTriton
) -> None:
    """A frozen server (SIGSTOP: real) keeps its connection and answers nothing: the deadline
    passes. A hub id is first looked up among the served models; that lookup's timeout was a
    500 (the timeout is not an "unreachable"). A status meanwhile answers, saying so, within
    its own short bound (it waited out the 10 s control timeout), as do the health probes."""
    if not e2e_triton.is_running():
        e2e_triton.start()
    settings = e2e_settings(e2e_triton).model_copy(update={"triton_timeout_s": 1.0})
    async with run_orchestrator(settings) as orch:
        assert (await orch.http.get("/health")).json()["triton_ready"] is True  # connected
        sessions = [_sid() for _ in range(4)]
        for sid in sessions:
            assert (await orch.http.post("/sessions", json=session_body(sid, arena))
                    ).status_code == 200
        served = sessions[0]
        with stopped(e2e_triton.pid):
            await frozen(e2e_triton.grpc_url)
            began = time.monotonic()
            status = await orch.status(served)
            took = time.monotonic() - began
            assert status["status"] == "ready"
            assert "error" in status["stats"]["triton"], status["stats"]["triton"]
            assert took < 5.0, f"a status took {took:.1f} s"  # the bound, not speed
            # Health probes answer within a health check's own timeout (compose: 2 s) and
            # say so; each waited out the 10 s control timeout, so /health failed its check
            # and every scrape failed (the alert on orchestrator_triton_up never fired).
            for path, says in (("/health", '"triton_ready":false'),
                               ("/metrics", "orchestrator_triton_up 0.0"),
                               ("/debug/system", '"server_ready":false')):
                began = time.monotonic()
                response = await orch.http.get(path)
                took = time.monotonic() - began
                assert response.status_code == 200 and says in response.text, response.text
                assert took < 2.0, f"{path} took {took:.1f} s"  # the bound, not speed
            # The listing asks for all four at once (one after another: 4 x the bound).
            began = time.monotonic()
            listed = (await orch.http.get("/sessions")).json()
            took = time.monotonic() - began
            assert sorted(s["session_id"] for s in listed) == sorted(sessions)
            assert took < 5.0, f"the listing took {took:.1f} s"
            for policy_path in ("someorg/some_act", "tiny_act"):
                status, detail = await _post(orch, session_body(_sid(), arena,
                                                                policy_path=policy_path))
                assert status == 503, (policy_path, detail)
                assert "Triton" in detail and e2e_triton.grpc_url in detail, detail
        assert sorted(s.session_id for s in orch.manager.sessions()) == sorted(sessions)
        for sid in sessions:
            assert (await orch.http.delete(f"/sessions/{sid}")).status_code == 200


async def test_a_session_deleted_while_it_is_being_created_does_not_appear(
    orchestrator: Orchestrator, arena: ArenaServerProcess
) -> None:
    """The delete answered 404 (the id was not created yet), and the session then appeared
    and stayed. Then it answered at once, while the create went on making rooms, and a
    create of the id right after it was a 409 "already exists" of a session no listing
    showed. The delete now answers once the create has ended and removed what it made, as
    any delete does; a create sent meanwhile waits for that. The room server is frozen
    (SIGSTOP: real) to hold the create in its rooms' calls, and let go within the clients'
    5 s timeout."""
    assert arena.proc is not None
    sid, workspace = _sid(), uuid.uuid4().hex
    body = session_body(sid, arena, workspace_id=workspace)
    with stopped(arena.proc.pid):
        creating = asyncio.create_task(orchestrator.http.post("/sessions", json=body))
        await asyncio.sleep(1.0)  # past the model check, waiting on the room server
        deleting = asyncio.create_task(orchestrator.http.delete(f"/sessions/{sid}"))
        await asyncio.sleep(0.3)
        assert (await orchestrator.http.get(f"/sessions/{sid}")).status_code == 404
        again = asyncio.create_task(orchestrator.http.post("/sessions", json=body))
        await asyncio.sleep(0.3)
        assert not again.done()  # it waits for the first create to end
    deleted = await deleting
    assert deleted.status_code == 200, deleted.text
    response = await creating
    assert response.status_code == 409, response.text
    assert "deleted while it was being created" in response.json()["detail"]
    created = await again
    assert created.status_code == 200, created.text
    assert [s.session_id for s in orchestrator.manager.sessions()] == [sid]
    rooms = created.json()
    async with ArenaRest(arena.base_url) as rest:
        robotics = {r["id"] for r in await rest.list_robotics_rooms(workspace)}
        assert {rooms["joint_input_room_id"], rooms["joint_output_room_id"]} == robotics
        assert {r["id"] for r in await rest.list_video_rooms(workspace)} == set(
            rooms["camera_room_ids"].values())
        assert (await orchestrator.http.delete(f"/sessions/{sid}")).status_code == 200
        assert await rest.list_robotics_rooms(workspace) == []
        assert await rest.list_video_rooms(workspace) == []


async def test_names_outside_ascii_are_refused_before_anything_is_made(
    orchestrator: Orchestrator, arena: ArenaServerProcess
) -> None:
    """str.isalnum takes letters of any script: a workspace "ワーク" went to the room
    server percent-encoded, and a camera name likewise."""
    for extra in ({"workspace_id": "ワーク"}, {"workspace_id": "ws١"},
                  {"camera_names": ["frønt"]}):
        status, detail = await _post(orchestrator, session_body(_sid(), arena, **extra))
        assert status == 400, (extra, detail)
        assert "letters, digits" in detail
    assert orchestrator.manager.sessions() == []


async def test_a_session_whose_video_room_is_another_s_is_a_409(
    orchestrator: Orchestrator, arena: ArenaServerProcess
) -> None:
    """Rooms are ``{session}-{camera}``, and both may hold '-': session ``a`` with camera
    ``x-front`` and session ``a-x`` with ``front`` make the same room. The second create
    replaced the first's room (its robot's stream dropped) and either delete removed it."""
    tail, workspace = uuid.uuid4().hex[:6], uuid.uuid4().hex
    first = f"clash-{tail}"
    await orchestrator.create_session(**session_body(first, arena, workspace_id=workspace))
    body = session_body("clash", arena, workspace_id=workspace, camera_names=[f"{tail}-front"])
    status, detail = await _post(orchestrator, body)
    assert status == 409, detail
    assert f"{first}-front" in detail and first in detail, detail
    assert [s.session_id for s in orchestrator.manager.sessions()] == [first]
    elsewhere = await orchestrator.http.post("/sessions", json={**body, "workspace_id": None})
    assert elsewhere.status_code != 409, elsewhere.text  # another workspace: no clash
    assert (await orchestrator.http.delete(f"/sessions/{first}")).status_code == 200
