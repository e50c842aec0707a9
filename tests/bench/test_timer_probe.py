"""The bench's timer probe: a real thread, real sleeps. It must see what stops every thread
of the process (a call holding the GIL) and run at the priority of the thread that started
it, which is what its figures are read against (the event loop's)."""

from __future__ import annotations

import os
import random
import threading
import time

from bench.comparison.probe import TimerProbe


def test_a_call_holding_the_gil_shows_as_one_late_wake_up() -> None:
    data = [random.random() for _ in range(1_000_000)]
    probe = TimerProbe(rate_hz=100.0)
    probe.start()
    time.sleep(0.1)
    began = time.monotonic()
    data.sort()  # C code from start to end: no other Python thread runs meanwhile
    held_ms = (time.monotonic() - began) * 1000.0
    time.sleep(0.1)
    figures = probe.stop()
    assert figures["lateness_ms"]["n"] >= 10
    # The wake-up due during the sort ran after it: late by much of the sort's length.
    assert figures["lateness_ms"]["max"] >= held_ms - 10.0 - 5.0, (held_ms, figures)
    assert figures["switch_interval_ms"] > 0


def test_the_probe_takes_the_nice_value_of_the_thread_that_starts_it() -> None:
    seen: dict[str, int] = {}

    def starter() -> None:
        tid = threading.get_native_id()
        os.setpriority(os.PRIO_PROCESS, tid, os.getpriority(os.PRIO_PROCESS, tid) + 3)
        probe = TimerProbe(rate_hz=50.0)
        probe.start()
        assert probe.native_id is not None
        seen["starter"] = os.getpriority(os.PRIO_PROCESS, tid)
        seen["probe"] = os.getpriority(os.PRIO_PROCESS, probe.native_id)
        probe.stop()

    main_nice = os.getpriority(os.PRIO_PROCESS, threading.get_native_id())
    thread = threading.Thread(target=starter)
    thread.start()
    thread.join()
    assert seen["probe"] == seen["starter"] == main_nice + 3


def test_lateness_is_split_into_cpu_wait_and_the_rest() -> None:
    probe = TimerProbe(rate_hz=100.0)
    probe.start()
    time.sleep(0.2)
    figures = probe.stop()
    n = figures["lateness_ms"]["n"]
    assert n >= 5
    # One CPU wait per wake-up (a counter's growth: never negative), and the rest beside it.
    assert figures["waiting_for_a_cpu_ms"]["n"] == n
    assert figures["waiting_for_the_gil_and_rest_ms"]["n"] == n
    assert min(probe.cpu_wait_ms) >= 0.0
