"""One robot session: its rooms, its connections, its lifecycle. The real-time part lives
in ``loop.py``; this module only opens, closes and reports."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from enum import StrEnum
from typing import Any

from orchestrator.arena.rest import ArenaError, ArenaRest, ArenaUnavailable
from orchestrator.arena.robotics import RoboticsConsumer, RoboticsProducer
from orchestrator.arena.video import VideoConsumer
from orchestrator.observability import metrics
from orchestrator.sessions import presence, report
from orchestrator.sessions.config import ModelBinding, SessionConfig
from orchestrator.sessions.errors import InvalidTransition, arena_failure
from orchestrator.sessions.loop import ControlLoop
from orchestrator.sessions.rooms import keep_rooms
from orchestrator.sessions.spec import SessionRooms
from orchestrator.triton.client import TritonClient

log = logging.getLogger(__name__)


class SessionState(StrEnum):
    INITIALIZING = "initializing"
    READY = "ready"
    RUNNING = "running"
    STOPPED = "stopped"
    ERROR = "error"


class Session:
    def __init__(self, config: SessionConfig, triton: TritonClient) -> None:
        self.config = config
        self.session_id = config.session_id
        self.state = SessionState.INITIALIZING
        self.error_message: str | None = None
        self.created_at = time.time()
        self._rest = ArenaRest(config.arena_url, timeout_s=config.arena_timeout_s)
        self._rooms: list[tuple[str, str]] = []  # (kind, room id) actually created
        url, ws = config.arena_url, config.workspace_id
        self.joints_in = RoboticsConsumer(
            url, ws, config.joint_input_room, f"{self.session_id}-joint-input-consumer",
            on_emergency_stop=self._on_emergency_stop, recreate_room=True,
        )
        self.commands_out = RoboticsProducer(
            url, ws, config.joint_output_room, f"{self.session_id}-joint-output-producer",
            on_emergency_stop=self._on_emergency_stop, recreate_room=True,
        )
        self.cameras = {
            cam: VideoConsumer(url, ws, room, f"{room}-consumer",
                               on_emergency_stop=self._on_emergency_stop)
            for cam, room in config.camera_rooms.items()
        }
        self._triton = triton
        # Known at create for a served model; later for one exported on demand.
        self.binding: ModelBinding | None = None
        self.loop: ControlLoop | None = None
        self.init_step: str | None = "opening rooms"  # while initializing: what it waits for
        self._start_when_ready = False
        self._latched: str | None = None  # an emergency stop that came before the model
        self._estops = 0  # emergency stops so far: a start asked for before the last one loses
        self._closed = False
        self._latched_reason = ""
        self._transition = asyncio.Lock()
        self._presence: presence.WorkspacePresence | None = None  # shared per workspace
        self._rooms_task: asyncio.Task[None] | None = None

    # -- opening and closing -------------------------------------------------------------
    async def open(self, rejoin: bool = False) -> None:
        """Create the rooms and connect. On any failure undo everything and raise.
        ``rejoin``: keep rooms that exist (a restarted worker's session): creating one
        again would replace it and drop the robot from it."""
        cfg = self.config
        try:
            for cam_room in cfg.camera_rooms.values():
                if not (rejoin and await self._room_exists("video", cam_room)):
                    await self._rest.create_video_room(cfg.workspace_id, cam_room)
                self._rooms.append(("video", cam_room))
            for room in (cfg.joint_input_room, cfg.joint_output_room):
                if not (rejoin and await self._room_exists("robotics", room)):
                    await self._rest.create_robotics_room(cfg.workspace_id, room)
                self._rooms.append(("robotics", room))
            await self.joints_in.start()
            await self.commands_out.start()
            for camera in self.cameras.values():
                await camera.start()
            self._presence = presence.acquire(cfg.arena_url, cfg.workspace_id,
                                              cfg.arena_timeout_s, video=bool(self.cameras))
            self._rooms_task = asyncio.create_task(keep_rooms(
                self.session_id, cfg.workspace_id, self._rest, self._presence,
                (self.joints_in, self.commands_out), self.cameras.values(),
            ), name=f"rooms-{self.session_id}")
            self.init_step = "waiting for the model"
        except (ArenaUnavailable, ArenaError, OSError, TimeoutError) as exc:
            await self.close(delete_rooms=True)
            raise arena_failure(exc, cfg.arena_url, self.session_id) from exc
        except BaseException:
            await self.close(delete_rooms=True)
            raise

    async def attach(self, binding: ModelBinding) -> None:
        """Bind the served model: build the control loop, hand it the joints read so far,
        and become ready (running, if a start came while initializing)."""
        async with self._transition:
            if self._closed or self.state == SessionState.ERROR or self.loop is not None:
                return
            self.binding = binding
            self.loop = loop = ControlLoop(
                session_id=self.session_id,
                contract=binding.contract,
                policy=binding.policy,
                settings=binding.loop,
                aliases=self.config.aliases,
                triton=self._triton,
                cameras=self.cameras,
                publish=self.commands_out.send_joints,
                joints_alive=self._robot_publishing,
                on_crash=self._on_loop_crash,
            )
            # Readings reach the loop as they arrive: only the joints that changed. Those
            # that came before it (the server forwards only changes) are handed over now.
            self.joints_in.on_joints = loop.on_joints
            loop.joint_stamp = lambda: self.joints_in.last_forwarded_at
            joints, _ = self.joints_in.snapshot()
            if joints:
                loop.on_joints(joints)
            self.init_step = None
            self.state = SessionState.READY
            if self._latched is not None:
                loop.emergency_stop(self._latched)
            elif self._start_when_ready:
                await loop.start()
                self.state = SessionState.RUNNING
                log.info("session %s: model ready, started as asked", self.session_id)

    def fail(self, reason: str) -> None:
        """The session cannot get its model (e.g. the on-demand export failed)."""
        self.state = SessionState.ERROR
        self.error_message = reason
        self.init_step = None

    async def _room_exists(self, kind: str, room: str) -> bool:
        try:
            if kind == "video":
                await self._rest.get_video_room(self.config.workspace_id, room)
            else:
                await self._rest.get_robotics_room(self.config.workspace_id, room)
        except ArenaError as exc:
            if exc.status != 404:
                raise
            return False
        return True

    async def close(self, delete_rooms: bool) -> None:
        """Stop the loop, disconnect, delete the rooms this session created. Never raises."""
        self._closed = True  # a start or restart waiting for the lock now refuses
        async with self._transition:  # and one under way finishes first: its loop is stopped
            if self.loop is not None:
                with contextlib.suppress(Exception):
                    await self.loop.stop()
        if self._rooms_task is not None:
            self._rooms_task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._rooms_task
            self._rooms_task = None
        if self._presence is not None:
            board, self._presence = self._presence, None
            await presence.release(board, video=bool(self.cameras))
        closers = [self.joints_in.stop(), self.commands_out.stop(),
                   *(c.stop() for c in self.cameras.values())]
        for result in await asyncio.gather(*closers, return_exceptions=True):
            if isinstance(result, BaseException):
                log.warning("session %s: error while disconnecting: %s", self.session_id, result)
        if delete_rooms:
            for kind, room in reversed(self._rooms):
                try:
                    if kind == "video":
                        await self._rest.delete_video_room(self.config.workspace_id, room)
                    else:
                        await self._rest.delete_robotics_room(self.config.workspace_id, room)
                except Exception as exc:  # the server may be gone; nothing else to undo
                    log.warning("session %s: could not delete room %s: %s",
                                self.session_id, room, exc)
            self._rooms.clear()
        with contextlib.suppress(Exception):
            await self._rest.aclose()
        metrics.forget_session(self.session_id)

    # -- lifecycle -----------------------------------------------------------------------
    def _refuse_if_stopped_since(self, seen: int) -> None:
        """An emergency stop that came after the start was asked for wins over it, and a
        closed session never ticks again."""
        if self._closed:
            raise InvalidTransition(f"session {self.session_id!r} is being deleted")
        if self._estops == seen:
            return
        if self.loop is not None:
            self.loop.emergency_stop(self._latched_reason)  # the start re-armed: latch again
        if self.state == SessionState.RUNNING:
            self.state = SessionState.STOPPED
        raise InvalidTransition(
            f"session {self.session_id!r}: an emergency stop ({self._latched_reason}) came "
            "while it was starting; it stays latched until the next start"
        )

    async def start(self) -> None:
        seen = self._estops  # before waiting for the lock: a stop meanwhile is newer
        async with self._transition:
            self._refuse_if_stopped_since(seen)
            if self.state == SessionState.RUNNING:
                return  # as the server it replaces: 200, and the plan is kept (no re-arm)
            if self.loop is None:
                if self.state == SessionState.ERROR:
                    raise InvalidTransition(
                        f"session {self.session_id!r} is in error ({self.error_message}); "
                        "delete it and create it again"
                    )
                # Initializing: start once the model is ready (the front-end starts freely).
                self._start_when_ready, self._latched = True, None
                return
            if self.state not in (SessionState.READY, SessionState.STOPPED):
                raise InvalidTransition(
                    f"session {self.session_id!r} is {self.state.value}; start works from "
                    "ready or stopped (use restart from any state)"
                )
            await self.loop.start()
            self._refuse_if_stopped_since(seen)
            self.state = SessionState.RUNNING
            self.error_message, self._latched = None, None
            log.info("session %s started at %.1f Hz", self.session_id, self.loop.settings.rate_hz)

    async def stop(self) -> None:
        async with self._transition:
            # Stop is always allowed: it is also the emergency path.
            self._start_when_ready = False
            if self.loop is None:
                return
            await self.loop.stop()
            if self.state != SessionState.ERROR:
                self.state = SessionState.STOPPED
            log.info("session %s stopped", self.session_id)

    async def restart(self) -> None:
        seen = self._estops
        async with self._transition:
            self._refuse_if_stopped_since(seen)
            if self.loop is None:
                if self.state != SessionState.ERROR:
                    self._start_when_ready, self._latched = True, None
                    return
                raise InvalidTransition(
                    f"session {self.session_id!r} has no model ({self.error_message}); "
                    "delete it and create it again"
                )
            await self.loop.stop()
            # start() re-arms with an empty plan. The joint state is kept: the connection
            # is intact, and the server forwards only changes, so a robot standing still
            # would never be read again.
            await self.loop.start()
            self._refuse_if_stopped_since(seen)
            self.state = SessionState.RUNNING
            self.error_message, self._latched = None, None
            log.info("session %s restarted", self.session_id)

    async def reset(self) -> None:
        """Clear the plan and the joint state; connections stay. The joint state is then
        re-read from the room: the server forwards only changes, so a robot standing still
        would otherwise never be read again."""
        self.joints_in.clear()
        if self.loop is None:
            return
        self.loop.reset()
        cfg = self.config
        try:
            state = await self._rest.get_robotics_state(cfg.workspace_id, cfg.joint_input_room)
        except (ArenaUnavailable, ArenaError) as exc:
            log.warning("session %s: reset could not re-read the joint state: %s",
                        self.session_id, exc)
            return
        joints = state.get("joints")
        if isinstance(joints, dict) and joints:
            # Readings that arrived during the call are newer than the room's answer.
            newer = self.joints_in.joints
            self.loop.on_joints({k: v for k, v in joints.items() if k not in newer})

    def _robot_publishing(self) -> bool:
        """The Arena server forwards only joints whose value changed, so a robot standing
        still sends nothing: its last values stay current while it is still connected as
        the joint-input room's producer."""
        board, joints = self._presence, self.joints_in
        return (board is not None and board.has_producer(self.config.joint_input_room)
                and joints.connected and board.registered(
                    joints.room_id, joints.participant_id, joints.joined_at) is not False)

    def _on_loop_crash(self, reason: str) -> None:
        self.state = SessionState.ERROR
        self.error_message = reason

    def _on_emergency_stop(self, reason: str) -> None:
        # Latch at once (synchronously: no await between the message and the latch).
        self._estops += 1
        self._latched_reason = reason or "no reason given"
        if self.loop is None:
            self._start_when_ready = False
            self._latched = reason or "no reason given"
        else:
            self.loop.emergency_stop(reason)
        if self.state == SessionState.RUNNING:
            self.state = SessionState.STOPPED
        log.warning("session %s: emergency stop (%s): latched until start/restart",
                    self.session_id, reason or "no reason given")

    # -- reporting -----------------------------------------------------------------------
    def rooms(self) -> SessionRooms:
        return self.config.rooms()

    def status(self) -> dict[str, Any]:
        cfg, loop, spec = self.config, self.loop, self.config.spec
        stats: dict[str, Any] = loop.stats() if loop is not None else {
            "inference_count": 0, "commands_sent": 0, "errors": 0, "actions_in_queue": 0,
        }
        stats["policy_type"] = spec.policy_type
        if spec.language_instruction is not None:
            stats["language_instruction"] = {
                "text": spec.language_instruction, "used": False,
                "note": "ACT policies take no language input; the instruction is kept as sent",
            }
        stats.update(report.connection_stats(self.joints_in, self.commands_out, self.cameras))
        initialization = None
        if self.state == SessionState.INITIALIZING:
            initialization = {"step": self.init_step, "policy_path": cfg.policy_path,
                              "start_when_ready": self._start_when_ready,
                              "emergency_stop": self._latched}
        problem = loop.problem() if loop is not None else None
        if problem is None and self._latched is not None:
            problem = f"emergency_stop: {self._latched}"
        return {
            "session_id": self.session_id,
            "status": self.state.value,
            "policy_path": cfg.policy_path,
            "policy_type": spec.policy_type,
            "language_instruction": spec.language_instruction,
            "camera_names": list(cfg.cameras),
            "workspace_id": cfg.workspace_id,
            "rooms": {
                "workspace_id": cfg.workspace_id,
                "camera_room_ids": cfg.camera_rooms,
                "joint_input_room_id": cfg.joint_input_room,
                "joint_output_room_id": cfg.joint_output_room,
                "arena_server_url": cfg.arena_url,
            },
            "stats": stats,
            "inference_stats": loop.inference_stats() if loop is not None else None,
            "error_message": self.error_message or problem,
            "joint_mapping": loop.mapper.describe_mapping() if loop is not None else None,
            "initialization": initialization,
        }

    def queue_info(self) -> dict[str, Any]:
        info: dict[str, Any] = (self.loop.queue_info() if self.loop is not None
                                else {"status": self.state.value, "step": self.init_step})
        info["data_status"] = {
            "cameras": {c: v.describe() for c, v in self.cameras.items()},
            "joints": self.joints_in.describe(),
        }
        return info
