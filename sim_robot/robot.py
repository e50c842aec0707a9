"""A simulated robot arm in Arena rooms, for tests, benchmarks and demos without hardware.

It publishes its joint positions into the joint-input room at `rate` Hz (RoboticsProducer),
follows the commands of the joint-output room (RoboticsConsumer) at a limited velocity, and
streams a synthetic camera into each camera room over WebRTC (CameraProducer). It records
what it received (commands with their arrival times) and when each camera frame was sent, so
a test can measure latencies end to end.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import time
import uuid
from collections import deque
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from orchestrator.arena.robotics import RoboticsConsumer, RoboticsProducer
from sim_robot.camera import CameraSource
from sim_robot.video_producer import CameraProducer, IceMode

logger = logging.getLogger(__name__)

SO100_JOINTS = (
    "shoulder_pan", "shoulder_lift", "elbow_flex", "wrist_flex", "wrist_roll", "gripper",
)
_HISTORY = 100_000


@dataclass(frozen=True, slots=True)
class ReceivedCommand:
    arrived_at: float  # time.monotonic() on arrival
    # The joints that changed: one joint_update's entries (the server forwards only changed
    # values), or a non-empty state_sync when (re)joining a room that already had commands.
    values: dict[str, float]


class SimRobot:
    def __init__(
        self,
        server: str,
        workspace: str,
        *,
        joint_input: str | None = None,
        joint_output: str | None = None,
        cameras: Mapping[str, str] | None = None,
        joints: Iterable[str] = SO100_JOINTS,
        rate: float = 30.0,
        fps: float = 30.0,
        width: int = 640,
        height: int = 480,
        max_velocity: float = 100.0,
        limits: tuple[float, float] = (-100.0, 100.0),
        initial: Mapping[str, float] | None = None,
        ice_mode: IceMode = "gathered",
        robot_id: str | None = None,
        camera_joints: Iterable[str] = (),
    ) -> None:
        self.joint_names = list(joints)
        if not self.joint_names or len(set(self.joint_names)) != len(self.joint_names):
            raise ValueError("joints must be non-empty and unique")
        if not (0 < rate <= 1000):
            raise ValueError(f"rate must be in (0, 1000] Hz, got {rate}")
        if not (max_velocity > 0 and math.isfinite(max_velocity)):
            raise ValueError(f"max_velocity must be positive, got {max_velocity}")
        if not limits[0] < limits[1]:
            raise ValueError(f"limits must be (low, high) with low < high, got {limits}")
        self.server = server
        self.workspace = workspace
        self.rate = rate
        self.max_velocity = max_velocity  # joint units per second
        self.limits = limits
        self.robot_id = robot_id or f"sim-robot-{uuid.uuid4().hex[:8]}"
        start = dict(initial or {})
        unknown = set(start) - set(self.joint_names)
        if unknown:
            raise ValueError(f"initial values for unknown joints: {sorted(unknown)}")
        self._positions = {n: self._clamp(float(start.get(n, 0.0))) for n in self.joint_names}
        self._targets: dict[str, float] = dict(self._positions)
        self.received: deque[ReceivedCommand] = deque(maxlen=_HISTORY)
        self.emergency_stops: list[tuple[float, str]] = []
        self.estopped = False
        self.ticks = 0

        self._state_out: RoboticsProducer | None = None
        self._commands_in: RoboticsConsumer | None = None
        if joint_input is not None:
            self._state_out = RoboticsProducer(
                server, workspace, joint_input, f"{self.robot_id}-joint-input-producer"
            )
        if joint_output is not None:
            self._commands_in = RoboticsConsumer(
                server, workspace, joint_output, f"{self.robot_id}-joint-output-consumer",
                on_emergency_stop=self._on_emergency_stop,
                on_joints=lambda changed: self._on_command(changed, time.monotonic()),
            )
        # Joints the cameras draw (sim_robot.pattern's value code): where the arm is at each
        # frame's capture, as a policy reading the picture would see it.
        self.camera_joints = list(camera_joints)
        if set(self.camera_joints) - set(self.joint_names) or len(self.camera_joints) > 3:
            raise ValueError(f"camera_joints must be at most 3 of {self.joint_names}")
        self.cameras: dict[str, CameraSource] = {}
        self.camera_producers: dict[str, CameraProducer] = {}
        for name, room in (cameras or {}).items():
            source = CameraSource(width, height, fps, values=self._drawn_positions,
                                  value_count=len(self.camera_joints))
            self.cameras[name] = source
            self.camera_producers[name] = CameraProducer(
                server, workspace, room, f"{self.robot_id}-{name}-producer", source,
                ice_mode=ice_mode,
            )
        self._task: asyncio.Task[None] | None = None
        self._moved_at: float | None = None  # when step() last brought positions up to date

    # -- lifecycle --------------------------------------------------------------------------

    async def start(self) -> None:
        """Join every room (robotics joins raise if the server refuses), then move."""
        if self._task is not None:
            raise RuntimeError("SimRobot already started")
        try:
            if self._commands_in is not None:
                await self._commands_in.start()
            if self._state_out is not None:
                await self._state_out.start()
            for producer in self.camera_producers.values():
                await producer.start()
        except BaseException:
            await self._stop_clients()
            raise
        self._task = asyncio.create_task(self._motion(), name=f"{self.robot_id}-motion")

    async def stop(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        await self._stop_clients()

    async def __aenter__(self) -> SimRobot:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    async def _stop_clients(self) -> None:
        for producer in self.camera_producers.values():
            await producer.stop()
        for client in (self._state_out, self._commands_in):
            if client is not None:
                await client.stop()

    # -- state ------------------------------------------------------------------------------

    @property
    def positions(self) -> dict[str, float]:
        return dict(self._positions)

    @property
    def targets(self) -> dict[str, float]:
        return dict(self._targets)

    def frame_sent_at(self, camera: str, index: int) -> float | None:
        """Monotonic time frame `index` (decoded from the pixels) of `camera` was sent."""
        return self.cameras[camera].sent_at(index)

    def reset_emergency_stop(self) -> None:
        self.estopped = False

    def describe(self) -> dict[str, Any]:
        return {
            "robot_id": self.robot_id,
            "positions": self.positions,
            "targets": self.targets,
            "commands_received": len(self.received),
            "estopped": self.estopped,
            "ticks": self.ticks,
            "joint_input": None if self._state_out is None else self._state_out.describe(),
            "joint_output": None if self._commands_in is None else self._commands_in.describe(),
            "cameras": {n: vars(p.stats) | {"frames_sent": self.cameras[n].frames_sent}
                        for n, p in self.camera_producers.items()},
        }

    # -- behaviour --------------------------------------------------------------------------

    def _clamp(self, value: float) -> float:
        return min(self.limits[1], max(self.limits[0], value))

    def _on_command(self, values: dict[str, float], arrived_at: float) -> None:
        self.received.append(ReceivedCommand(arrived_at, values))
        if self.estopped:
            return
        if self._task is not None:
            self.advance(arrived_at)  # the old target holds until this moment
        for name, value in values.items():
            if name in self._targets and math.isfinite(value):
                self._targets[name] = self._clamp(value)

    def _on_emergency_stop(self, reason: str) -> None:
        self.emergency_stops.append((time.monotonic(), reason))
        self.estopped = True
        self._targets = dict(self._positions)  # hold still where we are

    def advance(self, now: float | None = None) -> None:
        """Bring the positions up to ``now`` (monotonic): motion between the joint loop's
        steps is not lost to whoever looks in between (the camera)."""
        now = time.monotonic() if now is None else now
        if self._moved_at is not None:
            self.step(now - self._moved_at)
        self._moved_at = now if self._moved_at is None else max(self._moved_at, now)

    def _drawn_positions(self) -> list[float]:
        if self._task is not None:
            self.advance()
        return [self._positions[name] for name in self.camera_joints]

    def step(self, dt: float) -> None:
        """Move every joint toward its target by at most max_velocity * dt."""
        max_step = self.max_velocity * max(0.0, dt)
        for name, pos in self._positions.items():
            delta = self._targets[name] - pos
            self._positions[name] = pos + max(-max_step, min(max_step, delta))

    async def _motion(self) -> None:
        period = 1.0 / self.rate
        t0 = time.monotonic()
        self._moved_at = t0
        k = 0
        while True:
            self.advance()
            self.ticks += 1
            if self._state_out is not None:
                await self._state_out.send_joints(self._positions)
            # Ticks are due at t0 + k * period: lateness never accumulates.
            k = max(k + 1, math.ceil((time.monotonic() - t0) / period))
            await asyncio.sleep(max(0.0, t0 + k * period - time.monotonic()))
