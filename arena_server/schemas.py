"""Request bodies of the room server's REST API (validation gives FastAPI's usual 422)."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, Field


class CreateRoboticsRoom(BaseModel):
    room_id: str | None = Field(default=None, min_length=1, max_length=256)
    name: str | None = Field(default=None, max_length=256)
    robot_type: Literal["so-arm100", "generic"] = "so-arm100"
    max_consumers: int = Field(default=10, ge=1, le=100)
    workspace_id: str | None = None  # ignored: the path decides


class JointCommandEntry(BaseModel):
    name: str = Field(min_length=1, max_length=256)
    value: float = Field(ge=-360, le=360)
    speed: float | None = None


class JointCommand(BaseModel):
    joints: list[JointCommandEntry] = Field(min_length=1, max_length=20)


class Resolution(BaseModel):
    width: int = Field(default=640, ge=1, le=8192)
    height: int = Field(default=480, ge=1, le=8192)


class VideoConfig(BaseModel):
    encoding: Literal["jpeg", "h264", "vp8", "vp9"] = "vp8"
    resolution: Resolution = Field(default_factory=Resolution)
    framerate: int = Field(default=30, ge=1, le=120)
    bitrate: int = Field(default=1_000_000, ge=100_000)
    quality: int = Field(default=80, ge=1, le=100)


class CreateVideoRoom(BaseModel):
    room_id: str | None = Field(default=None, min_length=1, max_length=256)
    config: VideoConfig | None = None
    recovery_config: dict[str, Any] | None = None
    workspace_id: str | None = None  # ignored: the path decides


class SignalRequest(BaseModel):
    client_id: str = Field(min_length=1, max_length=256)
    message: dict[str, Any]
