"""The comparison bench's event-loop thread figures (``bench.comparison.measure.ThreadCpu``):
its CPU, and how long it waited for a CPU while ready to run, read from the kernel for real
while busy processes outnumber the cores."""

from __future__ import annotations

import gc
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from bench.comparison.measure import GcPauses, ThreadCpu
from bench.comparison.runner import control_plane

_BUSY = "import time\nend = time.time() + 5\nwhile time.time() < end: pass\n"


@pytest.mark.skipif(not Path("/proc/self/schedstat").exists(), reason="Linux schedstat only")
def test_the_loop_thread_waits_for_a_cpu_when_busy_processes_outnumber_the_cores() -> None:
    busy = [subprocess.Popen([sys.executable, "-c", _BUSY]) for _ in range(os.cpu_count() or 1)]
    try:
        time.sleep(0.3)  # let them start spinning
        threads = ThreadCpu()
        threads.start()
        end = time.monotonic() + 0.6
        while time.monotonic() < end:  # this thread wants a CPU too, all along
            pass
        used = threads.stop()
    finally:
        for p in busy:
            p.kill()
            p.wait()
    assert used["main_s"] > 0
    # More runnable threads than cores: the kernel's run queue held this one some of the
    # time (and never longer than the window).
    assert 0 < used["main_runqueue_wait_s"] <= used["wall_s"]


def test_the_control_plane_figures_carry_the_wait_as_a_share_of_the_window() -> None:
    threads = {"main_s": 0.3, "other_threads_s": 0.1, "wall_s": 10.0,
               "main_runqueue_wait_s": 2.5}
    out = control_plane(3000, threads, {"tick_s": 0.15, "send_s": 0.12}, {})
    assert out["event_loop_thread_runqueue_wait_share"] == 0.25
    assert out["event_loop_thread_ms_per_session_tick"] == 0.1
    del threads["main_runqueue_wait_s"]  # a kernel that does not tell
    assert "event_loop_thread_runqueue_wait_share" not in control_plane(3000, threads, {}, {})


def test_gc_pauses_count_the_loop_threads_collections_not_other_threads() -> None:
    collector = GcPauses()
    collector.start()
    gc.collect(1)  # on this (the main) thread: counted

    def elsewhere() -> None:
        for _ in range(5):
            gc.collect(2)

    other = threading.Thread(target=elsewhere)
    other.start()
    other.join()
    out = collector.stop()
    assert out["gen1"]["n"] >= 1 and out["gen1"]["max_ms"] is not None
    assert out["gen2"]["n"] == 0  # the five full ones ran on another thread
    assert out["full_collection_after_ms"] > 0
    assert collector._callback not in gc.callbacks  # stop detaches it
