"""Request and response bodies. Names and fields of the seed contract are kept as they are;
fields added here are optional so every seed client keeps working."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field

from orchestrator.settings import BlendMode

SESSION_ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$"


class CreateSessionRequest(BaseModel):
    session_id: str = Field(
        pattern=SESSION_ID_PATTERN,
        description="1-64 characters: letters, digits, '_', '.', '-'; no path separators.",
    )
    policy_path: str = Field(
        min_length=1,
        max_length=256,
        description="A model in the Triton repository: NAME or NAME:VERSION (not a file path; "
        "export a checkpoint with `python -m export`).",
    )
    camera_names: list[str] = Field(
        default=["front"], description="Must equal the model's cameras."
    )
    arena_server_url: str = Field(default="http://localhost:8000", max_length=512)
    workspace_id: str | None = Field(default=None, max_length=128)
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


class CreateSessionResponse(BaseModel):
    workspace_id: str
    camera_room_ids: dict[str, str]
    joint_input_room_id: str
    joint_output_room_id: str


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


class ErrorResponse(BaseModel):
    detail: str
