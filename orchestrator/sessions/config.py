"""A session's resolved configuration: where its rooms are (known at create) and which model
drives it (known at create for a served model, later for one exported on demand)."""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Literal

from orchestrator.sessions.policy import PolicyRef
from orchestrator.sessions.spec import SessionRooms, SessionSpec, camera_room
from orchestrator.settings import BlendMode, Settings
from orchestrator.triton.model_contract import ModelContract

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class LoopSettings:
    """What one control loop runs with (from the settings and the session's request)."""

    rate_hz: float
    blend: BlendMode = "crossfade"
    crossfade_ticks: int = 10
    ensemble_m: float = 0.01
    margin_ticks: int = 3
    replan_every: int | None = None
    max_step: float | None = 10.0
    limits: Mapping[str, tuple[float, float]] = field(default_factory=dict)
    stale_after_s: float = 0.5
    latency_prior_s: float = 0.1
    inference_timeout_s: float = 2.0
    retry_backoff_s: float = 0.5  # after a failed request, before the next one
    # shared: one timer per process and rate ticks every session (scheduler.py);
    # per_session: each session's own timer, awaiting its publish (the earlier design).
    tick_scheduler: Literal["shared", "per_session"] = "shared"
    # Frames' video-path delay when their stream gives no capture time (None: 0).
    camera_latency_s: float | None = None
    # Observations are taken at their frames' capture (the joint state current then) and
    # chunks start at that tick (False: newest parts, chunks start at the snapshot tick).
    align_to_capture: bool = True
    # What a joint never read reads as, once any has been (None: wait for every joint).
    unread_joints: float | None = None


def staleness(spec: SessionSpec, settings: Settings) -> tuple[float, float | None]:
    """The session's ``stale_after_s`` and ``camera_latency_s``: its own, else the server's."""
    return (spec.stale_after_s or settings.stale_after_s,
            spec.camera_latency_s if spec.camera_latency_s is not None
            else settings.camera_latency_s)


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


@dataclass(frozen=True)
class SessionConfig:
    """Rooms and connections: everything a session needs before its model is known."""

    session_id: str
    policy_path: str
    cameras: tuple[str, ...]
    arena_url: str
    workspace_id: str
    spec: SessionSpec
    aliases: dict[str, str] = field(default_factory=dict)
    arena_timeout_s: float = 5.0

    @classmethod
    def from_spec(cls, spec: SessionSpec, settings: Settings, arena_url: str,
                  workspace_id: str) -> SessionConfig:
        return cls(
            session_id=spec.session_id, policy_path=spec.policy_path,
            cameras=tuple(spec.camera_names), arena_url=arena_url, workspace_id=workspace_id,
            spec=spec, aliases=dict(spec.joint_aliases),
            arena_timeout_s=settings.arena_timeout_s,
        )

    @property
    def camera_rooms(self) -> dict[str, str]:
        return {cam: camera_room(self.session_id, cam) for cam in self.cameras}

    @property
    def joint_input_room(self) -> str:
        return f"{self.session_id}-joint-input"

    @property
    def joint_output_room(self) -> str:
        return f"{self.session_id}-joint-output"

    def rooms(self) -> SessionRooms:
        return SessionRooms(
            workspace_id=self.workspace_id, camera_room_ids=self.camera_rooms,
            joint_input_room_id=self.joint_input_room,
            joint_output_room_id=self.joint_output_room,
        )


@dataclass(frozen=True)
class ModelBinding:
    """The served model a session runs, and the loop settings derived from it."""

    policy: PolicyRef
    contract: ModelContract
    loop: LoopSettings

    @classmethod
    def create(cls, spec: SessionSpec, settings: Settings, policy: PolicyRef,
               contract: ModelContract) -> ModelBinding:
        limits = model_limits(contract)
        limits.update({k: (float(lo), float(hi)) for k, (lo, hi) in spec.joint_limits.items()})
        blend: BlendMode = spec.blend or settings.blend
        stale_after_s, camera_latency_s = staleness(spec, settings)
        loop = LoopSettings(
            rate_hz=spec.rate_hz or contract.fps,
            blend=blend,
            crossfade_ticks=settings.crossfade_ticks,
            ensemble_m=settings.ensemble_m,
            margin_ticks=settings.margin_ticks,
            replan_every=settings.replan_every,
            max_step=spec.max_step if spec.max_step is not None else settings.max_step,
            limits=limits,
            stale_after_s=stale_after_s,
            latency_prior_s=settings.latency_prior_s,
            inference_timeout_s=settings.triton_timeout_s,
            tick_scheduler=settings.tick_scheduler,
            camera_latency_s=camera_latency_s,
            unread_joints=settings.unread_joints,
        )
        return cls(policy=policy, contract=contract, loop=loop)
