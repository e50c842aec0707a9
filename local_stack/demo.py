"""``make demo``: a simulated robot driven by the demo model through a real session, with
live figures in the terminal until Ctrl-C. Used by ``local_stack.stack``."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sys
import time
from typing import Any

import httpx

from arena_server.launcher import url_host
from orchestrator.settings import Settings
from orchestrator.triton.client import TritonClient
from orchestrator.triton.errors import TritonError
from sim_robot.robot import SimRobot

log = logging.getLogger("local_stack.demo")
SESSION_ID = "demo"


def _line(stats: dict[str, Any], rate: float, batch: float | None) -> str:
    latency = stats.get("inference_latency_ms", {})
    jitter = stats.get("tick_jitter_ms", {})
    return (
        f"commands/s {rate:5.1f} | inference p50 {latency.get('p50', 0):6.1f} ms "
        f"p95 {latency.get('p95', 0):6.1f} ms | "
        f"batch {'   -' if batch is None else f'{batch:4.2f}'} | "
        f"jitter p99 {jitter.get('p99', 0):5.2f} ms | underruns {stats.get('plan_underruns', 0)}"
        f" | plan {stats.get('actions_in_queue', 0):3d} | {stats.get('reason', '')}"
    )


async def run_demo(settings: Settings, model: str, stop: asyncio.Event) -> None:
    api = f"http://{url_host(settings.host)}:{settings.port}"
    arena = settings.arena_default_url
    headers = {"X-API-Key": settings.api_key.get_secret_value()} if settings.api_key else {}
    async with (
        httpx.AsyncClient(base_url=api, headers=headers, timeout=30) as http,
        TritonClient(settings.triton_url or "127.0.0.1:8101") as triton,
    ):
        contract = await triton.contract(model)
        response = await http.post("/sessions", json={
            "session_id": SESSION_ID, "policy_path": model,
            "camera_names": list(contract.cameras), "arena_server_url": arena,
        })
        if response.status_code != 200:
            raise RuntimeError(f"demo session could not be created: {response.text}")
        created = response.json()
        height, width = next(iter(contract.image_sizes.values()))
        robot = SimRobot(
            arena, created["workspace_id"], joint_input=created["joint_input_room_id"],
            joint_output=created["joint_output_room_id"], cameras=created["camera_room_ids"],
            joints=[n.removesuffix(".pos") for n in contract.state_names],
            rate=contract.fps, fps=15, width=max(width, 64), height=max(height, 48),
        )
        await robot.start()
        try:
            await http.post(f"/sessions/{SESSION_ID}/start")
            print(f"demo: simulated robot {robot.robot_id} driven by session "  # noqa: T201
                  f"'{SESSION_ID}' ({model}{', DEMO weights' if contract.is_demo else ''}); "
                  "Ctrl-C to stop", flush=True)
            await _show(http, triton, model, stop)
        finally:
            await robot.stop()
            with contextlib.suppress(httpx.HTTPError):
                await http.delete(f"/sessions/{SESSION_ID}")


async def _show(http: httpx.AsyncClient, triton: TritonClient, model: str,
                stop: asyncio.Event) -> None:
    last_sent, last_time = 0, time.monotonic()
    last_inf = last_exe = 0
    tty = sys.stdout.isatty()
    while not stop.is_set():
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(stop.wait(), 1.0)
        stats = (await http.get(f"/sessions/{SESSION_ID}")).json().get("stats", {})
        now = time.monotonic()
        sent = int(stats.get("commands_sent", 0))
        rate = (sent - last_sent) / max(now - last_time, 1e-6)
        last_sent, last_time = sent, now
        batch = None
        with contextlib.suppress(TritonError):
            s = await triton.statistics(model)
            if s.execution_count > last_exe:
                batch = (s.inference_count - last_inf) / (s.execution_count - last_exe)
            last_inf, last_exe = s.inference_count, s.execution_count
        line = _line(stats, rate, batch)
        print(("\r" + line) if tty else line, end="" if tty else "\n", flush=True)  # noqa: T201
    if tty:
        print(flush=True)  # noqa: T201
