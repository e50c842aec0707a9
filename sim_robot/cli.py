"""`sim-robot` / `python -m sim_robot`: run a simulated robot against an Arena server.

Example:
    sim-robot --server http://127.0.0.1:8000 --workspace W --joint-input R-joint-input \\
        --joint-output R-joint-output --camera front=R-front --create-rooms
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import signal
import sys
import time

from orchestrator.arena.rest import ArenaError, ArenaRest, ArenaUnavailable
from sim_robot.robot import SO100_JOINTS, SimRobot


def _say(line: str) -> None:
    """CLI output (the library modules log instead)."""
    sys.stdout.write(line + "\n")
    sys.stdout.flush()


def _camera(text: str) -> tuple[str, str]:
    name, sep, room = text.partition("=")
    if not sep or not name or not room:
        raise argparse.ArgumentTypeError(f"expected NAME=ROOM, got {text!r}")
    return name, room


def _joints(text: str) -> list[str]:
    names = [n.strip() for n in text.split(",") if n.strip()]
    if not names:
        raise argparse.ArgumentTypeError("expected a comma-separated list of joint names")
    return names


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="sim-robot", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--server", default="http://localhost:8000", help="Arena server base URL")
    p.add_argument("--workspace", required=True)
    p.add_argument("--joint-input", help="robotics room the robot publishes its positions to")
    p.add_argument("--joint-output", help="robotics room the robot takes commands from")
    p.add_argument("--camera", action="append", type=_camera, default=[],
                   metavar="NAME=ROOM", help="a camera and its video room (repeatable)")
    p.add_argument("--joints", type=_joints, default=list(SO100_JOINTS),
                   help="comma-separated joint names (default: the SO-100 names)")
    p.add_argument("--rate", type=float, default=30.0, help="joint publish rate, Hz")
    p.add_argument("--fps", type=float, default=30.0)
    p.add_argument("--width", type=int, default=640)
    p.add_argument("--height", type=int, default=480)
    p.add_argument("--max-velocity", type=float, default=100.0, help="joint units per second")
    p.add_argument("--ice", choices=["gathered", "trickle", "none"], default="gathered",
                   help="how offers carry ICE candidates (trickle: like a browser)")
    p.add_argument("--robot-id", help="participant id prefix (default: random)")
    p.add_argument("--create-rooms", action="store_true", help="create the rooms first")
    p.add_argument("--duration", type=float, help="stop after this many seconds")
    p.add_argument("--status-every", type=float, default=5.0, help="status line period, s")
    p.add_argument("--log-level", default="WARNING")
    args = p.parse_args(argv)
    if not (args.joint_input or args.joint_output or args.camera):
        p.error("nothing to do: give --joint-input, --joint-output and/or --camera")
    return args


async def create_rooms(args: argparse.Namespace) -> None:
    async with ArenaRest(args.server) as rest:
        for room in (args.joint_input, args.joint_output):
            if room:
                await rest.create_robotics_room(args.workspace, room)
        for _, room in args.camera:
            await rest.create_video_room(args.workspace, room)


async def run(args: argparse.Namespace) -> int:
    if args.create_rooms:
        await create_rooms(args)
    robot = SimRobot(
        args.server, args.workspace, joint_input=args.joint_input,
        joint_output=args.joint_output, cameras=dict(args.camera), joints=args.joints,
        rate=args.rate, fps=args.fps, width=args.width, height=args.height,
        max_velocity=args.max_velocity, ice_mode=args.ice, robot_id=args.robot_id,
    )
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    await robot.start()
    _say(f"sim-robot {robot.robot_id} running; Ctrl-C to stop")
    deadline = None if args.duration is None else time.monotonic() + args.duration
    try:
        while not stop.is_set():
            left = args.status_every if deadline is None else deadline - time.monotonic()
            if left <= 0:
                break
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), min(args.status_every, left))
            info = robot.describe()
            status = {"positions": {k: round(v, 2) for k, v in info["positions"].items()},
                      "commands_received": info["commands_received"],
                      "cameras": {n: {"connected_peers": c["connected_peers"],
                                      "frames_sent": c["frames_sent"]}
                                  for n, c in info["cameras"].items()}}
            _say(json.dumps(status))
    finally:
        await robot.stop()
    return 0


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    logging.basicConfig(level=args.log_level.upper(),
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        raise SystemExit(asyncio.run(run(args)))
    except (ArenaUnavailable, ArenaError) as exc:
        _say(f"sim-robot: {exc}")
        raise SystemExit(1) from exc
