"""The session-worker design: the orchestrator with ``ORCHESTRATOR_WORKERS=W``, its sessions
in W Ray actor processes (a local Ray instance started by the API, as ``make run`` would with
that setting), created and started over its HTTP API.

The loops run in other processes, so the in-process hooks of ``StackDriver`` (publish times,
the Triton call, thread CPU) do not reach them. What this driver measures instead:

- jitter at the robot (command arrivals; the runner uses it when a design has no publish
  times, and says so in the result's ``jitter_source``),
- ticks, missed ticks, underruns and commands from each session's stats (``GET
  /sessions/{id}``, read right before and after the window),
- Triton's batch statistics (the API's own client asks the same server),
- each worker process's CPU (pids from ``/health``): the control plane per session-tick is
  the workers' CPU over the ticks in the window (ticks, joint and video handling, video
  decoding: everything a worker does).
"""

from __future__ import annotations

import uuid
from typing import Any

from .drivers import DESIGNS, DesignContext, Driver, OrchestratorDriver, orchestrator_settings
from .models import BenchModel

BOOT_TIMEOUT_S = 180.0  # Ray's daemons and W actor processes on a loaded 2-core machine


class WorkersDriver(OrchestratorDriver):
    def __init__(self, *, model: BenchModel, n: int, arena_url: str, triton_url: str,
                 rate: float, workers: int, latency_prior_s: float = 0.1,
                 stale_after_s: float | None = None) -> None:
        settings = orchestrator_settings(
            triton_url, latency_prior_s, stale_after_s, workers=workers,
            worker_max_sessions=128, ray_namespace=f"bench-{uuid.uuid4().hex[:6]}",
            log_level="WARNING")
        # Its recorders stay empty (no publish times: see above).
        super().__init__(model=model, n=n, arena_url=arena_url, rate=rate, settings=settings,
                         id_prefix="work")
        self.design = f"workers_{workers}"
        self._stats: dict[str, dict[str, Any]] = {}
        self._worker_pids: dict[str, int] = {}

    async def open(self) -> None:
        orch = await self._boot(BOOT_TIMEOUT_S)
        health = (await orch.http.get("/health")).json()
        workers = health.get("workers", {})
        if not workers or not all(w.get("alive") for w in workers.values()):
            raise RuntimeError(f"workers not all up: {workers}")
        self._worker_pids = {name: int(w["pid"]) for name, w in workers.items()}
        await self._create_sessions()

    async def sample(self) -> None:
        assert self.orch is not None
        for sid in self._created:
            response = await self.orch.http.get(f"/sessions/{sid}")
            if response.status_code == 200:
                self._stats[sid] = response.json()["stats"]

    def flowing(self) -> bool:
        return len(self._stats) == self.n and all(
            s.get("inference_count", 0) > 0 and s.get("commands_sent", 0) > 0
            for s in self._stats.values())

    def counters(self) -> dict[str, int]:
        keys = {"ticks": "ticks", "missed_ticks": "missed_ticks", "underruns": "plan_underruns",
                "commands": "commands_sent", "inferences": "inference_count",
                "errors": "errors"}
        return {mine: sum(int(s.get(theirs, 0)) for s in self._stats.values())
                for mine, theirs in keys.items()}

    def inferences(self) -> list[tuple[float, float]]:
        return []  # timed inside the workers; their stats carry p50/p99 per session

    def cpu_groups(self) -> dict[str, tuple[int | None, bool]]:
        return {name: (pid, False) for name, pid in self._worker_pids.items()}


def _workers(count: int) -> Any:
    def make(ctx: DesignContext) -> Driver:
        return WorkersDriver(model=ctx.model, n=ctx.n, arena_url=ctx.arena_url,
                             triton_url=ctx.triton_url, rate=ctx.rate, workers=count,
                             latency_prior_s=ctx.latency_prior_s,
                             stale_after_s=ctx.stale_after_s)
    return make


# One worker per core of this 2-core machine, and one alone (the process split without the
# parallelism).
DESIGNS.update({"workers_1": _workers(1), "workers_2": _workers(2)})
