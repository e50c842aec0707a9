"""Request and response bodies. Names and fields of the seed contract are kept as they are;
fields added here are optional so every seed client keeps working."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field, model_validator

from orchestrator.sessions.spec import (
    SERVED_POLICY_TYPES,
    SessionRooms,
    SessionSpec,
    served_policy_type,
)
from orchestrator.settings import BlendMode

SESSION_ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$"


class CreateSessionRequest(BaseModel):
    # JSON bodies may say NaN or Infinity (Python's parser takes them): no rate, limit or
    # step may be one (max_step Infinity was taken: no step limit at all).
    model_config = ConfigDict(allow_inf_nan=False)

    session_id: str = Field(
        pattern=SESSION_ID_PATTERN,
        description="1-64 characters: letters, digits, '_', '.', '-'; no path separators.",
    )
    policy_path: str = Field(
        min_length=1,
        max_length=256,
        description="A model served by Triton (NAME or NAME:VERSION), a Hugging Face hub repo id "
        "(org/name, optional @revision) or a checkpoint folder; a hub id or folder that no "
        "served model came from is exported on demand (the session is initializing meanwhile).",
    )
    camera_names: list[str] = Field(
        default=["front"], description="Must equal the model's cameras."
    )
    arena_server_url: str = Field(default="http://localhost:8000", max_length=512)
    workspace_id: str | None = Field(default=None, max_length=128)
    transport_server_url: str | None = Field(
        default=None, max_length=512,
        description="The newer name of arena_server_url (RobotHub front-end); a base URL may "
        "carry a path prefix (http://host:8000/api).",
    )
    policy_type: str = Field(
        default="act", max_length=64,
        description=f"Policy family; this server serves {', '.join(SERVED_POLICY_TYPES)} only "
        "(\"custom\": the checkpoint decides, and it must be an ACT one).",
    )
    language_instruction: str | None = Field(
        default=None, max_length=2000,
        description="Accepted and shown in the status; ACT policies take no language input.",
    )
    # Additions to the seed contract, all optional.
    joint_aliases: dict[str, str] | None = Field(
        default=None,
        description="Robot joint name -> model joint name, for robots that name joints "
        "differently.",
    )
    rate_hz: float | None = Field(
        default=None, gt=0, le=1000, description="Control rate; default: the model's fps."
    )
    blend: BlendMode | None = Field(default=None, description="How overlapping chunks are merged.")
    joint_limits: dict[str, tuple[float, float]] | None = Field(
        default=None, description="Per-joint (low, high) command limits in robot units."
    )
    max_step: float | None = Field(default=None, gt=0, description="Max change per tick per joint.")
    stale_after_s: float | None = Field(
        default=None, gt=0, le=60, description="Observation age beyond which no chunk is requested."
    )
    camera_latency_s: float | None = Field(
        default=None, ge=0, le=5, description="Video-path delay (capture to arrival) of this "
        "robot's frames when their stream gives no capture time; chunks are aligned to the "
        "observation's capture. Default: the server's setting.",
    )

    @model_validator(mode="after")
    def _one_arena_url(self) -> CreateSessionRequest:
        given = self.model_fields_set
        if ("transport_server_url" in given and "arena_server_url" in given
                and self.transport_server_url is not None
                and self.transport_server_url.rstrip("/") != self.arena_server_url.rstrip("/")):
            raise ValueError(
                f"transport_server_url {self.transport_server_url!r} and arena_server_url "
                f"{self.arena_server_url!r} name different servers; give one of them"
            )
        return self

    def to_spec(self) -> SessionSpec:
        return SessionSpec(
            session_id=self.session_id,
            policy_path=self.policy_path,
            camera_names=tuple(self.camera_names),
            # Neither URL sent: the orchestrator's own default server (the field's default
            # is the seed contract's, for the document).
            arena_url=self.transport_server_url or (
                self.arena_server_url if "arena_server_url" in self.model_fields_set else ""),
            workspace_id=self.workspace_id,
            policy_type=served_policy_type(self.policy_type),
            language_instruction=self.language_instruction,
            joint_aliases=dict(self.joint_aliases or {}),
            rate_hz=self.rate_hz,
            blend=self.blend,
            joint_limits={k: (float(lo), float(hi))
                          for k, (lo, hi) in (self.joint_limits or {}).items()},
            max_step=self.max_step,
            stale_after_s=self.stale_after_s,
            camera_latency_s=self.camera_latency_s,
        )


class CreateSessionResponse(BaseModel):
    workspace_id: str
    camera_room_ids: dict[str, str]
    joint_input_room_id: str
    joint_output_room_id: str

    @classmethod
    def of(cls, rooms: SessionRooms) -> CreateSessionResponse:
        return cls(workspace_id=rooms.workspace_id, camera_room_ids=dict(rooms.camera_room_ids),
                   joint_input_room_id=rooms.joint_input_room_id,
                   joint_output_room_id=rooms.joint_output_room_id)


class SessionStatusResponse(BaseModel):
    session_id: str
    status: str
    policy_path: str
    camera_names: list[str]
    workspace_id: str
    rooms: dict[str, Any]
    stats: dict[str, Any]
    inference_stats: dict[str, Any] | None = None
    error_message: str | None = None
    policy_type: str = "act"
    language_instruction: str | None = None
    joint_mapping: dict[str, Any] | None = Field(
        default=None, description="Robot joint name -> model joint, and what could not be mapped."
    )
    initialization: dict[str, Any] | None = Field(
        default=None, description="While initializing: the on-demand export's step and source."
    )


class ErrorResponse(BaseModel):
    detail: str
