"""Validation of every message an Arena server sends us (robotics and video sockets).

`parse_robotics(text)` / `parse_video(text)` never raise: they give a typed message, or a
`Malformed` (bad JSON, not an object, a known type with bad fields) or `Ignored` (a type this
client has no use for). Callers count both and drop them.

Extra keys are allowed everywhere: the reference server forwards joint entries exactly as the
producer sent them, and newer servers may add fields.
"""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Annotated, Any, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, TypeAdapter, ValidationError

logger = logging.getLogger(__name__)

MAX_INCOMING_CHARS = 1024 * 1024
# A robot has tens of joints. A joint message beyond these is no reading, and parsing one
# (tens of ms for a megabyte) would hold up every session on this event loop.
MAX_JOINT_ENTRIES = 256
MAX_ROBOTICS_CHARS = 128 * 1024

JointValue = Annotated[float, Field(strict=True, allow_inf_nan=False)]
JointName = Annotated[str, Field(min_length=1, max_length=256)]


class _Msg(BaseModel):
    model_config = ConfigDict(extra="allow", frozen=True)
    timestamp: str | None = None


class JointEntry(BaseModel):
    model_config = ConfigDict(extra="allow", frozen=True)
    name: JointName
    value: JointValue


class JointUpdate(_Msg):
    type: Literal["joint_update"]
    data: list[JointEntry]
    source: str | None = None
    invalid_entries: int = 0  # dropped, the valid rest kept (set by the parser, see _salvage)


class StateSync(_Msg):
    type: Literal["state_sync"]
    data: dict[JointName, JointValue]
    invalid_entries: int = 0


class Joined(_Msg):
    type: Literal["joined"]
    room_id: str
    role: Literal["producer", "consumer"]
    workspace_id: str | None = None


class ErrorMessage(_Msg):
    type: Literal["error"]
    message: str
    code: Any = None


class HeartbeatAck(_Msg):
    type: Literal["heartbeat_ack"]


def _as_text(value: Any) -> str | None:
    if value is None or isinstance(value, str):
        return value
    return json.dumps(value, default=str)[:1000]


# An emergency stop must latch whatever its other fields hold: the reference server forwards
# the sender's ``reason`` as given (a number, an object), and a stop refused for a field's
# type would leave the robot moving.
_LenientText = Annotated[str | None, BeforeValidator(_as_text)]


class EmergencyStop(_Msg):
    type: Literal["emergency_stop"]
    timestamp: _LenientText = None
    reason: _LenientText = None
    source: _LenientText = None

    def describe(self) -> str:
        return self.reason or f"emergency stop from {self.source or 'unknown'}"


def deliver_emergency_stop(
    msg: EmergencyStop, callback: Callable[[str], None] | None, room_id: str
) -> None:
    """Log an emergency stop and hand its reason to the connection's owner. The callback
    runs synchronously (the owner latches at once); its failure is logged, never raised."""
    reason = msg.describe()
    logger.warning("emergency stop in room %s: %s", room_id, reason)
    if callback is not None:
        try:
            callback(reason)
        except Exception:
            logger.exception("on_emergency_stop callback failed")


# -- video ---------------------------------------------------------------------------------
class ParticipantEvent(_Msg):
    type: Literal["participant_joined", "participant_left"]
    room_id: str
    participant_id: str
    role: Literal["producer", "consumer"]


class SessionDescription(BaseModel):
    model_config = ConfigDict(extra="allow", frozen=True)
    type: Literal["offer", "answer"]
    sdp: Annotated[str, Field(min_length=1)]


class WebRTCOffer(_Msg):
    type: Literal["webrtc_offer"]
    offer: SessionDescription
    from_producer: str


class WebRTCAnswer(_Msg):
    type: Literal["webrtc_answer"]
    answer: SessionDescription
    from_consumer: str


class IceCandidate(BaseModel):
    model_config = ConfigDict(extra="allow", frozen=True)
    candidate: str
    sdpMid: str | None = None  # the browser field names
    sdpMLineIndex: int | None = None


class WebRTCIce(_Msg):
    type: Literal["webrtc_ice"]
    candidate: IceCandidate | None
    from_producer: str | None = None
    from_consumer: str | None = None


class StreamEvent(_Msg):
    """stream_started / stream_stopped / video_config_update / status_update / ... relays."""

    type: Literal[
        "stream_started", "stream_stopped", "video_config_update", "status_update",
        "stream_stats", "recovery_triggered",
    ]


@dataclass(frozen=True, slots=True)
class Malformed:
    reason: str


@dataclass(frozen=True, slots=True)
class Ignored:
    type: str


RoboticsMessage = JointUpdate | StateSync | Joined | ErrorMessage | HeartbeatAck | EmergencyStop
VideoMessage = (
    Joined | ErrorMessage | HeartbeatAck | EmergencyStop | ParticipantEvent | WebRTCOffer
    | WebRTCAnswer | WebRTCIce | StreamEvent
)

_COMMON: dict[str, type[_Msg]] = {
    "joined": Joined,
    "error": ErrorMessage,
    "heartbeat_ack": HeartbeatAck,
    "emergency_stop": EmergencyStop,
}
_ROBOTICS: dict[str, type[_Msg]] = {
    **_COMMON, "joint_update": JointUpdate, "state_sync": StateSync,
}
_VIDEO: dict[str, type[_Msg]] = {
    **_COMMON,
    "participant_joined": ParticipantEvent,
    "participant_left": ParticipantEvent,
    "webrtc_offer": WebRTCOffer,
    "webrtc_answer": WebRTCAnswer,
    "webrtc_ice": WebRTCIce,
    **dict.fromkeys(
        ["stream_started", "stream_stopped", "video_config_update", "status_update",
         "stream_stats", "recovery_triggered"],
        StreamEvent,
    ),
}


