"""Real parts for the fleet tests: the e2e Triton and room server, and a private Ray
temp folder per run (short: AF_UNIX socket paths are limited to 107 characters), so this
run's Ray never meets another run's."""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator

import pytest

# Read when Ray is imported: keep a local instance on loopback, as the router asks.
os.environ["RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"] = "0"

from tests.e2e.conftest import arena, e2e_model, e2e_triton  # noqa: F401 (fixtures)


@pytest.fixture(scope="session", autouse=True)
def private_ray_dir() -> Iterator[str]:
    path = tempfile.mkdtemp(prefix="rf", dir="/tmp")
    saved = {"RAY_TMPDIR": os.environ.get("RAY_TMPDIR")}
    os.environ["RAY_TMPDIR"] = path
    try:
        yield path
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
        shutil.rmtree(path, ignore_errors=True)
