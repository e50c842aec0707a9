"""The simulated robots of one run, in their own process.

The robots' VP8 encoders and joint publishers would otherwise share the measured process's
CPU and event loop with the control loops under test. ``time.monotonic`` is the system's
CLOCK_MONOTONIC, so the times a robot records (frame sent, command arrived) compare
directly with the orchestrator's.

Protocol over a multiprocessing pipe: the child answers ``{"ready": pid}`` once every robot
has joined its rooms; the parent sends ``{"stop": queries}`` where queries are
``[robot, camera, frame index]`` triples; the child answers with each robot's received
commands and the send time of every queried frame, then stops its robots.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import multiprocessing as mp
import os
import time
from dataclasses import asdict, dataclass, field
from multiprocessing.connection import Connection
from typing import Any

JOINTS = ("shoulder_pan", "shoulder_lift", "elbow_flex", "wrist_flex", "wrist_roll", "gripper")


@dataclass(frozen=True)
class RobotRooms:
    workspace: str
    joint_input: str
    joint_output: str
    cameras: dict[str, str]  # camera name -> video room


@dataclass(frozen=True)
class FleetConfig:
    server: str
    robots: list[RobotRooms]
    fps: float = 10.0
    width: int = 128
    height: int = 96
    joint_rate: float = 10.0
    joints: tuple[str, ...] = JOINTS
    # SimRobot keyword arguments over the defaults below (max_velocity, limits, initial,
    # camera_joints: e.g. a robot that goes where it is told at once and draws its joints).
    extra: dict[str, Any] = field(default_factory=dict)
    # The robots' nice value: the bench's own, not that of the thread that spawns them (an
    # in-process orchestrator may have raised its thread's priority, and children inherit it).
    nice: int | None = None


@dataclass
class RobotRecord:
    received: list[tuple[float, dict[str, float]]]  # (arrived_at, changed joints)
    frames_sent: dict[str, dict[int, float]]  # camera -> frame index -> sent at


async def _fleet(conn: Connection, config: FleetConfig) -> None:
    from sim_robot.robot import SimRobot

    options: dict[str, Any] = {
        "max_velocity": 200.0, "limits": (-1e3, 1e3),
        "initial": {j: float(3 * i - 7) for i, j in enumerate(config.joints)},
        **config.extra}
    robots = [
        SimRobot(config.server, r.workspace, joint_input=r.joint_input,
                 joint_output=r.joint_output, cameras=r.cameras, joints=config.joints,
                 rate=config.joint_rate, fps=config.fps, width=config.width,
                 height=config.height, **options)
        for r in config.robots
    ]
    started: list[SimRobot] = []
    loop = asyncio.get_running_loop()
    try:
        for robot in robots:
            await robot.start()
            started.append(robot)
        conn.send({"ready": os.getpid()})
        message: dict[str, Any] = await loop.run_in_executor(None, conn.recv)
        queries: list[tuple[int, str, int]] = message.get("stop", [])
        records = [RobotRecord([(c.arrived_at, dict(c.values)) for c in r.received], {})
                   for r in robots]
        for index, camera, frame in queries:
            sent = robots[index].frame_sent_at(camera, frame)
            if sent is not None:
                records[index].frames_sent.setdefault(camera, {})[frame] = sent
        conn.send({"records": [asdict(r) for r in records]})
    except Exception as exc:  # report, do not hang the parent
        with contextlib.suppress(Exception):
            conn.send({"error": f"{type(exc).__name__}: {exc}"})
    finally:
        for robot in started:
            with contextlib.suppress(Exception):
                await robot.stop()


def fleet_main(conn: Connection, config: FleetConfig) -> None:
    logging.basicConfig(level=logging.WARNING)
    if config.nice is not None:
        os.setpriority(os.PRIO_PROCESS, 0, config.nice)  # back up to it: never refused
    asyncio.run(_fleet(conn, config))


class Fleet:
    """Parent side: start the process, wait for ready, collect records, always clean up."""

    def __init__(self, config: FleetConfig, start_timeout_s: float = 60.0) -> None:
        self.config = config
        self._timeout = start_timeout_s
        ctx = mp.get_context("spawn")
        self._conn, child = ctx.Pipe()
        self._proc = ctx.Process(target=fleet_main, args=(child, config), daemon=True,
                                 name="bench-robot-fleet")
        self._child = child
        self.pid: int | None = None
        self._collected = False

    async def start(self) -> None:
        self._proc.start()
        self._child.close()
        answer = await self._receive(self._timeout + 5.0 * len(self.config.robots))
        if "ready" not in answer:
            raise RuntimeError(f"robot fleet failed to start: {answer.get('error', answer)}")
        self.pid = int(answer["ready"])

    async def collect(self, queries: list[tuple[int, str, int]]) -> list[RobotRecord]:
        self._collected = True
        self._conn.send({"stop": queries})
        answer = await self._receive(60.0)
        if "records" not in answer:
            raise RuntimeError(f"robot fleet failed: {answer.get('error', answer)}")
        return [RobotRecord([(t, v) for t, v in r["received"]],
                            {c: {int(k): s for k, s in f.items()}
                             for c, f in r["frames_sent"].items()})
                for r in answer["records"]]

    async def _receive(self, timeout_s: float) -> dict[str, Any]:
        deadline = time.monotonic() + timeout_s
        while not self._conn.poll():
            if not self._proc.is_alive():
                return {"error": f"robot fleet exited with code {self._proc.exitcode}"}
            if time.monotonic() > deadline:
                return {"error": f"no answer from the robot fleet within {timeout_s:.0f} s"}
            await asyncio.sleep(0.05)
        try:
            answer: dict[str, Any] = self._conn.recv()
        except (EOFError, OSError) as exc:  # the child died before answering
            return {"error": f"robot fleet exited ({type(exc).__name__}), "
                             f"code {self._proc.exitcode}"}
        return answer

    async def close(self) -> None:
        if not self._collected and self._proc.is_alive():
            with contextlib.suppress(Exception):
                self._conn.send({"stop": []})  # let it stop its robots cleanly
        deadline = time.monotonic() + 15.0
        while self._proc.is_alive() and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        if self._proc.is_alive():
            self._proc.terminate()
            self._proc.join(5.0)
        if self._proc.is_alive():
            self._proc.kill()
            self._proc.join(5.0)
        self._conn.close()
