"""Robotics room clients: a consumer that keeps the full joint state, and a producer.

Both join with their own timeout, heartbeat, surface `emergency_stop` to their owner through a
callback, and reconnect with backoff (re-joining) when the server or the network drops (the
connection is robotics_connection.py); the consumer keeps its known joint state across
reconnects.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Mapping
from typing import Any

from .messages import JointUpdate, JointUpdateEncoder, StateSync
from .robotics_connection import RoboticsConnection, Role
from .stream_clock import url_on_this_host, wall_to_monotonic

logger = logging.getLogger(__name__)

# Distinct joint names a consumer keeps: real arms have a handful; junk must stay bounded.
MAX_JOINT_NAMES = 256


class RoboticsConsumer(RoboticsConnection):
    """Keeps the full joint state of a room, merging every partial update into it."""

    role: Role = "consumer"

    def __init__(
        self, *args: Any, on_joints: Callable[[dict[str, float]], None] | None = None,
        **kwargs: Any,
    ) -> None:
        """Same arguments as the producer, plus `on_joints(changed)` called after each merge."""
        super().__init__(*args, **kwargs)
        self.on_joints = on_joints
        self._joints: dict[str, float] = {}
        self._last_reading_at: float | None = None
        # When the server forwarded the reading being delivered (its `timestamp`, on our
        # monotonic clock), if the server is on this host (same wall clock); else None.
        self.last_forwarded_at: float | None = None
        self._server_clock = url_on_this_host(self.base_url)

    @property
    def joints(self) -> dict[str, float]:
        """A copy of the last known value of every joint seen (across reconnects)."""
        return dict(self._joints)

    @property
    def last_reading_at(self) -> float | None:
        """time.monotonic() of the last real reading (never the empty join state_sync)."""
        return self._last_reading_at

    def snapshot(self) -> tuple[dict[str, float], float | None]:
        return dict(self._joints), self._last_reading_at

    def clear(self) -> None:
        self._joints.clear()
        self._last_reading_at = None

    def describe(self) -> dict[str, Any]:
        age = None if self._last_reading_at is None else time.monotonic() - self._last_reading_at
        return {**super().describe(), "joints": self.joints, "last_reading_age_s": age}

    def _on_joints(self, msg: JointUpdate | StateSync) -> None:
        self.stats.invalid_entries += msg.invalid_entries
        if isinstance(msg, StateSync):
            changed = dict(msg.data)  # empty on join to a fresh room: not a reading
        else:
            changed = {entry.name: entry.value for entry in msg.data}
        if not changed:
            return
        if len(self._joints) + len(changed) > MAX_JOINT_NAMES:
            # A producer flooding new names must not grow this state without bound.
            fresh = [n for n in changed if n not in self._joints]
            room = max(0, MAX_JOINT_NAMES - len(self._joints))
            for name in fresh[room:]:
                del changed[name]
            self.stats.dropped_names += len(fresh) - min(room, len(fresh))
            if not changed:
                return
        self._joints.update(changed)
        self.stats.readings += 1
        self._last_reading_at = time.monotonic()
        self.last_forwarded_at = wall_to_monotonic(msg.timestamp) if self._server_clock else None
        if self.on_joints is not None:
            try:
                self.on_joints(changed)
            except Exception:
                logger.exception("on_joints callback failed")


class RoboticsProducer(RoboticsConnection):
    """Publishes joint values into a room: one joint_update with one {name, value} per joint."""

    role: Role = "producer"

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._encoder = JointUpdateEncoder()

    async def send_joints(self, values: Mapping[str, float]) -> bool:
        """Send one joint_update. ValueError on bad input; False if not sent (disconnected)."""
        return await self._publish(self._encoder.encode(values), joints=True)

    async def emergency_stop(self, reason: str) -> bool:
        """Broadcast emergency_stop to the room (everyone, this client included, gets it)."""
        return await self._publish(json.dumps({"type": "emergency_stop", "reason": reason}))

    async def _publish(self, text: str, *, joints: bool = False) -> bool:
        ws = self._ws
        if ws is None or not self.stats.connected:
            self.stats.send_dropped += 1
            return False
        if not await self._send(ws, text):
            self.stats.send_dropped += 1
            return False
        if joints:
            self.stats.sent += 1
        return True
