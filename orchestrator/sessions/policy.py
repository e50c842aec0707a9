"""Resolve a session's ``policy_path`` to a Triton model, and Arena URLs to allowed hosts."""

from __future__ import annotations

import contextlib
import ipaddress
import re
from dataclasses import dataclass
from urllib.parse import urlsplit

import httpx

from orchestrator.arena.stream_clock import url_on_this_host
from orchestrator.sessions.errors import ForbiddenTarget, InvalidSessionRequest

_MODEL_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$")


@dataclass(frozen=True)
class PolicyRef:
    name: str
    version: str  # "" = the version Triton's policy serves

    def __str__(self) -> str:
        return f"{self.name}:{self.version}" if self.version else self.name


def parse_policy_path(policy_path: str) -> PolicyRef:
    """``NAME`` or ``NAME:VERSION``. A checkpoint folder (what the seed took) gets a message
    showing the export command that turns it into a model."""
    value = policy_path.strip()
    looks_like_path = "/" in value or "\\" in value or value.startswith((".", "~"))
    if looks_like_path:
        raise InvalidSessionRequest(
            f"policy_path {policy_path!r} looks like a checkpoint folder; sessions take a model "
            "served by Triton (NAME or NAME:VERSION). Export the checkpoint first: "
            f"python -m export {value} --repository model_repository --name my_policy "
            "and then pass policy_path='my_policy'."
        )
    name, _, version = value.partition(":")
    # Triton reads a version as an int64: a longer number was its "stol" error, as a 503.
    if not _MODEL_NAME.match(name) or (version and not (
            version.isascii() and version.isdigit() and 0 < int(version) < 2**63)):
        raise InvalidSessionRequest(
            f"policy_path {policy_path!r} is not NAME or NAME:VERSION (VERSION a positive integer)"
        )
    return PolicyRef(name=name, version=version)


def _host_port(url: str) -> tuple[str, int | None]:
    what = f"transport_server_url/arena_server_url {url!r}"
    if not url.isprintable() or any(c.isspace() for c in url):
        raise InvalidSessionRequest(f"{what} holds whitespace or control characters")
    try:
        parts = urlsplit(url)
    except ValueError as exc:  # e.g. brackets around something that is no IPv6 address
        raise InvalidSessionRequest(f"{what} is not a valid URL: {exc}") from exc
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise InvalidSessionRequest(f"{what} must be an http(s) URL with a host")
    try:
        port = parts.port
        httpx.URL(url)  # what the Arena client will parse, e.g. "[::1]x:8000"
    except (ValueError, httpx.InvalidURL) as exc:
        raise InvalidSessionRequest(f"{what} is not a valid URL: {exc}") from exc
    # No port written: the scheme's (an allowlist entry host:443 names https://host/...).
    return parts.hostname.lower(), port or (443 if parts.scheme == "https" else 80)


def _allowlist_entry(entry: str) -> tuple[str, int | None]:
    """``host``, ``host:port``, ``[v6]``, ``[v6]:port`` or a bare IPv6 address."""
    text = entry.strip().lower()
    with contextlib.suppress(ValueError):
        return str(ipaddress.ip_address(text.strip("[]"))), None  # an address, no port
    parts = urlsplit("//" + text)
    try:
        return (parts.hostname or text), parts.port
    except ValueError:  # not a port: match nothing rather than a host of that name
        return "", None


def check_arena_url(url: str, default_url: str, allowlist: list[str]) -> str:
    """Only loopback, the default server's host and allowlisted hosts may be reached, so the
    API cannot be used to open connections to arbitrary hosts. Returns the URL without a
    trailing slash."""
    host, port = _host_port(url)
    allowed_hosts = {_host_port(default_url)[0], "localhost"}
    for entry in allowlist:
        entry_host, entry_port = _allowlist_entry(entry)
        if entry_host and entry_port in (None, port):
            allowed_hosts.add(entry_host)
    loopback = False
    with contextlib.suppress(ValueError):
        loopback = ipaddress.ip_address(host).is_loopback
    if not loopback and host not in allowed_hosts:
        raise ForbiddenTarget(
            f"transport_server_url/arena_server_url host {host!r} is not allowed; allowed: "
            f"loopback, {sorted(allowed_hosts)} (add it to the orchestrator's setting "
            "ORCHESTRATOR_ARENA_ALLOWLIST)"
        )
    parts = urlsplit(url)
    if parts.username is not None or parts.password is not None:
        # The URL is shown in every status: a password in it would be too. (After the host
        # check: "http://127.0.0.1@evil.example.com" is a host not allowed.)
        raise InvalidSessionRequest(
            "transport_server_url/arena_server_url: credentials in the URL are not supported")
    return url.rstrip("/")


def through_loopback_alias(url: str, alias: str | None) -> str:
    """``url`` with a loopback host (``localhost``, ``127.0.0.1``: how a page on the
    orchestrator's host names the room server) reached at ``alias`` instead, its path kept:
    in a container, loopback is the container itself. Any other URL is kept as it is."""
    if not alias or not url_on_this_host(url):
        return url
    target = urlsplit(alias.rstrip("/"))
    return urlsplit(url)._replace(scheme=target.scheme, netloc=target.netloc).geturl()
