"""Open, start, stop and close N sessions of one design; the runner sees one interface.

``StackDriver`` runs the real orchestrator in this process (``create_app`` on uvicorn, as
``tests.support.orchestrator`` does) against the local Triton: sessions are created and
started over its HTTP API exactly as a client would. Two bench-only hooks, no library
change: the Triton client's ``infer`` is wrapped to time every request (the same span the
loop measures), and each session loop's publish callable (``ControlLoop._publish``, a
private attribute) is wrapped to note the publish time, the values, and the observation of
the newest merged chunk (``loop.recent_chunks[-1]``) -- read synchronously inside the
tick, between the plan decision and the send, so it is the chunk the command came from.

Designs plug in through ``DESIGNS`` (name -> factory of a ``Driver``): ``stack`` (one tick
scheduler per process and rate), ``stack_per_session`` (the earlier design: each session its
own timer, awaiting its own publish; ``ORCHESTRATOR_TICK_SCHEDULER=per_session``),
``stack_nice10`` (``stack`` with its event-loop thread at nice -10), ``stack_fifo`` (that
thread at SCHED_FIFO 50) and the per-session baselines. A driver's ``control_cpu()``
reports the tick path's thread CPU (tick: decision, safety, hand-off; send: the command's
write to its connection), measured by wrapping each loop's ``_safe_tick`` and its outbox's
``send_pending`` (bench-only hooks).
"""

from __future__ import annotations

import abc
import asyncio
import contextlib
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from orchestrator.sessions.loop import ControlLoop
from orchestrator.sessions.observation import Observation
from orchestrator.sessions.scheduler import schedulers
from orchestrator.settings import Settings
from orchestrator.triton.client import ModelStatistics, TritonClient
from tests.support.orchestrator import Orchestrator, run_orchestrator

from .baseline import BaselineSession
from .fleet import RobotRooms
from .measure import SessionRecorder
from .models import BenchModel, make_runner


class Driver(abc.ABC):
    design: str
    recorders: list[SessionRecorder]

    @abc.abstractmethod
    async def open(self) -> None: ...
    @abc.abstractmethod
    def rooms(self) -> list[RobotRooms]: ...
    @abc.abstractmethod
    async def start(self) -> None: ...
    @abc.abstractmethod
    async def stop(self) -> None: ...
    @abc.abstractmethod
    async def close(self) -> None: ...
    @abc.abstractmethod
    def counters(self) -> dict[str, int]:
        """Cumulative counts summed over sessions: ticks, missed_ticks, underruns, ..."""
    @abc.abstractmethod
    def inferences(self) -> list[tuple[float, float]]:
        """(done at, seconds) of every inference request."""

    async def triton_statistics(self) -> ModelStatistics | None:
        return None

    def control_cpu(self) -> dict[str, float]:
        """Cumulative thread CPU seconds of the tick path: tick_s, send_s (where known)."""
        return {}

    def scheduler_stats(self) -> dict[str, float]:
        """Cumulative figures of the shared tick schedulers, if the design has them."""
        return {}

    async def sample(self) -> None:
        """Refresh what ``counters()`` and ``flowing()`` read, where that takes I/O."""
        return None

    def cpu_groups(self) -> dict[str, tuple[int | None, bool]]:
        """Processes of the design besides this one, for the CPU meter: name -> (pid, with
        its children)."""
        return {}

    def flowing(self) -> bool:
        """Every session has published a command computed from a real chunk."""
        return all(any(idx is not None for _, idx, _ in r.publishes[-5:])
                   for r in self.recorders)


def orchestrator_settings(triton_url: str, latency_prior_s: float,
                          stale_after_s: float | None, **more: Any) -> Settings:
    """The orchestrator's settings for a bench design (``more``: the design's own)."""
    fields: dict[str, Any] = {"triton_url": triton_url, "triton_timeout_s": 10.0,
                              "max_sessions": 128, "latency_prior_s": latency_prior_s, **more}
    if stale_after_s is not None:
        fields["stale_after_s"] = stale_after_s
    return Settings(**fields)


def _sum(rows: Sequence[Mapping[str, int]]) -> dict[str, int]:
    out: dict[str, int] = {}
    for row in rows:
        for key, value in row.items():
            out[key] = out.get(key, 0) + int(value)
    return out


class _CpuProbe:
    """Thread CPU of one loop's tick work and sends (``time.thread_time``: this thread).

    ``thread_time`` is a system call: a pair around every tick of every session adds its
    own cost to what it measures. Under the shared scheduler the ticks are not wrapped:
    the scheduler times each pass as a whole (one pair per pass, see ``control_cpu``)."""

    def __init__(self) -> None:
        self.tick_s = self.send_s = 0.0

    def wrap(self, loop: ControlLoop, ticks: bool = True) -> None:
        tick, send = loop._safe_tick, loop.outbox.send_pending

        def timed_tick(*args: Any) -> None:
            t = time.thread_time()
            try:
                tick(*args)
            finally:
                self.tick_s += time.thread_time() - t

        async def timed_send() -> None:
            t = time.thread_time()
            try:
                await send()
            finally:
                self.send_s += time.thread_time() - t

        if ticks:
            loop._safe_tick = timed_tick  # type: ignore[method-assign,assignment]
        loop.outbox.send_pending = timed_send  # type: ignore[method-assign]


