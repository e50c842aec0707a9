"""Joint names: robot readings -> the model's state vector, and actions -> robot commands.

Slots are found by name, never by position, so an unknown or missing joint can never
shift a value into another joint's slot. A robot name resolves, in order, through the
alias map, an exact model name, LeRobot's ``.pos`` suffix (``shoulder_pan`` and
``shoulder_pan.pos`` are the same joint), then the names known robots use for a model's
joints (the RobotHub front-end's SO-100 arm: ``Rotation`` ... ``Jaw``).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from numbers import Real

import numpy as np

_SUFFIX = ".pos"
_MAX_UNKNOWN_NAMES = 32
# Far beyond any joint unit (normalized -100..100, degrees, radians): a larger reading is
# garbage, and would overflow the model's float32 input to inf.
MAX_ABS_VALUE = 1e6  # remembered for the status; a flood of junk names stays bounded

# Robot-side names for LeRobot SO-100/SO-101 joints: the RobotHub front-end's URDF names (the
# server it replaces mapped them the same way). Matched after exact names, any case.
KNOWN_ROBOT_NAMES: dict[str, str] = {
    "rotation": "shoulder_pan",
    "pitch": "shoulder_lift",
    "elbow": "elbow_flex",
    "wrist_pitch": "wrist_flex",
    "wrist_roll": "wrist_roll",
    "jaw": "gripper",
}


@dataclass(frozen=True)
class ReadingResult:
    accepted: int
    unknown: tuple[str, ...]  # names that match no model joint: counted and ignored
    invalid: tuple[str, ...]  # known names whose value is not a finite number


def _suffix_twin(name: str) -> str:
    return name[: -len(_SUFFIX)] if name.endswith(_SUFFIX) else name + _SUFFIX


class JointMapper:
    """Keeps the last reading of every model joint (updates are partial: the Arena server
    forwards only changed joints) and maps names both ways."""

    def __init__(
        self,
        model_joint_names: Sequence[str],
        aliases: Mapping[str, str] | None = None,
        *,
        action_names: Sequence[str] | None = None,
        unread: float | None = None,
    ) -> None:
        """``unread``: the value of a joint never read, once any joint has been (None: the
        state waits for every joint). The RobotHub page sends a joint only once it moves,
        and its robot starts with every joint at 0."""
        names = tuple(model_joint_names)
        self.unread = unread
        if not names or len(set(names)) != len(names):
            raise ValueError(f"model joint names must be non-empty and unique, got {names}")
        self.state_names = names
        self.action_names = tuple(action_names) if action_names is not None else names
        # Model names (with or without ``.pos``) -> slot; aliases resolve against these only,
        # so their order does not matter (a robot whose wrists are named the other way round).
        self._model_index: dict[str, int] = {n: i for i, n in enumerate(names)}
        for i, n in enumerate(names):
            self._model_index.setdefault(_suffix_twin(n), i)
        self._lookup = dict(self._model_index)  # robot names -> slot
        # Commands go out under the robot's own names: an alias, or the name it reports.
        self._robot_names: list[str | None] = [None] * len(names)
        self._alias_names: list[str | None] = [None] * len(names)
        aliases = dict(aliases or {})
        for robot_name, model_name in aliases.items():
            index = self._model_index.get(model_name)
            if index is None:
                raise ValueError(f"alias {robot_name!r} -> {model_name!r}: the model has no "
                                 f"joint {model_name!r}; its joints are {list(names)}")
            self._lookup[robot_name] = index
            if self._alias_names[index] is None:
                self._alias_names[index] = robot_name
        for robot_name, model_name in aliases.items():
            # A robot name that is another model joint's name takes it from that joint: the
            # joint needs an alias of its own, or its readings and commands would collide.
            hidden = self._model_index.get(robot_name)
            if hidden is not None and hidden != self._model_index[model_name] and \
                    self._alias_names[hidden] is None:
                raise ValueError(
                    f"alias {robot_name!r} -> {model_name!r} takes the name of model joint "
                    f"{names[hidden]!r}, which then has no name of its own: alias it too")
        # Known robot names, for the model joints they stand for (with or without ``.pos``).
        self._known: dict[str, int] = {}
        for robot_name, model_name in KNOWN_ROBOT_NAMES.items():
            index = self._lookup.get(model_name)
            if index is not None:
                self._known[robot_name] = index
        self._values = np.full(len(names), unread or 0.0, dtype=np.float64)
        self._have = np.zeros(len(names), dtype=bool)
        self._ready = False  # every slot read (asked at every tick: kept, not recomputed)
        self._command_names: tuple[str, ...] | None = None  # robot names, in action order
        self.last_update: float | None = None
        self.unknown_count = 0
        self.invalid_count = 0
        self.unknown_names: set[str] = set()

    def index_of(self, robot_name: str) -> int | None:
        """The state slot of ``robot_name``, or None when it is no model joint."""
        index = self._lookup.get(robot_name)
        if index is None:
            index = self._known.get(robot_name.lower())
        return index

    def describe_mapping(self) -> dict[str, object]:
        """For the status: robot name -> model joint for every joint read, the names that
        map to no model joint, and the model joints never read."""
        mapping = {robot: self.state_names[i] for i, robot in enumerate(self._robot_names)
                   if robot is not None}
        return {"robot_to_model": mapping, "unmapped": sorted(self.unknown_names),
                "missing": list(self.missing)}

    @property
    def ready(self) -> bool:
        """True once every model joint has had a real reading (with ``unread``: any)."""
        return self._ready

    @property
    def missing(self) -> tuple[str, ...]:
        return tuple(n for n, have in zip(self.state_names, self._have, strict=True) if not have)

    def state(self) -> np.ndarray | None:
        """The state vector in model order, or None until ``ready``."""
        return self._values.copy() if self.ready else None

    def readings(self) -> dict[str, float]:
        """The joints read so far, by model name (for debug)."""
        return {n: float(v) for n, v, h in zip(self.state_names, self._values, self._have,
                                               strict=True) if h}

    def reset(self) -> None:
        """Forget every reading (counters stay: they are session statistics)."""
        self._have[:] = False
        self._ready = False
        self._values[:] = self.unread or 0.0
        self.last_update = None
        # The robot that reports next may name its joints otherwise: commands follow it.
        self._robot_names = [None] * len(self.state_names)
        self._command_names = None

    def update(
        self, readings: Mapping[str, object] | Iterable[Mapping[str, object]], stamp: float
    ) -> ReadingResult:
        """Merge a partial reading: ``{name: value}`` (``state_sync``) or
        ``[{"name": ..., "value": ...}, ...]`` (``joint_update``). Joints not mentioned keep
        their last value; an empty reading changes nothing."""
        pairs = readings.items() if isinstance(readings, Mapping) else _entries(readings)
        accepted = 0
        unknown: list[str] = []
        invalid: list[str] = []
        for name, value in pairs:
            index = self.index_of(name) if isinstance(name, str) else None
            if index is None or not isinstance(name, str):
                unknown.append(str(name)[:64])
                continue
            if isinstance(value, bool) or not isinstance(value, Real) or not _in_range(value):
                invalid.append(name)
                continue
            self._values[index] = float(value)
            self._have[index] = True
            if self._robot_names[index] is None:
                self._robot_names[index] = name
                self._command_names = None
            accepted += 1
        self.unknown_count += len(unknown)
        self.invalid_count += len(invalid)
        for name in unknown:
            if len(self.unknown_names) >= _MAX_UNKNOWN_NAMES:
                break
            self.unknown_names.add(name)
        if accepted:
            self.last_update = stamp
            self._ready = self._ready or self.unread is not None or bool(self._have.all())
        return ReadingResult(accepted, tuple(unknown), tuple(invalid))

    def robot_name(self, model_name: str) -> str:
        """The name the robot knows ``model_name`` by: its alias, else as reported, else
        (a joint not read yet) the known robot name, in the case the robot wrote the known
        names it reported, else as is."""
        index = self._model_index.get(model_name)
        if index is None:
            return model_name
        return (self._alias_names[index] or self._robot_names[index]
                or self._known_name(index) or model_name)

    def _known_name(self, index: int) -> str | None:
        """``Wrist_Pitch`` for a robot that reported ``Pitch``: the page's names, as written."""
        spelled = [r for r in self._robot_names if r is not None and r.lower() in self._known]
        known = next((k for k, i in self._known.items() if i == index), None)
        if not spelled or known is None:
            return None
        sample = spelled[0]
        if sample == sample.lower():
            return known
        if sample == sample.upper():
            return known.upper()
        return "_".join(part.capitalize() for part in known.split("_"))

    def to_command(self, action: np.ndarray | Sequence[float]) -> dict[str, float]:
        """``{robot joint name: value}`` for one action vector in the model's action order."""
        values = np.asarray(action, dtype=np.float64)
        if values.shape != (len(self.action_names),):
            raise ValueError(f"action must have {len(self.action_names)} values, got shape "
                             f"{list(values.shape)}")
        names = self._command_names
        if names is None:
            names = self._command_names = tuple(self.robot_name(n) for n in self.action_names)
        return dict(zip(names, values.tolist(), strict=True))


def _in_range(value: Real) -> bool:
    try:
        return abs(float(value)) <= MAX_ABS_VALUE  # also false for NaN
    except OverflowError:  # an int too large for a float
        return False


def _entries(items: Iterable[Mapping[str, object]]) -> Iterable[tuple[object, object]]:
    for item in items:
        if isinstance(item, Mapping):
            yield item.get("name"), item.get("value")
        else:
            yield repr(item)[:64], None  # not an entry: counted as an unknown name
