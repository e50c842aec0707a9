"""Calls that land while a worker is busy with a session for seconds: a restore after the
worker was killed, a create. The room server is frozen (SIGSTOP: real, no mock) to make
those seconds; it is always let go (SIGCONT) within its clients' 5 s timeout or in a
``finally``."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import time
import uuid

import httpx
import pytest
import ray

from orchestrator.api.schemas import CreateSessionRequest
from orchestrator.arena.rest import ArenaRest
from orchestrator.fleet.cluster import WORKER_RUNTIME_ENV
from orchestrator.fleet.worker import SessionWorker, record_for, worker_name
from orchestrator.triton.launcher import LocalTriton
from tests.fleet.test_fleet import api_process, body, new_id, owner, router
from tests.support.arena import ArenaServerProcess
from tests.support.orchestrator import Orchestrator, wait_for
from tests.support.processes import stopped
from tests.support.proxy import slow_deletes


def frozen(arena: ArenaServerProcess) -> contextlib.AbstractContextManager[None]:
    assert arena.proc is not None
    return stopped(arena.proc.pid)


async def restoring(fleet: Orchestrator, index: int) -> list[str]:
    health = (await fleet.http.get("/health")).json()["workers"][worker_name(index)]
    return list(health.get("restoring", [])) if health["alive"] else []


async def test_a_stop_during_a_slow_restore_is_answered_at_once_and_holds(
    fleet: Orchestrator, arena: ArenaServerProcess
) -> None:
    """The emergency path waits on no restore; the session comes back stopped. The listing
    answers meanwhile, showing the session being restored (it was a 503 for everyone)."""
    sid = new_id("rs")
    await fleet.create_session(**body(sid, arena))
    assert (await fleet.http.post(f"/sessions/{sid}/start")).json()["status"] == "running"
    index = owner(fleet, sid)
    handle = ray.get_actor(worker_name(index), namespace=fleet.app.state.settings.ray_namespace)
    old_pid = await handle.pid.remote()
    with frozen(arena):  # the restored session cannot rejoin its rooms yet
        os.kill(old_pid, signal.SIGKILL)

        async def being_restored() -> bool:
            return sid in await restoring(fleet, index)
        await wait_for(being_restored, 30, "the restore under way")

        began = time.monotonic()
        response = await fleet.http.post(f"/sessions/{sid}/stop")
        stop_s = time.monotonic() - began
        assert response.status_code == 200, response.text
        assert response.json()["status"] == "stopped"
        assert stop_s < 5.0, f"the stop took {stop_s:.1f} s"  # the restore's wait is 10 s

        response = await fleet.http.get("/sessions")
        assert response.status_code == 200, response.text
        listed = {s["session_id"]: s for s in response.json()}
        assert listed[sid]["status"] == "initializing"
        assert "being restored" in listed[sid]["error_message"]
        assert sid in await restoring(fleet, index)  # all of it happened during the restore
    await wait_for(lambda: _restored(fleet, index, sid), 60, "the restore to finish")
    status = await fleet.status(sid)
    assert status["status"] == "stopped", status
    record = router(fleet).registry.get(sid)
    assert record is not None and record.desired == "stopped"
    ticks = status["stats"].get("ticks", 0)
    await asyncio.sleep(0.5)
    assert (await fleet.status(sid))["stats"].get("ticks", 0) == ticks
    assert (await fleet.http.delete(f"/sessions/{sid}")).status_code == 200


async def _restored(fleet: Orchestrator, index: int, sid: str) -> bool:
    return sid not in await restoring(fleet, index)


async def test_a_session_deleted_while_its_worker_creates_it_is_not_left_there(
    fleet: Orchestrator, arena: ArenaServerProcess
) -> None:
    """The record goes at once; the worker, finding it gone when its create ends, closes the
    session and deletes its rooms. It ran on, unlisted and unreachable. The delete answers
    when that is done (its mark stands till then: a create of the id waits for it)."""
    sid, workspace = new_id("cd"), uuid.uuid4().hex
    before = {w: h["sessions"] for w, h in (await fleet.http.get("/health")).json()[
        "workers"].items()}
    with frozen(arena):  # the create waits on the room server
        creating = asyncio.create_task(
            fleet.http.post("/sessions", json={**body(sid, arena), "workspace_id": workspace}))
        await wait_for(lambda: router(fleet).registry.get(sid) is not None, 3, "the reservation")
        await asyncio.sleep(0.3)  # the worker is in the create by now
        # It answers once the create has ended and removed what it made.
        deleting = asyncio.create_task(fleet.http.delete(f"/sessions/{sid}"))
        await asyncio.sleep(0.3)
    assert (await deleting).status_code == 200
    response = await creating
    assert response.status_code == 409, response.text
    assert "deleted" in response.json()["detail"]
    assert (await fleet.http.get(f"/sessions/{sid}")).status_code == 404
    after = {w: h["sessions"] for w, h in (await fleet.http.get("/health")).json()[
        "workers"].items()}
    assert after == before
    async with ArenaRest(arena.base_url) as rest:
        assert await rest.list_robotics_rooms(workspace) == []
        assert await rest.list_video_rooms(workspace) == []


async def test_sessions_may_be_called_ok_or_error(
    fleet: Orchestrator, arena: ArenaServerProcess
) -> None:
    """Worker replies are {"ok": ...} or {"error": ...}: a session of either name in a
    worker's listing broke the refresh, and every session's state froze in the API."""
    for sid in ("ok", "error"):
        await fleet.create_session(**body(sid, arena))
    await router(fleet).refresh()
    states = {s.session_id: s.state.value for s in router(fleet).sessions()}
    assert states["ok"] == states["error"] == "ready"
    listed = {s["session_id"] for s in (await fleet.http.get("/sessions")).json()}
    assert {"ok", "error"} <= listed
    for sid in ("ok", "error"):
        assert (await fleet.http.delete(f"/sessions/{sid}")).status_code == 200


@pytest.mark.parametrize("creator", ["this API process", "another API process"])
async def test_a_create_during_the_delete_of_its_id_keeps_its_rooms(
    fleet: Orchestrator, arena: ArenaServerProcess, e2e_triton: LocalTriton, creator: str
) -> None:
    """As in one process (tests/e2e/test_odd_arena_servers.py), but the create lands on
    the other worker, not the one still deleting the old session's rooms: the worker's own
    wait does not see it there. Sent to a second API process, the create is the same race
    across API replicas: that process has no memory of this one's delete."""
    sid, workspace, filler = new_id("again"), new_id("ws"), new_id("filler")
    env = {"ORCHESTRATOR_WORKERS": "2", "ORCHESTRATOR_RAY_ADDRESS": ray.get_runtime_context()
           .gcs_address, "ORCHESTRATOR_TRITON_URL": e2e_triton.grpc_url,
           "ORCHESTRATOR_RAY_NAMESPACE": fleet.app.state.settings.ray_namespace}
    async with slow_deletes(arena.base_url, 0.5) as proxy, ArenaRest(arena.base_url) as rest, \
            contextlib.AsyncExitStack() as stack:
        request = {**body(sid, arena), "arena_server_url": proxy.url, "workspace_id": workspace}
        # The filler takes the first worker, the session the other; with the filler gone,
        # the least loaded worker for the create below is the filler's.
        await fleet.create_session(**body(filler, arena))
        assert (await fleet.http.post("/sessions", json=request)).status_code == 200
        first = owner(fleet, sid)
        assert first != owner(fleet, filler)
        assert (await fleet.http.delete(f"/sessions/{filler}")).status_code == 200
        client = fleet.http
        if creator == "another API process":
            client = await stack.enter_async_context(httpx.AsyncClient(
                base_url=stack.enter_context(api_process(env)).url, timeout=30))
        deleting = asyncio.create_task(fleet.http.delete(f"/sessions/{sid}"))
        await asyncio.sleep(0.2)  # the delete is under way, its room deletes held
        created = await client.post("/sessions", json=request)
        assert (await deleting).status_code == 200
        assert created.status_code == 200, created.text
        assert owner(fleet, sid) != first
        rooms = created.json()
        video = {r["id"] for r in await rest.list_video_rooms(workspace)}
        robotics = {r["id"] for r in await rest.list_robotics_rooms(workspace)}
        assert set(rooms["camera_room_ids"].values()) <= video, video
        assert {rooms["joint_input_room_id"], rooms["joint_output_room_id"]} <= robotics
        assert (await client.delete(f"/sessions/{sid}")).status_code == 200


