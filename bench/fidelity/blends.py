"""Reference blends for the fidelity bench: LeRobot async inference's aggregate functions.

LeRobot's robot client keeps a queue of timed actions; when a chunk arrives, each action
for a step already in the queue is combined once with the queued one by an aggregate
function ``f(old, new)``, actions for new steps are appended, actions for executed steps
are skipped; it asks for the next chunk when the queue falls to ``chunk_size_threshold``
(0.5) of the chunk. Its chunk is timed from the step the client had executed when it read
the observation: in this stack that is the snapshot tick (``align_to_capture=False``).

Used only by the bench: a ``Plan`` whose pairwise blend is one of these functions and a
refill rule on the queue fraction, swapped into a real session's control core.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from orchestrator.control.plan import Plan, _Slot
from orchestrator.control.timing import RefillPolicy

Aggregate = Callable[[np.ndarray, np.ndarray], np.ndarray]

AGGREGATES: dict[str, Aggregate] = {
    "weighted_average": lambda old, new: 0.3 * old + 0.7 * new,
    "latest_only": lambda old, new: new,
    "average": lambda old, new: 0.5 * old + 0.5 * new,
    "conservative": lambda old, new: 0.7 * old + 0.3 * new,
}


class AggregatePlan(Plan):
    """A plan that combines an overlapping step's queued and new actions with ``f``."""

    def __init__(self, action_dim: int, max_ahead: int, aggregate: str) -> None:
        super().__init__(action_dim, max_ahead, blend="replace")
        self.aggregate_name = aggregate
        self._aggregate = AGGREGATES[aggregate]

    def _blend(self, old: _Slot, new: np.ndarray, index: int, ramp: int) -> _Slot:
        return _Slot(np.asarray(self._aggregate(old.value, new), dtype=np.float64), 1.0,
                     old.proposals + 1)


class QueueFractionRefill(RefillPolicy):
    """Ask when the plan holds at most ``threshold`` of a chunk (LeRobot's rule)."""

    def __init__(self, chunk_size: int, threshold: float = 0.5) -> None:
        super().__init__(margin_ticks=0)
        self.limit = int(threshold * chunk_size)

    def should_request(self, k_now: int, horizon: int, in_flight: bool, latency_p95: float,
                       rate: float, last_request_tick: int | None,
                       observation_fresh: bool) -> bool:
        return not in_flight and observation_fresh and horizon <= self.limit
