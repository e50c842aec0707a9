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


def set_full_after(generation1_collections: int) -> None:
    """CPython's third threshold: a full collection may run once this many generation-1
    collections have happened since the last one (and a quarter more objects than it kept
    have reached generation 2). Process-wide."""
    t0, t1, _ = gc.get_threshold()
    gc.set_threshold(t0, t1, generation1_collections)


class PacedCollection:
    """While a tick scheduler runs, collections happen between its passes, not inside one.

    Left to itself, the collector runs when an allocation crosses generation 0's threshold,
    wherever that is: in the middle of a pass, delaying every session after it (1-3 ms for
    generation 0 here, 3-12 ms for generation 1 at 16 sessions, a couple of times in 10 s).
    With ``ORCHESTRATOR_GC_PACED`` automatic collection is off while any scheduler runs,
    and after each pass, once the commands are handed to their connections, the
    scheduler collects what CPython itself would have by then: its thresholds, and its rule
    that a full collection waits until a quarter more objects than the last one found
    have reached the oldest generation. Process-wide; schedulers hold and release it.
    """

    def __init__(self) -> None:
        self.enabled = False  # ORCHESTRATOR_GC_PACED; read when a scheduler starts
        self._holders = 0
        self._disabled_here = False  # automatic collection was on, and we turned it off
        self._long_lived: int | None = None  # objects in generation 2 after our last full one

    def hold(self) -> bool:
        if not self.enabled:
            return False
        if self._holders == 0 and gc.isenabled():
            gc.disable()
            self._disabled_here = True
        self._holders += 1
        return True

    def release(self) -> None:
        self._holders -= 1
        if self._holders == 0 and self._disabled_here:
            gc.enable()
            self._disabled_here = False

    def between_passes(self) -> None:
        if not self._disabled_here or gc.isenabled():  # someone else turned it back on
            return
        (t0, t1, t2), (c0, c1, c2) = gc.get_threshold(), gc.get_count()
        if t0 == 0 or c0 <= t0:
            return
        generation = 1 if c1 > t1 else 0
        if generation == 1 and c2 > t2 and self._full_due():
            generation = 2
        gc.collect(generation)
        if generation == 2:
            self._long_lived = len(gc.get_objects(generation=2))

    def _full_due(self) -> bool:
        if self._long_lived is None:
            return True
        return len(gc.get_objects(generation=2)) - self._long_lived >= self._long_lived / 4


PACED = PacedCollection()
