"""CPU of the tick path per session-tick, offline: the real ControlLoop, no network.

    python -m bench.tick_bench [--sessions 16] [--ticks 3000] [--repeat 3] [--cold]

N sessions are ticked in turn at every grid tick, as the shared scheduler does (decision,
safety, metrics, hand-off to the outbox), then each outbox sends to a no-op publish, and
refill requests are answered at once by an in-process stand-in for Triton (a chunk that
continues the plan smoothly, so the safety layer intervenes nowhere). The clock is virtual
(tick k runs at its deadline); cameras and joints report fresh. Each phase is timed with
``time.perf_counter`` around it (``thread_time`` is a system call, and costs tens of
microseconds on a busy machine): run it on an idle machine. ``--cold`` runs other work
between passes (JSON parsing and a sweep over 16 MiB), as the event loop's RTP, joint and
HTTP handling does in situ, so each pass starts with caches holding something else. Writes
bench/results/tick_path.json.

It only uses the loop's constructor and its tick and send entry points, so the same file
runs against an older checkout (``PYTHONPATH=<checkout> python bench/tick_bench.py``): that
is how a change to the tick path is compared with its parent, alternating, in one run.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import platform
import statistics
import time
from pathlib import Path
from typing import Any

import numpy as np

from orchestrator.arena.video import Frame
from orchestrator.control.timing import TickClock
from orchestrator.sessions.config import LoopSettings
from orchestrator.sessions.loop import ControlLoop
from orchestrator.sessions.policy import PolicyRef
from orchestrator.triton.model_contract import ModelContract

RESULTS = Path(__file__).parent / "results" / "tick_path.json"
JOINTS = tuple(f"{j}.pos" for j in ("shoulder_pan", "shoulder_lift", "elbow_flex",
                                    "wrist_flex", "wrist_roll", "gripper"))
RATE = 30.0


class _Now:
    """The virtual clock's current instant, shared by the stand-ins."""

    t = 0.0


class _Camera:
    def __init__(self, now: _Now, height: int, width: int) -> None:
        self.now, self.seq = now, 0
        self.rgb = np.zeros((height, width, 3), dtype=np.uint8)

    def newest_arrival(self) -> float:
        return self.now.t - 0.02

    def latest(self) -> Frame:
        self.seq += 1
        return Frame(rgb=self.rgb, arrived_at=self.now.t - 0.02, seq=self.seq)


class _Triton:
    """Answers at once with a chunk that continues from the observation's tick."""

    def __init__(self, chunk_size: int) -> None:
        self.h = chunk_size

    async def infer(self, name: str, inputs: Any, *, version: Any = None,
                    timeout_s: float | None = None) -> np.ndarray:
        base = 10.0 + 0.001 * np.arange(self.h, dtype=np.float32)[:, None]
        return np.repeat(base, len(JOINTS), axis=1)[None]


async def _publish(_: Any) -> bool:
    return True


def _loops(n: int, now: _Now, chunk: int, image: tuple[int, int]) -> list[ControlLoop]:
    contract = ModelContract(
        name="bench", state_names=JOINTS, action_names=JOINTS, cameras=("front",),
        image_sizes={"front": image}, chunk_size=chunk, n_action_steps=chunk, fps=RATE)
    loops = []
    for i in range(n):
        loop = ControlLoop(
            session_id=f"tick-bench-{i}", contract=contract, policy=PolicyRef("bench", ""),
            settings=LoopSettings(rate_hz=RATE), aliases={}, triton=_Triton(chunk),  # type: ignore[arg-type]
            cameras={"front": _Camera(now, *image)}, publish=_publish,
            joints_alive=lambda: True)
        loop.on_joints({name: 10.0 for name in JOINTS})
        loops.append(loop)
    return loops


class _OtherWork:
    """Unrelated Python and memory traffic between two passes (``--cold``)."""

    def __init__(self) -> None:
        self.texts = [json.dumps({f"k{i}": list(range(20)), "s": "x" * 50}) for i in range(600)]
        self.memory = bytearray(16 * 1024 * 1024)

    def __call__(self) -> None:
        for text in self.texts:
            json.loads(text)
        memory = self.memory
        for i in range(0, len(memory), 64):  # one touch per cache line
            memory[i] ^= 1


async def run(sessions: int, ticks: int, chunk: int, image: tuple[int, int],
              cold: bool = False) -> dict[str, Any]:
    other_work = _OtherWork() if cold else None
    now = _Now()
    loops = _loops(sessions, now, chunk, image)
    clock = TickClock(0.0, RATE)
    tick_s: list[float] = []
    send_s: list[float] = []
    answer_s: list[float] = []
    perf = time.perf_counter
    warmup = min(300, ticks // 5)
    for k in range(ticks + warmup):
        now.t = clock.deadline(k)
        if other_work is not None:
            other_work()
        t0 = perf()
        for loop in loops:
            loop._tick(k, now.t, clock)
        t1 = perf()
        for _ in range(3):  # the inference tasks: snapshot inputs, "infer", merge
            await asyncio.sleep(0)
        t2 = perf()
        for loop in loops:
            await loop.outbox.send_pending()
        t3 = perf()
        if k >= warmup:
            tick_s.append((t1 - t0) / sessions)
            answer_s.append((t2 - t1) / sessions)
            send_s.append((t3 - t2) / sessions)
    commands = sum(loop.counters.commands_sent for loop in loops)
    underruns = sum(loop.core.stats().underruns for loop in loops)
    for loop in loops:
        await loop.stop()

    def us(values: list[float]) -> dict[str, float]:
        return {"mean": round(statistics.fmean(values) * 1e6, 2),
                "p50": round(statistics.median(values) * 1e6, 2)}

    return {"sessions": sessions, "ticks": ticks, "chunk_size": chunk, "cold": cold,
            "commands": commands, "underruns": underruns,
            "tick_us_per_session_tick": us(tick_s),
            "requests_and_merges_us_per_session_tick": us(answer_s),
            "send_handoff_us_per_session_tick": us(send_s)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sessions", type=int, default=16)
    parser.add_argument("--ticks", type=int, default=3000)
    parser.add_argument("--chunk", type=int, default=100)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--cold", action="store_true",
                        help="other work between passes (caches hold something else)")
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()
    rows = [asyncio.run(run(args.sessions, args.ticks, args.chunk, (96, 128), args.cold))
            for _ in range(args.repeat)]
    result = {"machine": platform.platform(), "python": platform.python_version(),
              "rate_hz": RATE, "runs": rows}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2))
    for row in rows:
        print(json.dumps(row))


if __name__ == "__main__":
    main()