async def test_a_create_after_the_api_process_deleting_its_id_was_killed(
    fleet: Orchestrator, arena: ArenaServerProcess, e2e_triton: LocalTriton
) -> None:
    """A second API process is killed (SIGKILL) while its delete runs, its worker still
    removing the old session's rooms (the room server's DELETEs held). Its mark dies with
    it: its Ray job is dead, so the create here does not wait out the bound (50 s, over
    this client's 30 s). The worker's own mark stands until the rooms are gone: the
    create waits for that, and the new session's rooms stay."""
    sid, workspace, filler = new_id("killed"), new_id("ws"), new_id("filler")
    env = {"ORCHESTRATOR_WORKERS": "2", "ORCHESTRATOR_RAY_ADDRESS": ray.get_runtime_context()
           .gcs_address, "ORCHESTRATOR_TRITON_URL": e2e_triton.grpc_url,
           "ORCHESTRATOR_RAY_NAMESPACE": fleet.app.state.settings.ray_namespace}
    registry = router(fleet).registry
    async with slow_deletes(arena.base_url, 1.5) as proxy, ArenaRest(arena.base_url) as rest:
        request = {**body(sid, arena), "arena_server_url": proxy.url, "workspace_id": workspace}
        await fleet.create_session(**body(filler, arena))  # as above: the create lands
        assert (await fleet.http.post("/sessions", json=request)).status_code == 200
        first = owner(fleet, sid)  # on the worker that is not deleting
        assert (await fleet.http.delete(f"/sessions/{filler}")).status_code == 200
        with api_process(env) as other:
            async with httpx.AsyncClient(base_url=other.url, timeout=30) as client:
                deleting = asyncio.create_task(client.delete(f"/sessions/{sid}"))

                def marked_by_both() -> bool:
                    marks = registry.deletes_of(sid)
                    return any(m.startswith("api-") for m in marks) and any(
                        m.startswith("worker-") for m in marks)
                await wait_for(marked_by_both, 10, "the delete's marks (API process, worker)")
                other.proc.kill()
                other.proc.wait()
                with contextlib.suppress(httpx.HTTPError):
                    await deleting
        created = await fleet.http.post("/sessions", json=request, timeout=30)
        assert created.status_code == 200, created.text
        assert owner(fleet, sid) != first
        # The old session's room deletes are through (the create waited for them): what
        # they left is what the new session has.
        await wait_for(lambda: proxy.holding == 0, 15, "the held room deletes to pass")
        await asyncio.sleep(0.2)  # the last one, passed on, reaches the room server
        assert registry.deletes_of(sid) == {}  # the dead process's mark was cleared
        rooms = created.json()
        video = {r["id"] for r in await rest.list_video_rooms(workspace)}
        robotics = {r["id"] for r in await rest.list_robotics_rooms(workspace)}
        assert set(rooms["camera_room_ids"].values()) <= video, video
        assert {rooms["joint_input_room_id"], rooms["joint_output_room_id"]} <= robotics
        assert (await fleet.http.delete(f"/sessions/{sid}")).status_code == 200


