"""Several Triton servers serving the same repository (replicas) behind one client.

Each request goes to the preferred replica (a worker picks its own, so workers spread over
the replicas); a replica that fails to answer is set aside for a cool-down (doubling while
it keeps failing) and the request is retried once on the next one, within the same deadline.
With another replica to go to, the first try gets half of that deadline: a replica that hangs
(accepts, never answers) would otherwise take all of it and leave nothing for the retry. A
replica going away costs no session: its requests move to the others, and it is used again
once it answers.

Tensors travel over plain gRPC: shared-memory regions are registered per server, and a
request may land on any replica.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

from orchestrator.triton.client import ModelStatistics, TritonClient
from orchestrator.triton.errors import InferenceTimeout, ModelNotReady, TritonUnavailable

log = logging.getLogger(__name__)

# Failures worth another replica: it may be up, fast, or have the model loaded.
_RETRYABLE = (TritonUnavailable, InferenceTimeout, ModelNotReady)


def parse_urls(value: str) -> list[str]:
    """``host:port[,host:port...]`` -> the list, in order; a clear error for an empty one."""
    urls = [u.strip() for u in value.split(",") if u.strip()]
    if not urls:
        raise ValueError(f"no Triton address in {value!r}")
    return urls


class ReplicatedTriton(TritonClient):
    """A :class:`TritonClient` whose calls go to one of several replicas.

    ``preferred``: index of the replica tried first (``worker index % len(urls)``).
    ``cooldown_s``: how long a failing replica is tried last.
    """

    def __init__(self, urls: list[str], *, preferred: int = 0, timeout_s: float = 1.0,
                 control_timeout_s: float = 10.0, cooldown_s: float = 2.0,
                 keepalive_s: float = 0.0) -> None:
        if not urls:
            raise ValueError("ReplicatedTriton needs at least one URL")
        super().__init__(",".join(urls), timeout_s=timeout_s,
                         control_timeout_s=control_timeout_s, shared_memory=False)
        self.replicas = [TritonClient(u, timeout_s=timeout_s, control_timeout_s=control_timeout_s,
                                      keepalive_s=keepalive_s) for u in urls]
        self.preferred = preferred % len(urls)
        self.cooldown_s = cooldown_s
        self._down_until = [0.0] * len(urls)
        self._failures = [0] * len(urls)  # in a row: the cool-down doubles with each
        self.failovers = 0  # requests answered by another replica than the first tried

    def order(self) -> list[int]:
        """Replica indices to try: preferred first, then the rest; cooling ones last."""
        n = len(self.replicas)
        ring = [(self.preferred + i) % n for i in range(n)]
        now = time.monotonic()
        return [i for i in ring if self._down_until[i] <= now] + \
               [i for i in ring if self._down_until[i] > now]

    async def _call(self, what: str, method: str, *args: Any, timeout_s: float | None = None,
                    **kwargs: Any) -> Any:
        timeout = self.control_timeout_s if timeout_s is None else timeout_s
        deadline = time.monotonic() + timeout  # one deadline covers the retry too
        order = self.order()[:2]
        error: Exception = TritonUnavailable(f"{what}: no replica tried")
        for attempt, index in enumerate(order):
            replica = self.replicas[index]
            left = deadline - time.monotonic()
            if attempt and left <= 0.01 * timeout:
                raise error
            budget = left / 2 if attempt + 1 < len(order) else left
            try:
                result = await replica._call(what, method, *args, timeout_s=budget, **kwargs)
            except _RETRYABLE as exc:
                error = exc
                if not isinstance(exc, ModelNotReady):
                    self._failures[index] += 1
                    backoff = self.cooldown_s * 2 ** min(self._failures[index] - 1, 4)
                    self._down_until[index] = time.monotonic() + backoff
                if attempt + 1 < len(order):
                    log.warning("Triton replica %s failed (%s); retrying on %s", replica.url,
                                exc, self.replicas[order[attempt + 1]].url)
                continue
            self._down_until[index], self._failures[index] = 0.0, 0
            if attempt:
                self.failovers += 1
            return result
        raise error

    # Model control reaches every replica; statistics add up over them.
    async def load_model(self, name: str) -> None:
        self._forget(name)
        await self._each("load_model", name)

    async def unload_model(self, name: str) -> None:
        self._forget(name)
        await self._each("unload_model", name)

    async def _each(self, method: str, *args: Any) -> None:
        results = await asyncio.gather(*(getattr(r, method)(*args) for r in self.replicas),
                                       return_exceptions=True)
        errors = [r for r in results if isinstance(r, BaseException)]
        if len(errors) == len(results):
            raise errors[0]

    async def statistics(self, name: str, version: str = "", timeout_s: float | None = None
                         ) -> ModelStatistics:
        results = await asyncio.gather(*(r.statistics(name, version, timeout_s)
                                         for r in self.replicas), return_exceptions=True)
        found = [r for r in results if isinstance(r, ModelStatistics)]
        if not found:
            error = next(r for r in results if isinstance(r, BaseException))
            raise error
        sizes: dict[int, int] = {}
        for stats in found:
            for size, count in stats.batch_sizes.items():
                sizes[size] = sizes.get(size, 0) + count
        return ModelStatistics(sum(s.inference_count for s in found),
                               sum(s.execution_count for s in found), dict(sorted(sizes.items())))

    async def replica_status(self) -> list[dict[str, Any]]:
        ready = await asyncio.gather(*(r.is_server_ready(timeout_s=1.0) for r in self.replicas))
        return [{"url": r.url, "ready": ok, "preferred": i == self.preferred}
                for i, (r, ok) in enumerate(zip(self.replicas, ready, strict=True))]

    async def close(self) -> None:
        await asyncio.gather(*(r.close() for r in self.replicas), return_exceptions=True)
        await super().close()


def make_triton(url: str, *, preferred: int = 0, timeout_s: float = 1.0,
                shared_memory: bool = False, keepalive_s: float = 0.0) -> TritonClient:
    """One client for ``url``; a comma-separated list gives a :class:`ReplicatedTriton`."""
    urls = parse_urls(url)
    if len(urls) == 1:
        return TritonClient(urls[0], timeout_s=timeout_s, shared_memory=shared_memory,
                            keepalive_s=keepalive_s)
    if shared_memory:
        log.warning("Triton shared memory is off with several replicas (%s)", url)
    return ReplicatedTriton(urls, preferred=preferred, timeout_s=timeout_s,
                            keepalive_s=keepalive_s)
