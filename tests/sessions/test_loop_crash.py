"""A control loop whose task dies reports it instead of hanging silently.

The loop catches every error inside a tick, so its task can only die through a bug: that
fault cannot be caused for real, hence the one injected failure below (``_run`` replaced)."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from orchestrator.sessions.config import LoopSettings
from orchestrator.sessions.loop import ControlLoop
from orchestrator.sessions.policy import PolicyRef
from orchestrator.triton.client import TritonClient
from tests.support.triton import tiny_contract


async def _publish(_: Any) -> None:
    return None


async def test_a_dead_loop_task_is_reported_and_latches(monkeypatch: pytest.MonkeyPatch) -> None:
    crashes: list[str] = []
    loop = ControlLoop(
        session_id="s", contract=tiny_contract("m"), policy=PolicyRef("m", ""),
        settings=LoopSettings(rate_hz=30.0), aliases={},
        triton=TritonClient("127.0.0.1:1"), cameras={},
        publish=_publish, on_crash=crashes.append,
    )

    async def broken_run() -> None:
        raise RuntimeError("injected bug")

    monkeypatch.setattr(loop, "_run", broken_run)
    await loop.start()
    await asyncio.sleep(0.05)
    assert crashes and "injected bug" in crashes[0]
    assert loop.crashed == crashes[0]
    assert loop.core.safety.latched  # nothing is published after a crash
    monkeypatch.undo()
    await loop.start()  # restart clears it
    assert loop.crashed is None
    await loop.stop()