async def test_a_session_whose_record_is_gone_is_closed_by_its_worker(
    fleet: Orchestrator, arena: ArenaServerProcess
) -> None:
    """An API process that dies, or gives up, between removing a session's record and
    reaching its worker left the session running there: unlisted, out of the API's reach,
    driving its robot. The record is removed here as that process would have done (the
    millisecond between its two steps cannot be hit for real); the worker's sweep closes
    the session and removes its rooms."""
    sid, workspace = new_id("orphan"), new_id("ws")
    created = await fleet.http.post("/sessions", json={**body(sid, arena),
                                                      "workspace_id": workspace})
    assert created.status_code == 200, created.text
    assert (await fleet.http.post(f"/sessions/{sid}/start")).json()["status"] == "running"
    handle = ray.get_actor(worker_name(owner(fleet, sid)),
                           namespace=fleet.app.state.settings.ray_namespace)
    assert sid in (await handle.list.remote())["ok"]
    router(fleet).registry.delete(sid)

    async def closed() -> bool:
        return sid not in (await handle.list.remote())["ok"]
    await wait_for(closed, 20, "the worker to close the session")
    async with ArenaRest(arena.base_url) as rest:
        await wait_for(lambda: _no_rooms(rest, workspace), 10, "the session's rooms to go")
    assert router(fleet).registry.deletes_of(sid) == {}
    assert (await fleet.http.get(f"/sessions/{sid}")).status_code == 404


