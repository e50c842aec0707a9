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

from orchestrator.arena.rest import ArenaRest
from orchestrator.fleet.worker import worker_name
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
    session and deletes its rooms. It ran on, unlisted and unreachable."""
    sid, workspace = new_id("cd"), uuid.uuid4().hex
    before = {w: h["sessions"] for w, h in (await fleet.http.get("/health")).json()[
        "workers"].items()}
    with frozen(arena):  # the create waits on the room server
        creating = asyncio.create_task(
            fleet.http.post("/sessions", json={**body(sid, arena), "workspace_id": workspace}))
        await wait_for(lambda: router(fleet).registry.get(sid) is not None, 3, "the reservation")
        await asyncio.sleep(0.3)  # the worker is in the create by now
        assert (await fleet.http.delete(f"/sessions/{sid}")).status_code == 200
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
    async with slow_deletes(arena.base_url, 0.5) as url, ArenaRest(arena.base_url) as rest, \
            contextlib.AsyncExitStack() as stack:
        request = {**body(sid, arena), "arena_server_url": url, "workspace_id": workspace}
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
                base_url=stack.enter_context(api_process(env)), timeout=30))
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
