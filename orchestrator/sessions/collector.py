"""Python's cyclic garbage collector and the thread that ticks the sessions.

A collection runs on whichever thread allocates when a generation's threshold is crossed,
and it stops that thread until it is done: a full (generation 2) collection walks every
tracked object in the process. After the orchestrator's imports that is ~105,000 objects
(modules, classes, pydantic and protobuf descriptors, aiortc), about 95 ms here: three
ticks missed by every session on that loop, at an instant nobody chose. Those objects
live as long as the process, so at boot they are moved out of the collector's reach
(``gc.freeze``, as Instagram's Django workers do before forking); sessions made later are
collected as usual, and only they are walked.

A cycle among frozen objects that later becomes garbage is never collected, which is why
this runs once per process, after one full collection, before any session exists.
"""

from __future__ import annotations

import gc
import logging
import time
from dataclasses import dataclass

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class BootFreeze:
    frozen_objects: int  # what no collection walks from now on (gc.get_freeze_count())
    collect_ms: float  # the full collection just before, for comparison


_done: BootFreeze | None = None


def freeze_boot_objects() -> BootFreeze:
    """Collect once, then freeze what is alive; a second call in the process changes
    nothing (sessions may exist by then) and returns the first call's figures."""
    global _done
    if _done is None:
        start = time.perf_counter()
        gc.collect()
        collect_ms = (time.perf_counter() - start) * 1000.0
        gc.freeze()
        _done = BootFreeze(gc.get_freeze_count(), round(collect_ms, 1))
        log.info("garbage collector: %d objects from boot frozen (a full collection over "
                 "them took %.1f ms)", _done.frozen_objects, _done.collect_ms)
    return _done
