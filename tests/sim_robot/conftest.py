from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

import pytest

from orchestrator.arena.rest import ArenaRest, new_workspace
from tests.support.arena import ArenaServerThread


@pytest.fixture(scope="package")
def arena() -> Iterator[ArenaServerThread]:
    with ArenaServerThread() as server:
        yield server


@pytest.fixture
async def rest(arena: ArenaServerThread) -> AsyncIterator[ArenaRest]:
    async with ArenaRest(arena.base_url) as client:
        yield client


@pytest.fixture
def workspace() -> str:
    return new_workspace()
