"""What a session is asked to be, independent of HTTP: the API maps its request body to a
``SessionSpec``; workers and the registry keep specs, never request bodies."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

from orchestrator.settings import BlendMode

# The policy families the RobotHub front-end offers; this stack serves ACT only.
SERVED_POLICY_TYPES = ("act",)
# Its "Custom Model" names no family: the checkpoint decides (its config.json's type is
# checked before anything is created, as for "act"), so it is served as an ACT one.
DETECTED_POLICY_TYPE = "custom"


def served_policy_type(requested: str) -> str:
    """The family a request is served as: "custom" is ACT; others stay as asked."""
    return "act" if requested.strip().lower() == DETECTED_POLICY_TYPE else requested


@dataclass(frozen=True)
class SessionSpec:
    session_id: str
    policy_path: str
    camera_names: tuple[str, ...] = ("front",)
    arena_url: str = ""  # empty: the orchestrator's ORCHESTRATOR_ARENA_DEFAULT_URL
    workspace_id: str | None = None
    policy_type: str = "act"
    # Accepted for clients that send it; ACT has no language input.
    language_instruction: str | None = None
    joint_aliases: Mapping[str, str] = field(default_factory=dict)
    rate_hz: float | None = None
    blend: BlendMode | None = None
    joint_limits: Mapping[str, tuple[float, float]] = field(default_factory=dict)
    max_step: float | None = None
    stale_after_s: float | None = None
    camera_latency_s: float | None = None

    def to_dict(self) -> dict[str, Any]:
        """Plain data (lists, dicts) for registries and actor calls."""
        data = asdict(self)
        data["camera_names"] = list(self.camera_names)
        data["joint_aliases"] = dict(self.joint_aliases)
        data["joint_limits"] = {k: list(v) for k, v in self.joint_limits.items()}
        return data

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> SessionSpec:
        known = {k: v for k, v in data.items() if k in cls.__dataclass_fields__}
        known["camera_names"] = tuple(known.get("camera_names", ("front",)))
        known["joint_aliases"] = dict(known.get("joint_aliases") or {})
        known["joint_limits"] = {k: (float(v[0]), float(v[1]))
                                 for k, v in (known.get("joint_limits") or {}).items()}
        return cls(**known)


@dataclass(frozen=True)
class SessionRooms:
    """Where a session's robot meets it: the answer to a create."""

    workspace_id: str
    camera_room_ids: Mapping[str, str]
    joint_input_room_id: str
    joint_output_room_id: str


def camera_room(session_id: str, camera: str) -> str:
    """A camera's video room (the RobotHub inference server's layout)."""
    return f"{session_id}-{camera}"


def camera_room_clash(spec: SessionSpec, workspace: str, others: Iterable[SessionSpec]
                      ) -> str | None:
    """Why ``spec`` cannot have its video rooms in ``workspace``: a room id is another
    session's there (``a`` with camera ``x-front`` and ``a-x`` with ``front`` both make
    ``a-x-front``: the second create replaced the first's room, and either delete removed
    both). ``others`` are specs with their workspace filled in; None when nothing clashes."""
    mine = {camera_room(spec.session_id, c): c for c in spec.camera_names}
    for other in others:
        if other.session_id == spec.session_id or other.workspace_id != workspace:
            continue
        for camera in other.camera_names:
            room = camera_room(other.session_id, camera)
            if room in mine:
                return (f"camera {mine[room]!r} would make video room {room!r}, which is "
                        f"session {other.session_id!r}'s (camera {camera!r}) in workspace "
                        f"{workspace!r}: choose another session id or camera name")
    return None
