"""The per-session design (the seed's), rebuilt for a fair comparison.

Each session holds its own copy of the model (its own ONNX Runtime session, or its own
LeRobot ACTPolicy + processors) and runs inference inside its control loop at batch 1:

    every tick (deadline-based, 1/rate apart; missed ticks are skipped, as in the stack):
        if the action queue is empty:
            snapshot the latest frame of every camera + the joint state  (an underrun)
            run the model on it, batch 1, and WAIT for the chunk          (the tick stalls)
            queue the first n_action_steps actions of the chunk
        pop one action and publish it

The model runs in a worker thread (``asyncio.to_thread``), so one session's inference
stalls only its own tick, never the other sessions' loops: the kindest reading of the
seed's design. Everything else is the stack's own code: the same rooms and room server,
the same Arena clients (joints consumer, commands producer, WebRTC video consumer), the
same observation builder (frame resize) and joint mapping, the same tick clock.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import deque
from typing import Any

import numpy as np

from orchestrator.arena.rest import ArenaRest
from orchestrator.arena.robotics import RoboticsConsumer, RoboticsProducer
from orchestrator.arena.video import VideoConsumer
from orchestrator.control.joints import JointMapper
from orchestrator.control.timing import TickClock
from orchestrator.sessions.observation import Observation, ObservationBuilder

from .fleet import RobotRooms
from .measure import SessionRecorder
from .models import BenchModel, Runner

log = logging.getLogger(__name__)


class BaselineSession:
    def __init__(self, *, session_id: str, workspace: str, arena_url: str, model: BenchModel,
                 runner: Runner, rate: float, recorder: SessionRecorder) -> None:
        self.session_id = session_id
        self.workspace = workspace
        self.arena_url = arena_url
        self.contract = model.contract
        self.runner = runner
        self.rate = rate
        self.recorder = recorder
        self.n_action_steps = model.contract.n_action_steps
        self.camera_rooms = {c: f"{session_id}-{c}" for c in model.contract.cameras}
        self.joint_input = f"{session_id}-joint-input"
        self.joint_output = f"{session_id}-joint-output"
        self.joints_in = RoboticsConsumer(arena_url, workspace, self.joint_input,
                                          f"{session_id}-joint-input-consumer")
        self.commands_out = RoboticsProducer(arena_url, workspace, self.joint_output,
                                             f"{session_id}-joint-output-producer")
        self.cameras = {c: VideoConsumer(arena_url, workspace, room, f"{room}-consumer")
                        for c, room in self.camera_rooms.items()}
        self.mapper = JointMapper(self.contract.state_names,
                                  action_names=self.contract.action_names)
        self.builder = ObservationBuilder(self.contract)
        self.counters = {"ticks": 0, "missed_ticks": 0, "underruns": 0, "waiting": 0,
                         "inferences": 0, "errors": 0, "commands": 0}
        self._rooms: list[tuple[str, str]] = []
        self._task: asyncio.Task[None] | None = None

    def rooms(self) -> RobotRooms:
        return RobotRooms(self.workspace, self.joint_input, self.joint_output,
                          dict(self.camera_rooms))

    async def open(self) -> None:
        async with ArenaRest(self.arena_url) as rest:
            for room in self.camera_rooms.values():
                await rest.create_video_room(self.workspace, room)
                self._rooms.append(("video", room))
            for room in (self.joint_input, self.joint_output):
                await rest.create_robotics_room(self.workspace, room)
                self._rooms.append(("robotics", room))
        await self.joints_in.start()
        await self.commands_out.start()
        for camera in self.cameras.values():
            await camera.start()

    async def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name=f"baseline-{self.session_id}")

    async def stop(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task

    async def close(self) -> None:
        await self.stop()
        clients: list[RoboticsConsumer | RoboticsProducer | VideoConsumer] = [
            self.joints_in, self.commands_out, *self.cameras.values()]
        for client in clients:
            with contextlib.suppress(Exception):
                await client.stop()
        async with ArenaRest(self.arena_url) as rest:
            for kind, room in reversed(self._rooms):
                with contextlib.suppress(Exception):
                    if kind == "video":
                        await rest.delete_video_room(self.workspace, room)
                    else:
                        await rest.delete_robotics_room(self.workspace, room)
        self._rooms.clear()

    # -- the loop ------------------------------------------------------------------------
    async def _run(self) -> None:
        clock = TickClock(time.monotonic(), self.rate)
        queue: deque[tuple[Observation, np.ndarray]] = deque()
        k = -1
        stamp: float | None = None
        while True:
            nxt = clock.next_tick(k, time.monotonic())
            if k >= 0:
                self.counters["missed_ticks"] += nxt - k - 1
            k = nxt
            delay = clock.deadline(k) - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            self.counters["ticks"] += 1
            try:
                reading_at = self.joints_in.last_reading_at
                if reading_at is not None and reading_at != stamp:
                    stamp = reading_at
                    self.mapper.update(self.joints_in.joints, reading_at)
                if not queue and not await self._refill(k, queue):
                    continue
                observation, action = queue.popleft()
                values = self.mapper.to_command(action)
                self.recorder.note_publish(time.monotonic(), values, observation)
                await self.commands_out.send_joints(values)
                self.counters["commands"] += 1
            except asyncio.CancelledError:
                raise
            except Exception:
                self.counters["errors"] += 1
                log.exception("baseline session %s: tick %d failed", self.session_id, k)

    async def _refill(self, k: int, queue: deque[tuple[Observation, np.ndarray]]) -> bool:
        frames = {c: v.latest() for c, v in self.cameras.items()}
        observation = self.builder.snapshot(k, time.monotonic(), self.mapper.state(), frames)
        if observation is None:
            self.counters["waiting"] += 1  # no frame or joint reading yet
            return False
        self.counters["underruns"] += 1  # no action ready: this tick waits for the model
        started = time.monotonic()
        chunk = await asyncio.to_thread(self._infer, observation)
        done = time.monotonic()
        self.recorder.note_inference(done, done - started)
        self.counters["inferences"] += 1
        queue.extend((observation, row) for row in chunk[: self.n_action_steps])
        return True

    def _infer(self, observation: Observation) -> np.ndarray:
        return np.asarray(self.runner.infer(self.builder.inputs(observation))[0])

    def stats(self) -> dict[str, Any]:
        return dict(self.counters)
