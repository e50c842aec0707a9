"""The soak's measuring parts (``bench.soak``): the processes it samples are found for real
(a real process tree; a process found by its command line, as session workers are), and
the RSS slope is an ordinary least-squares fit after the warm-up."""

from __future__ import annotations

import os
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator

import psutil
import pytest

from bench.soak import orchestrator_processes, sample, slope_per_10min

_TREE = """
import subprocess, sys, time
child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
print(child.pid, flush=True)
time.sleep(60)
"""


@pytest.fixture
def tree() -> Iterator[tuple[subprocess.Popen[str], int]]:
    parent = subprocess.Popen([sys.executable, "-c", _TREE], stdout=subprocess.PIPE, text=True)
    assert parent.stdout is not None
    child = int(parent.stdout.readline())
    try:
        yield parent, child
    finally:
        for p in psutil.Process(parent.pid).children(recursive=True):
            p.kill()
        parent.kill()
        parent.wait(10)


def test_the_api_process_and_its_descendants_are_sampled(
        tree: tuple[subprocess.Popen[str], int]) -> None:
    parent, child = tree
    found = {p.pid for p in orchestrator_processes(parent.pid, [], [])}
    assert found == {parent.pid, child}
    measured = sample(orchestrator_processes(parent.pid, [], []))
    assert set(measured["processes"]) == {str(parent.pid), str(child)}
    assert measured["rss_mib"] == pytest.approx(
        sum(p["rss_mib"] for p in measured["processes"].values()), abs=0.05)
    assert measured["rss_mib"] > 0 and measured["threads"] >= 2


def test_a_worker_outside_the_tree_is_found_by_its_command_line(
        tree: tuple[subprocess.Popen[str], int]) -> None:
    parent, _ = tree
    tag = f"soak-worker-{uuid.uuid4().hex[:8]}"
    worker = subprocess.Popen([sys.executable, "-c", f"import time; time.sleep(60)  # {tag}"])
    try:
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            found = {p.pid for p in orchestrator_processes(parent.pid, [], [tag])}
            if worker.pid in found:
                break
            time.sleep(0.1)
        assert worker.pid in found
        assert worker.pid not in {p.pid for p in orchestrator_processes(parent.pid, [], [])}
        # The soak's own process, whose command line holds the --match strings, is not one.
        own = " ".join(psutil.Process().cmdline())
        assert os.getpid() not in {p.pid for p in orchestrator_processes(parent.pid, [], [own])}
        assert worker.pid in {p.pid for p in orchestrator_processes(parent.pid, [worker.pid],
                                                                    [])}
    finally:
        worker.kill()
        worker.wait(10)


def test_the_slope_is_fitted_after_the_warm_up_only() -> None:
    # Fast growth during the warm-up, then 1 MiB per minute: 10 MiB per 10 minutes.
    samples = [{"t_s": t, "rss_mib": 100.0 + (t * 2 if t < 60 else 120 + (t - 60) / 60)}
               for t in range(0, 600, 10)]
    fit = slope_per_10min(samples, warmup_s=60)
    assert fit["mib_per_10min"] == pytest.approx(10.0, abs=1e-6)
    assert fit["from_s"] == 60 and fit["samples"] == 54
    assert slope_per_10min(samples[:8], warmup_s=60)["mib_per_10min"] is None
