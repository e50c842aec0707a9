"""Errors the session layer raises; the API maps each to one HTTP status, in one place."""

from __future__ import annotations

from orchestrator.arena.rest import ArenaError, NotArena


class SessionError(Exception):
    status_code = 400

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class SessionNotFound(SessionError):
    status_code = 404


class SessionExists(SessionError):
    status_code = 409


class InvalidSessionRequest(SessionError):
    status_code = 400


class ForbiddenTarget(SessionError):
    status_code = 403


class PolicyNotFound(SessionError):
    status_code = 404


class TooManySessions(SessionError):
    status_code = 429


class DependencyUnavailable(SessionError):
    """Triton or the Arena server cannot be reached right now."""

    status_code = 503


class DependencyRefused(SessionError):
    """The Arena server answered a 4xx (a proxy asking for credentials, a path that is not
    an Arena API): retrying will not help, unlike a 503."""

    status_code = 502


class InvalidTransition(SessionError):
    status_code = 409


class CreateAbandoned(SessionError):
    """The session was deleted while it was being created: what the create opened is closed."""

    status_code = 409


def arena_failure(exc: Exception, arena_url: str, session_id: str) -> SessionError:
    """What a create answers when the Arena server failed it: a 4xx, or an answer no Arena
    server gives, is a refusal (502)."""
    if isinstance(exc, NotArena) or (isinstance(exc, ArenaError) and 400 <= exc.status < 500):
        return DependencyRefused(
            f"Arena server at {arena_url} refused opening session {session_id!r}: {exc}")
    return DependencyUnavailable(
        f"Arena server at {arena_url} failed while opening session {session_id!r}: {exc}")
