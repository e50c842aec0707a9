"""One robot session: its rooms, its connections, its lifecycle. The real-time part lives
in ``loop.py``; this module only opens, closes and reports."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from dataclasses import dataclass, field
from enum import StrEnum
from typing import TYPE_CHECKING, Any

from orchestrator.arena.rest import ArenaError, ArenaRest, ArenaUnavailable
from orchestrator.arena.robotics import RoboticsConsumer, RoboticsProducer
from orchestrator.arena.video import VideoConsumer
from orchestrator.observability import metrics
from orchestrator.sessions.errors import DependencyUnavailable, InvalidTransition
from orchestrator.sessions.loop import ControlLoop, LoopSettings
from orchestrator.sessions.policy import PolicyRef
from orchestrator.settings import BlendMode, Settings
from orchestrator.triton.client import TritonClient
from orchestrator.triton.model_contract import ModelContract

if TYPE_CHECKING:
    from orchestrator.api.schemas import CreateSessionRequest, CreateSessionResponse

log = logging.getLogger(__name__)


def model_limits(contract: ModelContract) -> dict[str, tuple[float, float]]:
    """Per-joint limits recorded in the model's metadata (``joint_limits``), if any; joints
    without one get the safety layer's defaults."""
    raw = contract.info.get("joint_limits")
    if not raw:
        return {}
    try:
        table = json.loads(raw)
        return {str(k): (float(v[0]), float(v[1])) for k, v in table.items()
                if k in contract.action_names}
    except (ValueError, TypeError, IndexError, AttributeError):
        log.warning("model %s has malformed joint_limits metadata; using defaults", contract.name)
        return {}


class SessionState(StrEnum):
    INITIALIZING = "initializing"
    READY = "ready"
    RUNNING = "running"
    STOPPED = "stopped"
    ERROR = "error"


