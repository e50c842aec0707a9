"""The simulated robot in real rooms: publishes positions, follows commands at a limited
velocity, honours emergency stops, streams its cameras."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time

import pytest

from orchestrator.arena.rest import ArenaRest
from orchestrator.arena.robotics import RoboticsConsumer, RoboticsProducer
from orchestrator.arena.video import VideoConsumer
from sim_robot.cli import parse_args
from sim_robot.robot import SimRobot
from tests.arena.conftest import eventually
from tests.arena.video_helpers import decoded_frames, pid, running
from tests.support.arena import ArenaServerThread


def test_step_respects_the_velocity_limit_and_settles_on_target() -> None:
    robot = SimRobot("http://127.0.0.1:1", "w", joints=["a", "b"], max_velocity=10.0,
                     initial={"a": 0.0, "b": 5.0})
    robot._on_command({"a": 3.0, "b": -100.0, "unknown": 1.0}, time.monotonic())
    robot.step(0.1)  # at most 1.0 per joint
    assert robot.positions == {"a": 1.0, "b": 4.0}
    for _ in range(3):
        robot.step(0.1)
    assert robot.positions["a"] == 3.0  # reached, no overshoot
    robot.step(100.0)
    assert robot.positions == {"a": 3.0, "b": -100.0}
    robot._on_command({"a": 1e9}, time.monotonic())
    assert robot.targets["a"] == 100.0  # clamped to the limits


def test_bad_configuration_is_refused() -> None:
    with pytest.raises(ValueError):
        SimRobot("http://127.0.0.1:1", "w", joints=[])
    with pytest.raises(ValueError):
        SimRobot("http://127.0.0.1:1", "w", joints=["a", "a"])
    with pytest.raises(ValueError):
        SimRobot("http://127.0.0.1:1", "w", max_velocity=0)
    with pytest.raises(ValueError):
        SimRobot("http://127.0.0.1:1", "w", joints=["a"], initial={"z": 1.0})
    with pytest.raises(ValueError):
        SimRobot("ftp://x", "w", cameras={"front": "r"})


async def test_follows_commands_at_limited_velocity(
    arena: ArenaServerThread, rest: ArenaRest, workspace: str
) -> None:
    ji = await rest.create_robotics_room(workspace, "joint-input")
    jo = await rest.create_robotics_room(workspace, "joint-output")
    vmax = 20.0
    robot = SimRobot(arena.base_url, workspace, joint_input=ji, joint_output=jo,
                     joints=["a", "b"], rate=50, max_velocity=vmax)
    watcher = RoboticsConsumer(arena.base_url, workspace, ji, pid("watch"))
    commander = RoboticsProducer(arena.base_url, workspace, jo, pid("orchestrator"))
    readings: list[float] = []

    async with running(robot, watcher, commander):
        await eventually(lambda: watcher.joints.get("a") == 0.0, "robot publishes positions")
        sent = time.monotonic()
        assert await commander.send_joints({"a": 50.0, "b": 0.0})
        await eventually(lambda: len(robot.received) == 1, "command received")
        while watcher.joints.get("a") != 50.0:
            assert time.monotonic() - sent < 30, f"never reached the target: {watcher.joints}"
            value = watcher.joints["a"]
            if not readings or readings[-1] != value:
                readings.append(value)
            await asyncio.sleep(0.005)
        reached = time.monotonic()

    command = robot.received[0]
    assert command.values == {"a": 50.0, "b": 0.0} and command.arrived_at >= sent
    # It moved there gradually and monotonically, never past the target ...
    assert len(readings) >= 5 and readings == sorted(readings)
    assert all(0.0 <= r <= 50.0 for r in readings)
    # ... and no faster than the limit: a lower bound, which a slow machine cannot break
    # (one tick of slack: the first step after the command covers the whole tick).
    assert reached - command.arrived_at >= 50.0 / vmax - 1 / 50


async def test_emergency_stop_freezes_the_robot(
    arena: ArenaServerThread, rest: ArenaRest, workspace: str
) -> None:
    jo = await rest.create_robotics_room(workspace, "joint-output")
    robot = SimRobot(arena.base_url, workspace, joint_output=jo, joints=["a"], max_velocity=5.0)
    commander = RoboticsProducer(arena.base_url, workspace, jo, pid("orchestrator"))
    async with running(robot, commander):
        assert await commander.send_joints({"a": 100.0})
        await eventually(lambda: robot.positions["a"] > 0.0, "moving")
        assert await commander.emergency_stop("test")
        await eventually(lambda: robot.estopped, "emergency stop seen")
        held = robot.positions["a"]
        assert await commander.send_joints({"a": -100.0})
        await eventually(lambda: len(robot.received) == 2, "second command received")
        assert robot.targets["a"] == held  # ignored while stopped
    assert robot.emergency_stops and robot.emergency_stops[0][1] == "test"


async def test_streams_its_camera_with_frame_index(
    arena: ArenaServerThread, rest: ArenaRest, workspace: str
) -> None:
    cam = await rest.create_video_room(workspace, "front")
    robot = SimRobot(arena.base_url, workspace, cameras={"front": cam}, width=320,
                     height=240, ice_mode="trickle")
    consumer = VideoConsumer(arena.base_url, workspace, cam, pid("consumer"))
    async with running(robot, consumer):
        indices = await decoded_frames(consumer, 5)
        frame = consumer.latest()
    assert frame is not None and frame.rgb.shape == (240, 320, 3)
    assert all(robot.frame_sent_at("front", i) is not None for i in indices)


def test_cli_arguments() -> None:
    args = parse_args(["--workspace", "w", "--camera", "front=r1", "--camera", "wrist=r2",
                       "--joints", "x, y", "--joint-input", "ji"])
    assert args.camera == [("front", "r1"), ("wrist", "r2")] and args.joints == ["x", "y"]
    for bad in (["--workspace", "w"], ["--workspace", "w", "--camera", "front"],
                ["--workspace", "w", "--joint-input", "r", "--joints", ","]):
        with pytest.raises(SystemExit):
            parse_args(bad)


async def test_cli_runs_against_a_server(arena: ArenaServerThread, workspace: str) -> None:
    cmd = [sys.executable, "-m", "sim_robot", "--server", arena.base_url, "--workspace",
           workspace, "--joint-input", "ji", "--joints", "a,b", "--create-rooms",
           "--duration", "30", "--status-every", "0.5"]
    proc = await asyncio.create_subprocess_exec(
        *cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    try:
        assert proc.stdout is not None
        line = await asyncio.wait_for(proc.stdout.readline(), 30)
        assert b"running" in line, line
        watcher = RoboticsConsumer(arena.base_url, workspace, "ji", pid("watch"))
        async with running(watcher):
            await eventually(lambda: watcher.joints == {"a": 0.0, "b": 0.0}, "positions")
    finally:
        proc.terminate()
        rc = await asyncio.wait_for(proc.wait(), 30)
    assert rc == 0  # SIGTERM is a clean shutdown