class OrchestratorDriver(Driver):
    """A design that runs the real orchestrator in this process and drives its sessions
    over its HTTP API, as a client would (the stack, the session workers)."""

    def __init__(self, *, model: BenchModel, n: int, arena_url: str, rate: float,
                 settings: Settings, id_prefix: str) -> None:
        self.model, self.n, self.arena_url, self.rate = model, n, arena_url, rate
        self.settings = settings
        self.workspace = f"bench-{uuid.uuid4().hex[:8]}"
        self.ids = [f"{id_prefix}{i:02d}-{uuid.uuid4().hex[:4]}" for i in range(n)]
        self.recorders = [SessionRecorder() for _ in range(n)]
        self._created: dict[str, dict[str, Any]] = {}
        self._cm: contextlib.AbstractAsyncContextManager[Orchestrator] | None = None
        self.orch: Orchestrator | None = None

    async def _boot(self, start_timeout_s: float = 30.0) -> Orchestrator:
        self._cm = run_orchestrator(self.settings, start_timeout_s=start_timeout_s)
        self.orch = await self._cm.__aenter__()
        return self.orch

    async def _create_sessions(self) -> None:
        assert self.orch is not None
        for sid in self.ids:
            self._created[sid] = await self.orch.create_session(
                session_id=sid, policy_path=self.model.name,
                camera_names=list(self.model.contract.cameras),
                arena_server_url=self.arena_url, workspace_id=self.workspace,
                rate_hz=self.rate,
            )

    def rooms(self) -> list[RobotRooms]:
        return [RobotRooms(c["workspace_id"], c["joint_input_room_id"],
                           c["joint_output_room_id"], dict(c["camera_room_ids"]))
                for c in self._created.values()]

    async def _post_all(self, action: str) -> None:
        assert self.orch is not None
        http = self.orch.http
        for sid in self._created:
            response = await http.post(f"/sessions/{sid}/{action}")
            if response.status_code != 200:
                raise RuntimeError(f"{action} {sid}: {response.status_code} {response.text}")

    async def start(self) -> None:
        await self._post_all("start")

    async def stop(self) -> None:
        await self._post_all("stop")

    async def close(self) -> None:
        if self.orch is not None:
            for sid in list(self._created):
                with contextlib.suppress(Exception):
                    await self.orch.http.delete(f"/sessions/{sid}")
        if self._cm is not None:
            await self._cm.__aexit__(None, None, None)
        self._cm = self.orch = None

    async def triton_statistics(self) -> ModelStatistics | None:
        assert self.orch is not None
        return await self.orch.manager.triton.statistics(self.model.name)


class StackDriver(OrchestratorDriver):
    design = "stack"

    def __init__(self, *, model: BenchModel, n: int, arena_url: str, triton_url: str,
                 rate: float, latency_prior_s: float = 0.1, tick_scheduler: str = "shared",
                 stale_after_s: float | None = None, control_nice: int | None = None,
                 control_realtime: int | None = None) -> None:
        settings = orchestrator_settings(triton_url, latency_prior_s, stale_after_s,
                                         tick_scheduler=tick_scheduler,
                                         control_nice=control_nice,
                                         control_realtime_priority=control_realtime)
        super().__init__(model=model, n=n, arena_url=arena_url, rate=rate, settings=settings,
                         id_prefix="stack")
        self.design = "stack" if tick_scheduler == "shared" else f"stack_{tick_scheduler}"
        if control_nice is not None:
            self.design += f"_nice{-control_nice}"
        if control_realtime is not None:
            self.design += "_fifo"
        self._probes = [_CpuProbe() for _ in range(n)]
        self._inference: list[tuple[float, float]] = []

    async def open(self) -> None:
        orch = await self._boot()
        self._time_requests(orch.manager.triton)
        await self._create_sessions()
        for sid, recorder, probe in zip(self.ids, self.recorders, self._probes, strict=True):
            self._hook_publish(self._loop(sid), recorder)
            probe.wrap(self._loop(sid), ticks=self.settings.tick_scheduler != "shared")

    def _loop(self, sid: str) -> ControlLoop:
        assert self.orch is not None
        loop = self.orch.manager.get(sid).loop
        if loop is None:
            raise RuntimeError(f"session {sid} has no control loop (model not bound)")
        return loop

    def _time_requests(self, client: TritonClient) -> None:
        infer = client.infer

        async def timed(*args: Any, **kwargs: Any) -> Any:
            started = time.monotonic()
            out = await infer(*args, **kwargs)
            done = time.monotonic()
            self._inference.append((done, done - started))
            return out

        client.infer = timed  # type: ignore[method-assign]

    @staticmethod
    def _hook_publish(loop: ControlLoop, recorder: SessionRecorder) -> None:
        def noted(values: Mapping[str, float], at: float, sent: bool,
                  source: Observation | None) -> None:
            recorder.note_publish(at, values, source)

        loop.publish_observers.append(noted)

    def counters(self) -> dict[str, int]:
        assert self.orch is not None
        rows = []
        for sid in self._created:
            core = self._loop(sid).core.stats()
            rows.append({"ticks": core.ticks, "missed_ticks": core.missed_ticks,
                         "underruns": core.underruns, "commands": core.commands,
                         "inferences": core.chunks, "errors": core.failed_requests})
        return _sum(rows)

    def inferences(self) -> list[tuple[float, float]]:
        return list(self._inference)

    def control_cpu(self) -> dict[str, float]:
        send_s = sum(p.send_s for p in self._probes)
        if self.settings.tick_scheduler == "shared":
            return {"tick_s": self.scheduler_stats().get("pass_cpu_s", 0.0), "send_s": send_s}
        return {"tick_s": sum(p.tick_s for p in self._probes), "send_s": send_s}

    def scheduler_stats(self) -> dict[str, float]:
        if self.settings.tick_scheduler != "shared":
            return {}
        found = [s for s in schedulers() if s.rate_hz == self.rate]
        return {"schedulers": len(found),
                "passes": sum(s.stats.passes for s in found),
                "missed_passes": sum(s.stats.missed_passes for s in found),
                "member_ticks": sum(s.stats.member_ticks for s in found),
                "pass_cpu_s": sum(s.stats.pass_cpu_s for s in found)} if found else {}


