"""Ray starts in a process that has already converted video frames.

``ray.init`` forks Ray's daemons from a thread of its own, running Python in each child
before its exec; the child then drops the other threads' thread-local data. PyAV keeps one
frame converter per thread there, and one built with swscale slice threads waits forever,
when freed in the child, for threads the fork did not copy: ``ray.init`` never returned in
any process that had run an in-process video session (the comparison bench, one big
pytest process). ``VideoConsumer`` converts with one swscale thread, so it cannot.

The scenario runs in a child process (its own session, killed with its process group on
a timeout), so that a regression fails this test instead of hanging the run: a frame is
converted as a session does, on the main thread, then Ray is started as the API does,
from another thread that lives until Ray is shut down: Ray's daemons die when the thread
that started them ends (their parent-death signal), and a scenario whose thread ended
failed now and then ("Failed to connect to GCS within 60 seconds" at the shutdown)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
from pathlib import Path

SCENARIO = """
import threading, time
import av, numpy as np, ray
from orchestrator.arena.video import VideoConsumer
from orchestrator.fleet.cluster import connect
from orchestrator.settings import Settings

consumer = VideoConsumer("http://127.0.0.1:1", "ws", "room", "p")  # never connected
yuv = np.random.default_rng(0).integers(0, 255, (480 * 3 // 2, 640), dtype=np.uint8)
consumer._pending = (av.VideoFrame.from_ndarray(yuv, format="yuv420p"), time.monotonic(), 1,
                     None)
assert consumer.latest().rgb.shape == (480, 640, 3)

started, done = threading.Event(), threading.Event()

def start():  # as the API does (fleet/link.py): the thread lives on, since Ray's
    # daemons get a parent-death signal when the thread that started them ends
    try:
        connect(Settings(workers=2))
    finally:
        started.set()  # a start that raised fails the assert below, not by a timeout
    done.wait()

thread = threading.Thread(target=start, daemon=True)
thread.start()
started.wait()
assert ray.is_initialized()
print("ray is up", flush=True)
ray.shutdown()
done.set()
"""


LOGS = ("gcs_server", "raylet", "python-core-driver")


def ray_log_tails(ray_dir: Path, names: tuple[str, ...] = LOGS, chars: int = 1500) -> str:
    """The end of the daemons' logs, for a failure's message: the private Ray folder is
    deleted after the run, and "Failed to connect to GCS" alone does not say why."""
    parts = []
    for path in sorted(ray_dir.glob("ray/session_2*/logs/*")):  # not session_latest
        if path.name.startswith(names) and path.suffix in (".out", ".err", ".log"):
            text = path.read_text(errors="replace")[-chars:]
            parts.append(f"--- {path.relative_to(ray_dir)}\n{text}")
    return "\n".join(parts) or f"(no Ray logs under {ray_dir})"


def test_ray_comes_up_after_the_process_converted_frames(private_ray_dir: str) -> None:
    ray_dir = Path(tempfile.mkdtemp(prefix="v", dir=private_ray_dir))  # this child's own
    env = {**os.environ, "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0", "RAY_TMPDIR": str(ray_dir)}
    proc = subprocess.Popen([sys.executable, "-c", SCENARIO], env=env, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            start_new_session=True)
    try:
        out, err = proc.communicate(timeout=120)  # seconds normally (4-7 s for Ray here)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)  # the child, its stuck fork, Ray's daemons
        proc.communicate()
        raise AssertionError("ray.init did not return: a forked Ray daemon is stuck\n"
                             + ray_log_tails(ray_dir)) from None
    assert proc.returncode == 0 and "ray is up" in out, (
        f"{err[-3000:]}\n{ray_log_tails(ray_dir)}")