@dataclass(frozen=True)
class SessionConfig:
    session_id: str
    policy_path: str
    policy: PolicyRef
    contract: ModelContract
    cameras: tuple[str, ...]
    arena_url: str
    workspace_id: str
    loop: LoopSettings
    aliases: dict[str, str] = field(default_factory=dict)
    arena_timeout_s: float = 5.0

    @classmethod
    def from_request(
        cls,
        request: CreateSessionRequest,
        settings: Settings,
        contract: ModelContract,
        policy: PolicyRef,
        arena_url: str,
        workspace_id: str,
    ) -> SessionConfig:
        limits = model_limits(contract)
        limits.update({k: (float(lo), float(hi)) for k, (lo, hi) in
                       (request.joint_limits or {}).items()})
        blend: BlendMode = request.blend or settings.blend
        loop = LoopSettings(
            rate_hz=request.rate_hz or contract.fps,
            blend=blend,
            crossfade_ticks=settings.crossfade_ticks,
            ensemble_m=settings.ensemble_m,
            margin_ticks=settings.margin_ticks,
            replan_every=settings.replan_every,
            max_step=request.max_step if request.max_step is not None else settings.max_step,
            limits=limits,
            stale_after_s=request.stale_after_s or settings.stale_after_s,
            latency_prior_s=settings.latency_prior_s,
            inference_timeout_s=settings.triton_timeout_s,
        )
        return cls(
            session_id=request.session_id,
            policy_path=request.policy_path,
            policy=policy,
            contract=contract,
            cameras=tuple(request.camera_names),
            arena_url=arena_url,
            workspace_id=workspace_id,
            loop=loop,
            aliases=dict(request.joint_aliases or {}),
            arena_timeout_s=settings.arena_timeout_s,
        )

    @property
    def camera_rooms(self) -> dict[str, str]:
        return {cam: f"{self.session_id}-{cam}" for cam in self.cameras}

    @property
    def joint_input_room(self) -> str:
        return f"{self.session_id}-joint-input"

    @property
    def joint_output_room(self) -> str:
        return f"{self.session_id}-joint-output"


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
        self.loop = ControlLoop(
            session_id=self.session_id,
            contract=config.contract,
            policy=config.policy,
            settings=config.loop,
            aliases=config.aliases,
            triton=triton,
            cameras=self.cameras,
            publish=self.commands_out.send_joints,
            joints_alive=self._robot_publishing,
            on_crash=self._on_loop_crash,
        )
        # Readings reach the loop as they arrive: only the joints that changed.
        self.joints_in.on_joints = self.loop.on_joints
        self._transition = asyncio.Lock()
        self._producer_present = False
        self._presence_task: asyncio.Task[None] | None = None

    # -- opening and closing -------------------------------------------------------------
    async def open(self) -> None:
        """Create the rooms and connect. On any failure undo everything and raise."""
        cfg = self.config
        try:
            for cam_room in cfg.camera_rooms.values():
                await self._rest.create_video_room(cfg.workspace_id, cam_room)
                self._rooms.append(("video", cam_room))
            for room in (cfg.joint_input_room, cfg.joint_output_room):
                await self._rest.create_robotics_room(cfg.workspace_id, room)
                self._rooms.append(("robotics", room))
            await self.joints_in.start()
            await self.commands_out.start()
            for camera in self.cameras.values():
                await camera.start()
            self._presence_task = asyncio.create_task(
                self._watch_presence(), name=f"presence-{self.session_id}"
            )
        except (ArenaUnavailable, ArenaError, OSError, TimeoutError) as exc:
            await self.close(delete_rooms=True)
            raise DependencyUnavailable(
                f"Arena server at {cfg.arena_url} failed while opening session "
                f"{self.session_id!r}: {exc}"
            ) from exc
        except BaseException:
            await self.close(delete_rooms=True)
            raise
        self.state = SessionState.READY

    async def close(self, delete_rooms: bool) -> None:
        """Stop the loop, disconnect, delete the rooms this session created. Never raises."""
        with contextlib.suppress(Exception):
            await self.loop.stop()
        if self._presence_task is not None:
            self._presence_task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._presence_task
            self._presence_task = None
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
    async def start(self) -> None:
        async with self._transition:
            if self.state not in (SessionState.READY, SessionState.STOPPED):
                raise InvalidTransition(
                    f"session {self.session_id!r} is {self.state.value}; start works from "
                    "ready or stopped (use restart from any state)"
                )
            await self.loop.start()
            self.state = SessionState.RUNNING
            self.error_message = None
            log.info("session %s started at %.1f Hz", self.session_id, self.config.loop.rate_hz)

    async def stop(self) -> None:
        async with self._transition:
            # Stop is always allowed: it is also the emergency path.
            await self.loop.stop()
            if self.state != SessionState.ERROR:
                self.state = SessionState.STOPPED
            log.info("session %s stopped", self.session_id)

    async def restart(self) -> None:
        async with self._transition:
            await self.loop.stop()
            # start() re-arms with an empty plan. The joint state is kept: the connection
            # is intact, and the server forwards only changes, so a robot standing still
            # would never be read again.
            await self.loop.start()
            self.state = SessionState.RUNNING
            self.error_message = None
            log.info("session %s restarted", self.session_id)

    async def reset(self) -> None:
        """Clear the plan and the joint state; connections stay. The joint state is then
        re-read from the room: the server forwards only changes, so a robot standing still
        would otherwise never be read again."""
        self.loop.reset()
        self.joints_in.clear()
        cfg = self.config
        try:
            state = await self._rest.get_robotics_state(cfg.workspace_id, cfg.joint_input_room)
        except (ArenaUnavailable, ArenaError) as exc:
            log.warning("session %s: reset could not re-read the joint state: %s",
                        self.session_id, exc)
            return
        joints = state.get("joints")
        if isinstance(joints, dict) and joints:
            self.loop.mapper.update(joints, time.monotonic())

    def _robot_publishing(self) -> bool:
        """The Arena server forwards only joints whose value changed, so a robot standing
        still sends nothing: its last values stay current while it is still connected as
        the joint-input room's producer."""
        return self._producer_present and self.joints_in.connected

    async def _watch_presence(self, period_s: float = 1.0) -> None:
        cfg = self.config
        while True:
            try:
                room = await self._rest.get_robotics_room(cfg.workspace_id, cfg.joint_input_room)
                self._producer_present = bool(room.get("has_producer"))
                await self._recreate_video_rooms()
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # server restarting: assume absent until it answers
                self._producer_present = False
                log.debug("session %s: presence check failed: %s", self.session_id, exc)
            await asyncio.sleep(period_s)

    async def _recreate_video_rooms(self) -> None:
        """Rooms live in the Arena server's memory: after a restart our camera rooms are gone
        and nobody can join them (robotics clients recreate their own rooms). Recreate a
        missing one while its consumer is not joined; both sides then re-join by themselves."""
        cfg = self.config
        for cam, room in cfg.camera_rooms.items():
            if self.cameras[cam].stats.joined:
                continue
            try:
                await self._rest.get_video_room(cfg.workspace_id, room)
            except ArenaError as exc:
                if exc.status != 404:
                    raise
                await self._rest.create_video_room(cfg.workspace_id, room)
                log.warning("session %s: recreated missing video room %s", self.session_id, room)

    def _on_loop_crash(self, reason: str) -> None:
        self.state = SessionState.ERROR
        self.error_message = reason

    def _on_emergency_stop(self, reason: str) -> None:
        # Latch at once (synchronously: no await between the message and the latch).
        self.loop.emergency_stop(reason)
        if self.state == SessionState.RUNNING:
            self.state = SessionState.STOPPED
        log.warning("session %s: emergency stop (%s): latched until start/restart",
                    self.session_id, reason or "no reason given")

    # -- reporting -----------------------------------------------------------------------
    def create_response(self) -> CreateSessionResponse:
        from orchestrator.api.schemas import CreateSessionResponse

        cfg = self.config
        return CreateSessionResponse(
            workspace_id=cfg.workspace_id,
            camera_room_ids=cfg.camera_rooms,
            joint_input_room_id=cfg.joint_input_room,
            joint_output_room_id=cfg.joint_output_room,
        )

    def status(self) -> dict[str, Any]:
        cfg = self.config
        stats = self.loop.stats()
        stats["images_received"] = {c: v.stats.frames for c, v in self.cameras.items()}
        stats["joints_received"] = self.joints_in.stats.readings
        stats["connections"] = {
            "joint_input": self.joints_in.connected,
            "joint_output": self.commands_out.connected,
            **{f"camera_{c}": v.stats.connected for c, v in self.cameras.items()},
        }
        # Messages from the rooms that were dropped: malformed (bad JSON, bad fields, too
        # large) or of a type we have no use for.
        dropped = {"joint_input": self.joints_in.stats, "joint_output": self.commands_out.stats}
        stats["dropped_messages"] = {
            **{k: {"malformed": v.malformed, "ignored": v.ignored} for k, v in dropped.items()},
            **{f"camera_{c}": {"malformed": v.stats.malformed, "ignored": v.stats.ignored}
               for c, v in self.cameras.items()},
        }
        return {
            "session_id": self.session_id,
            "status": self.state.value,
            "policy_path": cfg.policy_path,
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
            "inference_stats": self.loop.inference_stats(),
            "error_message": self.error_message or self.loop.problem(),
        }

    def queue_info(self) -> dict[str, Any]:
        info = self.loop.queue_info()
        info["data_status"] = {
            "cameras": {c: v.describe() for c, v in self.cameras.items()},
            "joints": self.joints_in.describe(),
        }
        return info

