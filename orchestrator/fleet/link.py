"""The API process's line to the fleet: joining Ray, starting or finding the session
workers, and calling them (a worker that is restarting is waited for, briefly; one that
does not answer is a 503 with the reason). The router builds the session API on it."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import threading
import time
from collections.abc import Callable
from typing import Any, TypeVar

import ray
from ray.exceptions import RayError

from orchestrator.fleet.cluster import call_worker, connect, spawn_workers
from orchestrator.fleet.worker import record_error, worker_name
from orchestrator.sessions.errors import DependencyUnavailable, SessionError
from orchestrator.settings import Settings

log = logging.getLogger(__name__)
T = TypeVar("T")

CALL_TIMEOUT_S = 30.0  # a create opens rooms and reads the model: seconds, not more
PROBE_TIMEOUT_S = 3.0
RESTARTING_WAIT_S = 8.0  # a killed worker is back in ~2 s on one machine, 3-5 s elsewhere
BOOT_TIMEOUT_S = 90.0
RETRY_S = (1.0, 2.0, 5.0, 10.0)  # between tries to reach Ray, then every 10 s


class WorkerLink:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._workers: dict[int, Any] = {}  # index -> actor handle
        self._alive: dict[int, dict[str, Any]] = {}
        self._dead: dict[int, str] = {}  # index -> why it does not answer
        self._ray_error: str | None = "not connected yet"
        self._owns_cluster = False
        self._late: asyncio.Task[None] | None = None
        self._hold = threading.Event()

    async def refresh(self) -> None:
        """What to read once joined (the router's listing)."""

    # -- connection ----------------------------------------------------------------------
    async def open(self) -> None:
        """Connect and start (or find) the workers; when Ray cannot be reached the API
        still serves, answering 503 with the reason, and joins once Ray answers."""
        loop = asyncio.get_running_loop()
        outcomes: asyncio.Queue[BaseException | bool] = asyncio.Queue()

        def run() -> None:
            for attempt in itertools.count():
                try:
                    owns = connect(self.settings)
                    self._workers.update(spawn_workers(self.settings))
                except Exception as exc:
                    loop.call_soon_threadsafe(outcomes.put_nowait, exc)
                    # A local start that failed (its GCS did not come up, its folder could
                    # not be made) may have left daemons: gone before the next try.
                    with contextlib.suppress(Exception):
                        ray.shutdown()
                    if self._hold.wait(RETRY_S[min(attempt, len(RETRY_S) - 1)]):
                        return  # closed meanwhile
                    continue
                loop.call_soon_threadsafe(outcomes.put_nowait, owns)
                # Ray's local daemons die with the thread that started them (their parent
                # death signal is per thread): this one lives as long as the connection.
                self._hold.wait()
                return

        # A daemon thread: ray.init retries an unreachable address for minutes, and the
        # process must still be able to exit meanwhile.
        threading.Thread(target=run, name="fleet-connect", daemon=True).start()
        wait_s = self.settings.ray_connect_timeout_s
        try:
            first = await asyncio.wait_for(outcomes.get(), wait_s)
        except TimeoutError:
            self._ray_error = f"no answer within {wait_s:.0f} s (still trying)"
            log.error("fleet: Ray at %s: %s", self._address(), self._ray_error)
        else:
            if not self._failed(first):
                self._owns_cluster = bool(first)
                await self._joined()
                return
        self._late = asyncio.create_task(self._connected_later(outcomes), name="fleet-join")

    def _address(self) -> str:
        return self.settings.ray_address or "(local)"

    def _failed(self, outcome: BaseException | bool) -> bool:
        if not isinstance(outcome, BaseException):
            return False
        self._ray_error = f"{type(outcome).__name__}: {outcome} (trying again)"
        log.error("fleet: Ray at %s: %s", self._address(), self._ray_error)
        return True

    async def _connected_later(self, outcomes: asyncio.Queue[BaseException | bool]) -> None:
        while self._failed(outcome := await outcomes.get()):
            pass
        self._owns_cluster = bool(outcome)
        await self._joined()

    async def _joined(self) -> None:
        self._ray_error = None
        await self._wait_workers()
        await self.refresh()
        log.info("fleet: %d worker(s) on Ray %s (%s)", len(self._workers),
                 ray.get_runtime_context().gcs_address,
                 "started here" if self._owns_cluster else "joined")

    async def _wait_workers(self, timeout_s: float = BOOT_TIMEOUT_S) -> None:
        """At boot, until every worker answers (spawning one takes seconds): sessions are
        placed only on live workers, and none would be live yet."""
        deadline = time.monotonic() + timeout_s
        while len(await self._probe()) < len(self._workers):
            if time.monotonic() > deadline:
                log.warning("fleet: workers not up after %.0f s: %s", timeout_s, self._dead)
                return
            await asyncio.sleep(0.25)

    def _require_ray(self) -> None:
        if self._ray_error is not None:
            raise DependencyUnavailable(
                f"no worker can take sessions: Ray at {self._address()} "
                f"is unreachable ({self._ray_error})"
            )

    async def _kv(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        self._require_ray()
        try:
            return await asyncio.wait_for(asyncio.to_thread(fn, *args, **kwargs),
                                          PROBE_TIMEOUT_S * 2)
        except (TimeoutError, RayError, ConnectionError) as exc:
            raise DependencyUnavailable(f"the fleet registry (Ray) does not answer: {exc!r}"
                                        ) from exc

    async def _ask(self, index: int, method: str, *args: Any,
                   timeout_s: float = CALL_TIMEOUT_S, wait_restart: bool = True) -> Any:
        """Call a worker; a restarting worker is waited for (briefly) unless told not to."""
        self._require_ray()
        handle = self._workers.get(index)
        if handle is None:  # another API replica runs more workers than this one
            try:  # a GCS round trip: off the loop
                handle = await asyncio.to_thread(ray.get_actor, worker_name(index),
                                                 namespace=self.settings.ray_namespace)
            except ValueError as exc:
                raise DependencyUnavailable(f"{worker_name(index)} does not exist") from exc
            self._workers[index] = handle
        reply = await call_worker(handle, worker_name(index), method, *args,
                                  timeout_s=timeout_s, wait_restart_s=RESTARTING_WAIT_S
                                  if wait_restart else 0.0)
        if isinstance(reply, dict) and "error" in reply:
            raise record_error(reply["error"])
        return reply["ok"] if isinstance(reply, dict) and "ok" in reply else reply

    async def _probe(self) -> dict[int, dict[str, Any]]:
        self._require_ray()
        indices = sorted(self._workers)

        async def one(index: int) -> dict[str, Any] | BaseException:
            try:
                return dict(await self._ask(index, "health", timeout_s=PROBE_TIMEOUT_S,
                                            wait_restart=False))
            except SessionError as exc:
                return exc

        results = await asyncio.gather(*(one(i) for i in indices))
        self._alive = {i: r for i, r in zip(indices, results, strict=True) if isinstance(r, dict)}
        self._dead = {i: getattr(r, "message", str(r))
                      for i, r in zip(indices, results, strict=True)
                      if isinstance(r, BaseException)}
        return self._alive