async def _no_rooms(rest: ArenaRest, workspace: str) -> bool:
    return not (await rest.list_video_rooms(workspace)
                or await rest.list_robotics_rooms(workspace))


async def test_a_create_after_the_worker_deleting_its_id_was_killed(
    fleet: Orchestrator, arena: ArenaServerProcess
) -> None:
    """The worker removing a session's rooms is killed (SIGKILL) mid-delete. Its mark goes
    when Ray restarts it (its new process has no delete running), so a create of the id
    does not wait out the bound (50 s, over this client's 30 s)."""
    sid, workspace = new_id("wkill"), new_id("ws")
    registry = router(fleet).registry
    async with slow_deletes(arena.base_url, 3.0) as proxy:
        request = {**body(sid, arena), "arena_server_url": proxy.url, "workspace_id": workspace}
        assert (await fleet.http.post("/sessions", json=request)).status_code == 200
        handle = ray.get_actor(worker_name(owner(fleet, sid)),
                               namespace=fleet.app.state.settings.ray_namespace)
        pid = await handle.pid.remote()
        deleting = asyncio.create_task(fleet.http.delete(f"/sessions/{sid}"))
        await wait_for(lambda: any(m.startswith("worker-") for m in registry.deletes_of(sid)),
                       10, "the worker's delete mark")
        os.kill(pid, signal.SIGKILL)
        assert (await deleting).status_code == 200  # the record is gone; the rooms may stay
        created = await fleet.http.post("/sessions", json=request, timeout=30)
        assert created.status_code == 200, created.text
        assert registry.deletes_of(sid) == {}
        assert (await fleet.http.delete(f"/sessions/{sid}")).status_code == 200


async def test_a_create_after_the_worker_deleting_its_id_is_gone_for_good(
    fleet: Orchestrator, arena: ArenaServerProcess
) -> None:
    """A worker removed from the fleet (killed with no restart, as when ``ORCHESTRATOR_WORKERS``
    shrinks) mid-delete: no next process of it will clear its mark, so a create of the id
    waited out the bound (50 s, over this client's 30 s). An extra worker (index 5, a real
    actor like the fleet's) owns the session here, so the fleet's own two stay as they are."""
    sid, workspace = new_id("wgone"), new_id("ws")
    settings = fleet.app.state.settings
    registry = router(fleet).registry
    async with slow_deletes(arena.base_url, 3.0) as proxy:
        request = {**body(sid, arena), "arena_server_url": proxy.url, "workspace_id": workspace}
        spec = CreateSessionRequest(**request).to_spec()
        extra = ray.remote(SessionWorker).options(
            name=worker_name(5), namespace=settings.ray_namespace, lifetime="detached",
            max_restarts=-1, num_cpus=0, runtime_env=WORKER_RUNTIME_ENV,
        ).remote(5, settings.model_dump(mode="json", exclude={"api_key"}),
                 settings.ray_namespace)
        try:
            assert registry.reserve(record_for(spec, 5))
            reply = await asyncio.wait_for(extra.create.remote(spec.to_dict()), 60)
            assert "ok" in reply, reply
            registry.delete(sid)  # as the API's delete does, before it asks the worker
            deleting = extra.delete.remote(sid)
            await wait_for(lambda: any(m.startswith("worker-5-") for m in registry.deletes_of(sid)),
                           10, "the extra worker's delete mark")
        finally:
            ray.kill(extra, no_restart=True)
        with contextlib.suppress(ray.exceptions.RayActorError):
            await deleting
        created = await fleet.http.post("/sessions", json=request, timeout=30)
        assert created.status_code == 200, created.text
        assert registry.deletes_of(sid) == {}
        assert (await fleet.http.delete(f"/sessions/{sid}")).status_code == 200


async def test_a_create_that_names_no_workspace_gets_the_router_s(
    fleet: Orchestrator, arena: ArenaServerProcess
) -> None:
    """The router chooses the workspace before any worker is asked: every worker a create
    tries, and a restore, then use the same rooms. A worker chose it, so one answering
    after the router had moved on to the next left its rooms in a workspace of its own."""
    sid = new_id("ws")
    registry = router(fleet).registry
    with frozen(arena):  # the create waits on the room server
        creating = asyncio.create_task(fleet.http.post("/sessions", json=body(sid, arena)))
        await wait_for(lambda: registry.get(sid) is not None, 3, "the reservation")
        reserved = registry.get(sid)
        assert reserved is not None
    response = await creating
    assert response.status_code == 200, response.text
    assert reserved.spec["workspace_id"] is not None
    assert response.json()["workspace_id"] == reserved.spec["workspace_id"]
    assert (await fleet.http.delete(f"/sessions/{sid}")).status_code == 200


