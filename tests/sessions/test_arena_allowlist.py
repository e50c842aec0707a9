"""Which Arena servers a session may be pointed at: ORCHESTRATOR_ARENA_ALLOWLIST entries in
the forms operators write them. A URL without a port has its scheme's, and IPv6 entries
are addresses, not host:port (both were refused: 403 for an allowed server)."""

from __future__ import annotations

import pytest

from orchestrator.sessions.errors import ForbiddenTarget
from orchestrator.sessions.policy import check_arena_url

DEFAULT = "http://arena.internal:8000"


@pytest.mark.parametrize(("url", "entry"), [
    ("https://x.hf.space/api", "x.hf.space:443"),  # the RobotHub HF-space form
    ("http://robots.example.org/", "robots.example.org:80"),
    ("http://robots.example.org:8000", "robots.example.org"),
    ("http://[fd00::5]:8000", "fd00::5"),
    ("http://[fd00::5]:8000", "[fd00::5]:8000"),
    ("http://[fd00::5]:8000", "[fd00::5]"),
    ("http://lab.example.org:9000", " Lab.Example.org:9000 "),
])
def test_allowed(url: str, entry: str) -> None:
    assert check_arena_url(url, DEFAULT, [entry]) == url.rstrip("/")


@pytest.mark.parametrize(("url", "entry"), [
    ("http://x.hf.space/api", "x.hf.space:443"),  # port 80, not 443
    ("http://[fd00::5]:8001", "[fd00::5]:8000"),
    ("http://[fd00::6]:8000", "fd00::5"),
    ("http://lab.example.org:9001", "lab.example.org:9000"),
    ("http://example.org:8000", "example.org:notaport"),
])
def test_refused(url: str, entry: str) -> None:
    with pytest.raises(ForbiddenTarget, match="ORCHESTRATOR_ARENA_ALLOWLIST"):
        check_arena_url(url, DEFAULT, [entry])
