"""ORCHESTRATOR_CONTROL_NICE: the event loop's thread (and what it starts afterwards) runs at
the nice value asked, no other thread does, /health says so, and a value the kernel refuses
is said and changes nothing. ORCHESTRATOR_CONTROL_REALTIME_PRIORITY: the thread is SCHED_FIFO
and what it starts afterwards is not. Each case runs on a thread or process of its own: a nice value
set on the test's own thread would be inherited by every server a later test starts."""

from __future__ import annotations

import asyncio
import json
import os
import resource
import subprocess
import sys
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from orchestrator.sessions.priority import ControlPriority
from orchestrator.settings import Settings
from tests.support.arena import free_port
from tests.support.orchestrator import run_orchestrator

ROOT = Path(__file__).resolve().parents[2]


def _nice() -> int:
    return os.getpriority(os.PRIO_PROCESS, threading.get_native_id())


def _on_own_thread(fn: Callable[[], Any]) -> Any:
    out: dict[str, Any] = {}

    def body() -> None:
        try:
            out["value"] = fn()
        except BaseException as exc:  # handed to the test's thread
            out["error"] = exc

    thread = threading.Thread(target=body)
    thread.start()
    thread.join(120)
    assert not thread.is_alive()
    if "error" in out:
        raise out["error"]
    return out["value"]


def test_only_the_loop_thread_and_the_threads_it_starts_take_the_nice_value() -> None:
    before = _nice()
    wanted = min(19, before + 3)  # a higher value: never refused, so no privilege needed

    def body() -> tuple[dict[str, Any], int, int]:
        priority = ControlPriority(wanted)
        priority.apply()
        priority.apply()  # once per thread: the second call changes nothing
        started: dict[str, int] = {}
        child = threading.Thread(target=lambda: started.setdefault("nice", _nice()))
        child.start()
        child.join()
        return priority.describe(), _nice(), started["nice"]

    described, own, child = _on_own_thread(body)
    assert described == {"nice_requested": wanted, "nice": wanted, "realtime_requested": None,
                         "realtime": None, "error": None}
    assert own == wanted and child == wanted
    assert _nice() == before  # the test's thread: untouched


def test_none_leaves_the_thread_as_it_was_and_says_what_it_runs_at() -> None:
    def body() -> tuple[dict[str, Any], int, int]:
        before = _nice()
        priority = ControlPriority(None)
        priority.apply()
        return priority.describe(), before, _nice()

    described, before, after = _on_own_thread(body)
    assert described == {"nice_requested": None, "nice": before, "realtime_requested": None,
                         "realtime": None, "error": None}
    assert after == before


def _policy() -> tuple[int, int]:
    """This thread's scheduling policy (reset-on-fork flag included) and real-time priority."""
    return os.sched_getscheduler(0), os.sched_getparam(0).sched_priority


def _may_realtime(priority: int) -> bool:
    return os.geteuid() == 0 or resource.getrlimit(resource.RLIMIT_RTPRIO)[0] >= priority


def test_real_time_for_the_loop_thread_alone_not_for_the_threads_it_starts() -> None:
    if not _may_realtime(7):
        # CI runs as root, so this runs there; the refused case below runs everywhere.
        pytest.skip("SCHED_FIFO 7 needs root, CAP_SYS_NICE or an RLIMIT_RTPRIO of 7")

    def body() -> tuple[dict[str, Any], tuple[int, int], tuple[int, int]]:
        priority = ControlPriority(None, realtime=7)
        priority.apply()
        started: dict[str, tuple[int, int]] = {}
        child = threading.Thread(target=lambda: started.setdefault("policy", _policy()))
        child.start()
        child.join()
        described, own = priority.describe(), _policy()
        os.sched_setscheduler(0, os.SCHED_OTHER, os.sched_param(0))  # the thread ends anyway
        return described, own, started["policy"]

    described, own, child = _on_own_thread(body)
    assert described == {"nice_requested": None, "nice": _nice(), "realtime_requested": 7,
                         "realtime": 7, "error": None}
    assert own == (os.SCHED_FIFO | os.SCHED_RESET_ON_FORK, 7)
    assert child == (os.SCHED_OTHER, 0)  # video decoding and the like stay ordinary
    assert _policy() == (os.SCHED_OTHER, 0)  # the test's thread: untouched


_REFUSED = """
import json, os, sys
from orchestrator.sessions.priority import ControlPriority  # imports done before the drop
if os.geteuid() == 0:  # root may lower any nice value: become nobody, who may not
    os.setgid(65534)
    os.setuid(65534)
before = os.getpriority(os.PRIO_PROCESS, 0)
priority = ControlPriority(max(-20, before - 5))
priority.apply()
realtime = ControlPriority(None, realtime=10)
realtime.apply()
print(json.dumps({"before": before, "after": os.getpriority(os.PRIO_PROCESS, 0),
                  "wanted": priority.nice, **priority.describe(),
                  "realtime": realtime.describe(), "policy": os.sched_getscheduler(0)}))
"""


def test_lower_nice_or_real_time_without_the_privilege_is_said_and_changes_nothing() -> None:
    done = subprocess.run([sys.executable, "-c", _REFUSED], cwd=ROOT, capture_output=True,
                          text=True, timeout=60, env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    assert result["after"] == result["before"] == result["nice"]
    assert result["nice_requested"] == result["wanted"] < result["before"]
    assert "CAP_SYS_NICE" in result["error"]
    assert "CAP_SYS_NICE" in done.stderr  # the warning, for whoever reads the logs
    assert result["policy"] == os.SCHED_OTHER
    assert result["realtime"]["realtime"] is None
    assert "SCHED_FIFO 10 refused" in result["realtime"]["error"]


def test_health_reports_the_loop_priority_of_a_running_orchestrator() -> None:
    wanted = min(19, _nice() + 2)
    realtime = 3 if _may_realtime(3) else None  # root here and in CI
    # No Triton behind it: /health answers "degraded", which is not what this test is about.
    settings = Settings(control_nice=wanted, control_realtime_priority=realtime,
                        triton_url=f"127.0.0.1:{free_port()}", triton_timeout_s=1.0)

    async def serve() -> tuple[dict[str, Any], int]:
        async with run_orchestrator(settings) as orchestrator:
            health = (await orchestrator.http.get("/health")).json()
            return health, _nice()

    health, loop_nice = _on_own_thread(lambda: asyncio.run(serve()))
    assert health["control_priority"] == {"nice_requested": wanted, "nice": wanted,
                                          "realtime_requested": realtime,
                                          "realtime": realtime, "error": None}
    assert loop_nice == wanted


@pytest.mark.parametrize("field,value", [("control_realtime_priority", 0),
                                         ("control_realtime_priority", 100),
                                         ("control_nice", -21), ("control_nice", 20)])
def test_a_priority_the_kernel_has_no_such_value_for_is_refused_at_start(field: str,
                                                                         value: int) -> None:
    with pytest.raises(ValidationError, match=field):
        Settings(**{field: value})
