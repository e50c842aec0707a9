"""ORCHESTRATOR_GC_FREEZE: the process that ticks sessions moves what is alive at boot out of
the garbage collector's reach, once, and still collects what sessions leave behind. Each
case runs in a fresh interpreter: freezing is for the whole process, and the test process
has long been booted by other tests."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from orchestrator.settings import Settings

ROOT = Path(__file__).resolve().parents[2]

_BOOT = """
import asyncio, gc, json, sys, weakref
BASE = gc.get_freeze_count()  # the interpreter's own (375 here), before any import
from orchestrator.observability.metrics import GC_PAUSES
from orchestrator.sessions.manager import SessionManager
from orchestrator.settings import Settings
from orchestrator.triton.replicas import make_triton

async def boot():
    full_after = None if sys.argv[2] == "none" else int(sys.argv[2])
    settings = Settings(gc_freeze=sys.argv[1] == "on", triton_url="127.0.0.1:9",
                        gc_full_after=full_after)
    client = make_triton(settings.triton_url)
    first = SessionManager(settings, client)
    frozen = gc.get_freeze_count() - BASE
    SessionManager(settings, client)  # a second manager in the process freezes nothing more

    class Left:  # what a deleted session leaves: a cycle, made after boot
        pass
    left = Left()
    left.me = left
    gone = weakref.ref(left)
    del left
    full_before = GC_PAUSES.pauses[2].counts[:]
    gc.collect()
    await client.close()
    return {"frozen": frozen, "frozen_after_second": gc.get_freeze_count() - BASE,
            # frozen objects are out of every generation gc.get_objects() walks
            "manager_class_walked": any(o is SessionManager for o in gc.get_objects()),
            "later_cycle_collected": gone() is None, "manager": first is not None,
            # the manager counts the collector's pauses, once however many managers exist
            "gc_hooks": gc.callbacks.count(GC_PAUSES._on_collection),
            "thresholds": gc.get_threshold(),
            "full_collections_counted": sum(GC_PAUSES.pauses[2].counts) - sum(full_before)}

print(json.dumps(asyncio.run(boot())))
"""


def _boot(freeze: str, full_after: str = "none") -> dict[str, Any]:
    done = subprocess.run([sys.executable, "-c", _BOOT, freeze, full_after], cwd=ROOT,
                          capture_output=True,
                          text=True, timeout=120, env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert done.returncode == 0, done.stderr
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def test_boot_objects_are_frozen_once_and_later_garbage_is_still_collected() -> None:
    result = _boot("on")
    # The orchestrator's imports alone are ~100,000 objects; a floor well below that.
    assert result["frozen"] > 20_000
    assert result["frozen_after_second"] == result["frozen"]
    assert result["manager_class_walked"] is False
    assert result["later_cycle_collected"] is True
    assert result["gc_hooks"] == 1 and result["full_collections_counted"] == 1
    assert result["thresholds"] == [700, 10, 10]  # CPython's, untouched by default


def test_full_collections_wait_for_the_configured_number_of_young_ones() -> None:
    result = _boot("on", "100")
    assert result["thresholds"] == [700, 10, 100]
    assert result["later_cycle_collected"] is True  # an explicit collection still runs


def test_a_full_collection_threshold_below_one_is_refused_at_start() -> None:
    with pytest.raises(ValidationError, match="gc_full_after"):
        Settings(gc_full_after=0)


def test_without_the_setting_nothing_is_frozen() -> None:
    result = _boot("off")
    assert result["frozen"] == 0 and result["frozen_after_second"] == 0
    assert result["manager_class_walked"] is True
    assert result["later_cycle_collected"] is True
    assert result["gc_hooks"] == 1  # counted whether or not boot objects are frozen