class BaselineDriver(Driver):
    def __init__(self, *, model: BenchModel, n: int, arena_url: str, rate: float,
                 runtime: str, threads: int) -> None:
        self.design = f"baseline_{runtime}"
        self.model, self.n, self.arena_url, self.rate = model, n, arena_url, rate
        self.runtime, self.threads = runtime, threads
        self.workspace = f"bench-{uuid.uuid4().hex[:8]}"
        self.recorders = [SessionRecorder() for _ in range(n)]
        self.sessions: list[BaselineSession] = []

    async def open(self) -> None:
        for i, recorder in enumerate(self.recorders):
            # Each session loads its own copy of the model, as in the per-session design.
            runner = await asyncio.to_thread(make_runner, self.runtime, self.model, self.threads)
            session = BaselineSession(
                session_id=f"base{i:02d}-{uuid.uuid4().hex[:4]}", workspace=self.workspace,
                arena_url=self.arena_url, model=self.model, runner=runner, rate=self.rate,
                recorder=recorder,
            )
            self.sessions.append(session)
            await session.open()

    def rooms(self) -> list[RobotRooms]:
        return [s.rooms() for s in self.sessions]

    async def start(self) -> None:
        for session in self.sessions:
            await session.start()

    async def stop(self) -> None:
        await asyncio.gather(*(s.stop() for s in self.sessions))

    async def close(self) -> None:
        await asyncio.gather(*(s.close() for s in self.sessions), return_exceptions=True)
        self.sessions.clear()

    def counters(self) -> dict[str, int]:
        return _sum([s.stats() for s in self.sessions])

    def inferences(self) -> list[tuple[float, float]]:
        return [row for r in self.recorders for row in r.inferences]


@dataclass(frozen=True)
class DesignContext:
    """What every design gets for one run."""

    model: BenchModel
    n: int
    arena_url: str
    triton_url: str
    rate: float
    latency_prior_s: float
    ort_threads: int
    stale_after_s: float | None = None


def _stack(tick_scheduler: str, control_nice: int | None = None,
           control_realtime: int | None = None) -> Callable[[DesignContext], Driver]:
    def make(ctx: DesignContext) -> Driver:
        return StackDriver(model=ctx.model, n=ctx.n, arena_url=ctx.arena_url,
                           triton_url=ctx.triton_url, rate=ctx.rate,
                           latency_prior_s=ctx.latency_prior_s, tick_scheduler=tick_scheduler,
                           stale_after_s=ctx.stale_after_s, control_nice=control_nice,
                           control_realtime=control_realtime)
    return make


def _baseline(runtime: str) -> Callable[[DesignContext], Driver]:
    def make(ctx: DesignContext) -> Driver:
        return BaselineDriver(model=ctx.model, n=ctx.n, arena_url=ctx.arena_url,
                              rate=ctx.rate, runtime=runtime, threads=ctx.ort_threads)
    return make


# name -> factory. Another design adds itself here (bench/comparison/workers.py).
DESIGNS: dict[str, Callable[[DesignContext], Driver]] = {
    "stack_per_session": _stack("per_session"),
    "stack": _stack("shared"),
    # The same, its event-loop thread at nice -10 (ORCHESTRATOR_CONTROL_NICE; needs root or
    # CAP_SYS_NICE): ticks first when the machine's cores are oversubscribed.
    "stack_nice10": _stack("shared", control_nice=-10),
    # Its event-loop thread real time (ORCHESTRATOR_CONTROL_REALTIME_PRIORITY=50, SCHED_FIFO):
    # it preempts everything else on the machine when a tick falls due.
    "stack_fifo": _stack("shared", control_realtime=50),
    "baseline_onnxruntime": _baseline("onnxruntime"),
    "baseline_pytorch": _baseline("pytorch"),
}
