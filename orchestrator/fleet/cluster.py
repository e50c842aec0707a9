"""Joining Ray (the cluster at ``ORCHESTRATOR_RAY_ADDRESS`` or a local one on loopback) and
starting the session workers there."""

from __future__ import annotations

import os
from typing import Any

import ray

from orchestrator.fleet.worker import SessionWorker, worker_name
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
