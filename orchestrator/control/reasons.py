"""Why a tick published nothing, or why a refill was not asked for.

Values are plain strings on the wire (status, stats, logs), so the session layer can
report them verbatim.
"""

from __future__ import annotations

from enum import StrEnum


class Reason(StrEnum):
    OK = "ok"
    WAITING_FOR_FRAMES = "waiting_for_frames"
    WAITING_FOR_JOINTS = "waiting_for_joints"
    STALE_OBSERVATION = "stale_observation"
    WAITING_FOR_CHUNK = "waiting_for_chunk"  # no chunk has arrived since start or reset
    UNDERRUN = "underrun"  # the plan ran out although chunks had been arriving
    EMERGENCY_STOP = "emergency_stop"
    NON_FINITE = "non_finite"
    NO_ACTION = "no_action"