async def test_a_create_answered_after_the_router_moved_on_leaves_the_record_as_it_is(
    fleet: Orchestrator, arena: ArenaServerProcess
) -> None:
    """A router gives up on a worker's create after 30 s and places the session on the next
    worker. The first one's late answer wrote its own desired state ("ready") and spec over
    the new owner's: a running session would come back stopped from a restore. Here the
    test is the router: it reserves, asks worker 0, and moves the record on as the router
    does (waiting out its 30 s is the only other way); the room server is frozen to hold
    the create."""
    sid, workspace = new_id("moved"), new_id("ws")
    spec = CreateSessionRequest(**{**body(sid, arena), "workspace_id": workspace}).to_spec()
    registry = router(fleet).registry
    handle = ray.get_actor(worker_name(0), namespace=fleet.app.state.settings.ray_namespace)
    assert registry.reserve(record_for(spec, 0))
    try:
        with frozen(arena):
            reply = handle.create.remote(spec.to_dict())
            await asyncio.sleep(1.0)  # the worker is in the create, waiting on the server
            moved = registry.update(sid, owner=1, desired="running")
        answer = await asyncio.wait_for(reply, 60)
        assert "error" in answer and "placed elsewhere" in str(answer), answer
        assert registry.get(sid) == moved
        assert sid not in (await handle.list.remote())["ok"]
    finally:
        registry.delete(sid)
        async with ArenaRest(arena.base_url) as rest:  # the next owner's, had there been one
            for room in await rest.list_video_rooms(workspace):
                await rest.delete_video_room(workspace, room["id"])
            for room in await rest.list_robotics_rooms(workspace):
                await rest.delete_robotics_room(workspace, room["id"])


async def test_creates_at_once_never_go_over_the_session_limit(
    fleet: Orchestrator, arena: ArenaServerProcess
) -> None:
    """The count was read before the reservation: five creates at once against a limit of
    two all passed it (the workers had room for six)."""
    fleet_router = router(fleet)
    saved, before = fleet_router.settings, fleet_router.registry.session_ids()
    fleet_router.settings = saved.model_copy(update={"max_sessions": len(before) + 2})
    ids = [new_id("lim") for _ in range(5)]
    try:
        answers = await asyncio.gather(
            *(fleet.http.post("/sessions", json=body(sid, arena)) for sid in ids))
        created = [sid for sid, a in zip(ids, answers, strict=True) if a.status_code == 200]
        refused = [a for a in answers if a.status_code != 200]
        assert len(created) <= 2, created
        assert all(a.status_code == 429 and "session limit" in a.text for a in refused)
        assert fleet_router.registry.session_ids() - before == set(created)
        for sid in created:
            assert (await fleet.http.delete(f"/sessions/{sid}")).status_code == 200
        response = await fleet.http.post("/sessions", json=body(ids[0], arena))
        assert response.status_code == 200, response.text  # nothing of them held a place
        assert (await fleet.http.delete(f"/sessions/{ids[0]}")).status_code == 200
    finally:
        fleet_router.settings = saved


async def test_a_session_whose_video_room_is_another_worker_s_is_a_409(
    fleet: Orchestrator, arena: ArenaServerProcess
) -> None:
    """As in one process (tests/e2e/test_create_errors.py), across workers: each worker
    knows only its own sessions' rooms, the registry all of them."""
    tail, workspace = uuid.uuid4().hex[:6], new_id("ws")
    first = f"clash-{tail}"
    assert (await fleet.http.post("/sessions", json={**body(first, arena),
                                                    "workspace_id": workspace})).status_code == 200
    response = await fleet.http.post("/sessions", json={
        **body("clash", arena), "workspace_id": workspace, "camera_names": [f"{tail}-front"]})
    assert response.status_code == 409, response.text
    assert f"{first}-front" in response.json()["detail"]
    assert router(fleet).registry.get("clash") is None
    assert (await fleet.http.delete(f"/sessions/{first}")).status_code == 200
