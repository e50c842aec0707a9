"""Joint message latency producer -> consumer through the local room server, over loopback.

    python -m bench.arena_bench [--rate 100] [--count 1000] [--url http://host:port]

Without --url it starts `arena-server` as a child process on a free port (the server in its
own process, as in production). Results are merged into bench/results/arena.json under the key
"joints"; other keys (the video part) are kept. `joint_latency()` is the reusable function.
Under "client_cost": this process's thread CPU per call of what a session does against the
server every tick or every second (a command's send_joints; a room GET and a workspace's
room list, the presence poll), same server, same run.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import platform
import statistics
import time
from pathlib import Path
from typing import Any

from arena_server.launcher import LocalArenaServer
from orchestrator.arena.rest import ArenaRest, new_workspace
from orchestrator.arena.robotics import RoboticsConsumer, RoboticsProducer

RESULTS = Path(__file__).parent / "results" / "arena.json"
JOINTS = ["shoulder_pan", "shoulder_lift", "elbow_flex", "wrist_flex", "wrist_roll", "gripper"]


def _percentile(sorted_values: list[float], q: float) -> float:
    if not sorted_values:
        return float("nan")
    k = (len(sorted_values) - 1) * q
    lo, hi = int(k), min(int(k) + 1, len(sorted_values) - 1)
    return sorted_values[lo] + (sorted_values[hi] - sorted_values[lo]) * (k - lo)


async def _measure(base_url: str, rate_hz: float, count: int, warmup: int) -> dict[str, Any]:
    workspace, room = new_workspace(), "bench-joints"
    rest = ArenaRest(base_url)
    await rest.create_robotics_room(workspace, room)
    sent_at: dict[int, float] = {}
    latencies: list[float] = []
    done = asyncio.Event()
    total = warmup + count

    def on_joints(changed: dict[str, float]) -> None:
        now = time.perf_counter()
        seq = int(changed.get(JOINTS[0], -1))
        t0 = sent_at.pop(seq, None)
        if t0 is not None and seq >= warmup:
            latencies.append(now - t0)
        if seq == total - 1:
            done.set()

    consumer = RoboticsConsumer(base_url, workspace, room, on_joints=on_joints)
    producer = RoboticsProducer(base_url, workspace, room)
    await consumer.start()
    await producer.start()
    period = 1.0 / rate_hz
    send_gaps: list[float] = []
    try:
        start = time.perf_counter()
        last = start
        for seq in range(total):
            # Absolute schedule: a late tick does not push every later tick back.
            delay = start + seq * period - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            # Every joint changes every tick, so the server forwards all six each time.
            values = {name: float(seq) + i * 1e-3 for i, name in enumerate(JOINTS)}
            now = time.perf_counter()
            send_gaps.append(now - last)
            last = now
            sent_at[seq] = now
            await producer.send_joints(values)
        with contextlib.suppress(TimeoutError):  # lost messages are counted below
            await asyncio.wait_for(done.wait(), 10.0)
        elapsed = time.perf_counter() - start
    finally:
        await producer.stop()
        await consumer.stop()
        await rest.delete_robotics_room(workspace, room, missing_ok=True)
        await rest.aclose()
    ms = sorted(x * 1000 for x in latencies)
    return {
        "rate_hz": rate_hz,
        "messages_measured": len(ms),
        "messages_lost": count - len(ms),
        "latency_ms": {
            "p50": round(_percentile(ms, 0.50), 3),
            "p90": round(_percentile(ms, 0.90), 3),
            "p99": round(_percentile(ms, 0.99), 3),
            "max": round(ms[-1], 3) if ms else None,
            "mean": round(statistics.fmean(ms), 3) if ms else None,
        },
        "achieved_send_rate_hz": round(total / elapsed, 1) if elapsed > 0 else None,
        "consumer_malformed": consumer.stats.malformed,
        "joints_per_message": len(JOINTS),
    }


async def joint_latency(
    base_url: str | None = None, *, rate_hz: float = 100.0, count: int = 1000, warmup: int = 50
) -> dict[str, Any]:
    """Producer -> server -> consumer latency of joint_update messages paced at rate_hz.

    With base_url None a local server is started in a child process and stopped afterwards.
    """
    if base_url is not None:
        result = await _measure(base_url, rate_hz, count, warmup)
        result["server"] = base_url
        return result
    server = LocalArenaServer()
    await server.astart()
    try:
        result = await _measure(server.base_url, rate_hz, count, warmup)
    finally:
        await server.astop()
    result["server"] = "local arena_server (child process, loopback)"
    return result


async def _client_cost(base_url: str, count: int) -> dict[str, Any]:
    workspace, room = new_workspace(), "bench-cost"
    async with ArenaRest(base_url) as rest:
        await rest.create_robotics_room(workspace, room)
        producer = RoboticsProducer(base_url, workspace, room, "bench-cost-producer")
        await producer.start()
        try:
            command = {f"{j}.pos": 1.0 for j in JOINTS}

            async def send() -> None:
                command["gripper.pos"] += 0.01  # a change every time, as a moving arm sends
                await producer.send_joints(command)

            calls = {"send_joints": send,
                     "rest_get_room": lambda: rest.get_robotics_room(workspace, room),
                     "rest_list_rooms": lambda: rest.list_robotics_rooms(workspace)}
            out: dict[str, Any] = {"count": count}
            for name, call in calls.items():
                n = count if name == "send_joints" else max(50, count // 10)
                for _ in range(10):
                    await call()
                start = time.thread_time()
                for _ in range(n):
                    await call()
                out[f"{name}_cpu_us"] = round((time.thread_time() - start) / n * 1e6, 1)
            return out
        finally:
            await producer.stop()


async def client_cost(base_url: str | None = None, count: int = 1000) -> dict[str, Any]:
    """Thread CPU per call (us) of a command send and of the REST calls a session makes."""
    if base_url is not None:
        return await _client_cost(base_url, count)
    server = LocalArenaServer()
    await server.astart()
    try:
        return await _client_cost(server.base_url, count)
    finally:
        await server.astop()


def write_results(key: str, result: dict[str, Any], path: Path = RESULTS) -> None:
    """Merge one section into the shared results file (the video bench writes its own key)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        doc = json.loads(path.read_text())
    except (OSError, ValueError):
        doc = {}
    doc[key] = result
    doc.setdefault("machine", {}).update(
        {"python": platform.python_version(), "platform": platform.platform()}
    )
    path.write_text(json.dumps(doc, indent=2) + "\n")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", default=None, help="existing server (default: start one)")
    parser.add_argument("--rate", type=float, default=100.0)
    parser.add_argument("--count", type=int, default=1000)
    parser.add_argument("--warmup", type=int, default=50)
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    result = asyncio.run(
        joint_latency(args.url, rate_hz=args.rate, count=args.count, warmup=args.warmup)
    )
    result["measured_at"] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    write_results("joints", result, args.out)
    print(json.dumps(result, indent=2))
    cost = asyncio.run(client_cost(args.url, count=args.count))
    write_results("client_cost", cost, args.out)
    print(json.dumps({"client_cost": cost}, indent=2))


if __name__ == "__main__":
    main()
