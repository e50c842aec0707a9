"""Pure control logic: plan of actions, chunk blending, refill decision, safety, timing,
joint mapping. No I/O and no clock reads: time comes in as arguments."""

from orchestrator.control.core import ControlCore, ControlStats, TickDecision
from orchestrator.control.freshness import Freshness, age_since, observation_freshness
from orchestrator.control.joints import JointMapper, ReadingResult
from orchestrator.control.plan import BLEND_MODES, BlendMode, MergeResult, Plan
from orchestrator.control.reasons import Reason
from orchestrator.control.safety import (
    DEFAULT_MAX_STEP,
    Intervention,
    InterventionCounts,
    SafeCommand,
    SafetyLayer,
    default_limits,
)
from orchestrator.control.throttle import LogThrottle
from orchestrator.control.timing import (
    JitterStats,
    LatencyStats,
    LatencyTracker,
    RefillPolicy,
    TickClock,
    latency_ticks,
    period_jitter,
)

__all__ = [
    "BLEND_MODES",
    "DEFAULT_MAX_STEP",
    "BlendMode",
    "ControlCore",
    "ControlStats",
    "Freshness",
    "Intervention",
    "InterventionCounts",
    "JitterStats",
    "JointMapper",
    "LatencyStats",
    "LatencyTracker",
    "LogThrottle",
    "MergeResult",
    "Plan",
    "ReadingResult",
    "Reason",
    "RefillPolicy",
    "SafeCommand",
    "SafetyLayer",
    "TickClock",
    "TickDecision",
    "age_since",
    "default_limits",
    "latency_ticks",
    "observation_freshness",
    "period_jitter",
]
