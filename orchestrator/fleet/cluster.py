"""Joining Ray (the cluster at ``ORCHESTRATOR_RAY_ADDRESS`` or a local one on loopback) and
starting the session workers there."""

from __future__ import annotations

import asyncio
import os
import time
from typing import Any

import ray
from ray.exceptions import ActorUnavailableError, RayError

from orchestrator.fleet.worker import SessionWorker, worker_name
from orchestrator.sessions.errors import DependencyUnavailable
from orchestrator.settings import Settings

# Ray's raylet starts worker processes at nice 15 (its worker_niceness) unless their runtime
# environment says otherwise: a session worker's ticks would lose the CPU to every ordinary
# process beside them (Triton, a room server, robots). Started like the API, at the raylet's
# own priority; ORCHESTRATOR_CONTROL_NICE then applies in the worker as in the API's process.
WORKER_RUNTIME_ENV: dict[str, Any] = {"env_vars": {"RAY_worker_niceness": "0"}}


def connect(settings: Settings) -> bool:
    """Join the cluster at ``ray_address`` or start a local one; True when we started it."""
    if ray.is_initialized():
        return False
    common: dict[str, Any] = {"namespace": settings.ray_namespace, "logging_level": "WARNING",
                              "configure_logging": False}
    if settings.ray_address:
        ray.init(address=settings.ray_address, **common)
        return False
    # address="local": never a stale cluster from Ray's default temp folder.
    ray.init(address="local", _node_ip_address="127.0.0.1", include_dashboard=False,
             num_cpus=max(os.cpu_count() or 1, settings.workers), **common)
    return True


def spawn_workers(settings: Settings) -> dict[int, Any]:
    """Handles of the ``ORCHESTRATOR_WORKERS`` named, detached workers: created here, or
    found when another API process already started them. Ray restarts a dead one (its
    constructor restores its sessions from the registry)."""
    actor = ray.remote(SessionWorker)
    data = settings.model_dump(mode="json", exclude={"api_key"})
    return {
        index: actor.options(
            name=worker_name(index), namespace=settings.ray_namespace,
            lifetime="detached", get_if_exists=True, max_restarts=-1, max_task_retries=0,
            num_cpus=1, scheduling_strategy="SPREAD", runtime_env=WORKER_RUNTIME_ENV,
        ).remote(index, data, settings.ray_namespace)
        for index in range(max(settings.workers, 1))
    }


async def call_worker(handle: Any, name: str, method: str, *args: Any, timeout_s: float,
                      wait_restart_s: float) -> Any:
    """One actor call, its reply as sent; Ray's failures as 503s saying which worker and
    why. A worker that is restarting is waited for up to ``wait_restart_s``."""
    deadline = time.monotonic() + wait_restart_s
    while True:
        try:
            return await asyncio.wait_for(getattr(handle, method).remote(*args), timeout_s)
        except ActorUnavailableError as exc:
            if time.monotonic() >= deadline:
                raise DependencyUnavailable(f"{name} is restarting: {exc}") from exc
            await asyncio.sleep(0.2)
        except RayError as exc:
            raise DependencyUnavailable(
                f"{name} is unavailable ({type(exc).__name__}): {exc}") from exc
        except TimeoutError as exc:
            raise DependencyUnavailable(
                f"{name} did not answer {method} within {timeout_s:.0f} s") from exc
