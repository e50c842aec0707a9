"""Open, start, stop and close N sessions of one design; the runner sees one interface.

``StackDriver`` runs the real orchestrator in this process (``create_app`` on uvicorn, as
``tests.support.orchestrator`` does) against the local Triton: sessions are created and
started over its HTTP API exactly as a client would. Two bench-only hooks, no library
change: the Triton client's ``infer`` is wrapped to time every request (the same span the
loop measures), and each session loop's publish callable (``ControlLoop._publish``, a
private attribute) is wrapped to note the publish time, the values, and the observation of
the newest merged chunk (``loop.recent_chunks[-1]``) -- read synchronously inside the
tick, between the plan decision and the send, so it is the chunk the command came from.
"""

from __future__ import annotations

import abc
import asyncio
import contextlib
import time
import uuid
from collections.abc import Mapping, Sequence
from typing import Any

from orchestrator.sessions.loop import ControlLoop
from orchestrator.sessions.observation import Observation
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

    def flowing(self) -> bool:
        """Every session has published a command computed from a real chunk."""
        return all(any(idx is not None for _, idx, _ in r.publishes[-5:])
                   for r in self.recorders)


def _sum(rows: Sequence[Mapping[str, int]]) -> dict[str, int]:
    out: dict[str, int] = {}
    for row in rows:
        for key, value in row.items():
            out[key] = out.get(key, 0) + int(value)
    return out


class StackDriver(Driver):
    design = "stack"

    def __init__(self, *, model: BenchModel, n: int, arena_url: str, triton_url: str,
                 rate: float, latency_prior_s: float = 0.1) -> None:
        self.model, self.n, self.arena_url, self.rate = model, n, arena_url, rate
        self.settings = Settings(triton_url=triton_url, triton_timeout_s=10.0, max_sessions=64,
                                 latency_prior_s=latency_prior_s)
        self.workspace = f"bench-{uuid.uuid4().hex[:8]}"
        self.ids = [f"stack{i:02d}-{uuid.uuid4().hex[:4]}" for i in range(n)]
        self.recorders = [SessionRecorder() for _ in range(n)]
        self._created: dict[str, dict[str, Any]] = {}
        self._inference: list[tuple[float, float]] = []
        self._cm: contextlib.AbstractAsyncContextManager[Orchestrator] | None = None
        self.orch: Orchestrator | None = None

    async def open(self) -> None:
        self._cm = run_orchestrator(self.settings)
        self.orch = orch = await self._cm.__aenter__()
        self._time_requests(orch.manager.triton)
        for sid, recorder in zip(self.ids, self.recorders, strict=True):
            self._created[sid] = await orch.create_session(
                session_id=sid, policy_path=self.model.name,
                camera_names=list(self.model.contract.cameras),
                arena_server_url=self.arena_url, workspace_id=self.workspace,
                rate_hz=self.rate,
            )
            self._hook_publish(orch.manager.get(sid).loop, recorder)

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

    def counters(self) -> dict[str, int]:
        assert self.orch is not None
        rows = []
        for sid in self._created:
            core = self.orch.manager.get(sid).loop.core.stats()
            rows.append({"ticks": core.ticks, "missed_ticks": core.missed_ticks,
                         "underruns": core.underruns, "commands": core.commands,
                         "inferences": core.chunks, "errors": core.failed_requests})
        return _sum(rows)

    def inferences(self) -> list[tuple[float, float]]:
        return list(self._inference)

    async def triton_statistics(self) -> ModelStatistics | None:
        assert self.orch is not None
        return await self.orch.manager.triton.statistics(self.model.name)


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
