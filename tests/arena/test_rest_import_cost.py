"""A REST call to the room server must not search for modules: httpcore asks sniffio which
async library runs, on every request and lock, and without sniffio installed that failed
import walked sys.path each time (about 0.1 ms here, several per request, for every
session's presence poll)."""

from __future__ import annotations

import sys
from typing import Any

from orchestrator.arena.rest import ArenaRest


class _Lookups:
    """A meta-path finder that only records which modules the import system looked for."""

    def __init__(self) -> None:
        self.names: list[str] = []

    def find_spec(self, name: str, path: Any = None, target: Any = None) -> None:
        self.names.append(name)


async def test_room_server_requests_import_nothing(rest: ArenaRest, workspace: str) -> None:
    await rest.create_robotics_room(workspace, "import-cost")
    await rest.get_robotics_room(workspace, "import-cost")  # connection pool warm
    lookups = _Lookups()
    sys.meta_path.insert(0, lookups)
    try:
        for _ in range(3):
            await rest.get_robotics_room(workspace, "import-cost")
    finally:
        sys.meta_path.remove(lookups)
    assert lookups.names == []