def _parse(raw: str | bytes, table: dict[str, type[_Msg]], max_chars: int = MAX_INCOMING_CHARS
           ) -> _Msg | Malformed | Ignored:
    if isinstance(raw, bytes):
        return Malformed("binary frame")
    if len(raw) > max_chars:
        return Malformed(f"message too large ({len(raw)} chars)")
    try:
        obj = json.loads(raw)
    except ValueError:
        return Malformed("invalid JSON")
    except RecursionError:  # nested deeper than the parser's stack: small, but not data
        return Malformed("JSON nested too deep")
    if not isinstance(obj, dict):
        return Malformed("not a JSON object")
    kind = obj.get("type")
    if not isinstance(kind, str):
        return Malformed("missing or non-string 'type'")
    model = table.get(kind)
    if model is None:
        return Ignored(kind)
    if model in (JointUpdate, StateSync):
        obj.pop("invalid_entries", None)  # ours to count, not the sender's to say
        data = obj.get("data")
        if isinstance(data, list | dict) and len(data) > MAX_JOINT_ENTRIES:
            return Malformed(f"{kind}: {len(data)} entries, over {MAX_JOINT_ENTRIES}")
    try:
        return model.model_validate(obj)
    except ValidationError as exc:
        salvaged = _salvage(model, obj) if model in (JointUpdate, StateSync) else None
        if salvaged is not None:
            return salvaged
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first.get("loc", ()))
        return Malformed(f"{kind}: {where}: {first.get('msg')}")


_ENTRY, _NAME, _VALUE = TypeAdapter(JointEntry), TypeAdapter(JointName), TypeAdapter(JointValue)


def _valid(adapter: TypeAdapter[Any], value: Any) -> bool:
    try:
        adapter.validate_python(value)
    except ValidationError:
        return False
    return True


def _salvage(model: type[_Msg], obj: dict[str, Any]) -> _Msg | None:
    """The valid entries of a joint message with invalid ones (a null, NaN, odd name),
    counted; None when none is valid or the rest of the message is bad. The server
    forwards only the joints that changed: the good ones dropped with the message would
    never come again, and their last values would pass for current."""
    data = obj.get("data")
    if isinstance(data, list):
        good: list[Any] | dict[str, Any] = [e for e in data if _valid(_ENTRY, e)]
    elif isinstance(data, dict):
        good = {n: v for n, v in data.items() if _valid(_NAME, n) and _valid(_VALUE, v)}
    else:
        return None
    if not good:
        return None
    try:
        return model.model_validate({**obj, "data": good, "invalid_entries": len(data) - len(good)})
    except ValidationError:
        return None


def parse_robotics(raw: str | bytes) -> RoboticsMessage | Malformed | Ignored:
    msg = _parse(raw, _ROBOTICS, MAX_ROBOTICS_CHARS)
    return msg  # type: ignore[return-value]  # the table only holds robotics models


def parse_video(raw: str | bytes) -> VideoMessage | Malformed | Ignored:
    msg = _parse(raw, _VIDEO)
    return msg  # type: ignore[return-value]  # the table only holds video models


class JointUpdateEncoder:
    """``joint_update`` text for a producer that sends the same joints every tick.

    ``json.dumps`` of the message, with its {name, value} dict per joint built first, costs
    about as much as the WebSocket send itself. The joints' names rarely change, so the
    message is a template per name tuple (names JSON-escaped once) filled with the values'
    ``repr``, which is how ``json`` writes a float. Values are validated as before: finite
    numbers, bool excluded; names non-empty strings.
    """

    _MAX_TEMPLATES = 8  # name tuples kept (a robot renames joints rarely, if ever)

    def __init__(self) -> None:
        self._templates: dict[tuple[Any, ...], str] = {}

    def encode(self, values: Mapping[str, float]) -> str:
        names = tuple(values)
        template = self._templates.get(names)
        if template is None:
            template = self._template(names)
        numbers: list[float] = []
        for name, value in values.items():
            if type(value) is not float:
                if isinstance(value, bool) or not isinstance(value, int | float):
                    raise ValueError(f"joint {name!r}: value must be a number, got {value!r}")
                value = float(value)
            if not math.isfinite(value):
                raise ValueError(f"joint {name!r}: value must be finite, got {value!r}")
            numbers.append(value)
        return template % tuple(numbers)

    def _template(self, names: tuple[Any, ...]) -> str:
        if not names:
            raise ValueError("send_joints needs at least one joint")
        for name in names:
            if not isinstance(name, str) or not name:
                raise ValueError(f"joint names must be non-empty strings, got {name!r}")
        # %-placeholders for the values; a "%" in a name is escaped so it stays literal.
        entries = ",".join('{"name":' + json.dumps(n).replace("%", "%%") + ',"value":%r}'
                           for n in names)
        template = '{"type":"joint_update","data":[' + entries + "]}"
        if len(self._templates) >= self._MAX_TEMPLATES:
            self._templates.clear()
        self._templates[names] = template
        return template
