"""The bench's simulated robots, in their own process (their VP8 encoders and joint
publishers must not share the measured event loop). They go where they are told at once
(a huge velocity limit) and their cameras draw their joint positions at capture."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import multiprocessing as mp
import os
import time
from dataclasses import dataclass
from multiprocessing.connection import Connection
from typing import Any


@dataclass(frozen=True)
class RobotSpec:
    workspace: str
    joint_input: str
    joint_output: str
    cameras: dict[str, str]


@dataclass(frozen=True)
class RobotsConfig:
    server: str
    robots: list[RobotSpec]
    joints: tuple[str, ...]
    joint_rate: float
    fps: float
    width: int
    height: int


async def _run(conn: Connection, config: RobotsConfig) -> None:
    from sim_robot.robot import SimRobot

    robots = [SimRobot(config.server, r.workspace, joint_input=r.joint_input,
                       joint_output=r.joint_output, cameras=r.cameras, joints=config.joints,
                       rate=config.joint_rate, fps=config.fps, width=config.width,
                       height=config.height, max_velocity=1e6, limits=(-1e4, 1e4),
                       camera_joints=config.joints)
              for r in config.robots]
    started: list[SimRobot] = []
    try:
        for robot in robots:
            await robot.start()
            started.append(robot)
        conn.send({"ready": os.getpid()})
        await asyncio.get_running_loop().run_in_executor(None, conn.recv)
        conn.send({"received": [len(r.received) for r in robots]})
    except Exception as exc:  # report, never leave the parent waiting
        with contextlib.suppress(Exception):
            conn.send({"error": f"{type(exc).__name__}: {exc}"})
    finally:
        for robot in started:
            with contextlib.suppress(Exception):
                await robot.stop()


def _main(conn: Connection, config: RobotsConfig) -> None:
    logging.basicConfig(level=logging.WARNING)
    asyncio.run(_run(conn, config))


class Robots:
    def __init__(self, config: RobotsConfig) -> None:
        ctx = mp.get_context("spawn")
        self._conn, self._child = ctx.Pipe()
        self._proc = ctx.Process(target=_main, args=(self._child, config), daemon=True,
                                 name="fidelity-robots")
        self.received: list[int] = []

    async def _answer(self, timeout_s: float) -> dict[str, Any]:
        deadline = time.monotonic() + timeout_s
        while not self._conn.poll():
            if not self._proc.is_alive():
                return {"error": f"robots exited with code {self._proc.exitcode}"}
            if time.monotonic() > deadline:
                return {"error": f"no answer from the robots within {timeout_s:.0f} s"}
            await asyncio.sleep(0.05)
        answer: dict[str, Any] = self._conn.recv()
        return answer

    async def start(self) -> None:
        self._proc.start()
        self._child.close()
        answer = await self._answer(90.0)
        if "ready" not in answer:
            raise RuntimeError(f"robots failed to start: {answer.get('error', answer)}")

    async def stop(self) -> None:
        if self._proc.is_alive():
            with contextlib.suppress(Exception):
                self._conn.send({"stop": True})
                answer = await self._answer(30.0)
                self.received = list(answer.get("received", []))
        self._proc.join(15.0)
        if self._proc.is_alive():
            self._proc.kill()
            self._proc.join(5.0)
        self._conn.close()
