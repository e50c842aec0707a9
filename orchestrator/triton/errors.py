"""Typed errors of the Triton client, and the mapping from gRPC/Triton errors."""

from __future__ import annotations

from tritonclient.utils import InferenceServerException


class TritonError(RuntimeError):
    """Base of every error this client raises."""


class TritonUnavailable(TritonError):
    """The server cannot be reached (down, restarting, wrong address)."""


class ModelNotReady(TritonError):
    """The model (version) is not loaded on the server or does not exist."""


class InferenceTimeout(TritonError):
    """The request did not complete within its timeout."""


class BadInput(TritonError):
    """Input names, shapes or dtypes do not match the model."""


class SharedMemoryLost(TritonUnavailable):
    """The server no longer knows our shared-memory region (it restarted)."""


class TritonBusy(TritonUnavailable):
    """The server is up and refused this request (its queue is full, or the request waited
    past its queue policy's timeout): retry later, the connection is fine."""


_BUSY = ("maximum queue size", "timeout expired")


def translate(exc: InferenceServerException, what: str) -> TritonError:
    """Map a tritonclient error to the typed error the session layer acts on."""
    status = exc.status() or ""
    msg = exc.message() or str(exc)
    text = f"{what}: {msg}"
    lower = msg.lower()
    if "shared memory region" in lower and ("unable to find" in lower or "not found" in lower):
        return SharedMemoryLost(text)
    if "DEADLINE_EXCEEDED" in status:
        return InferenceTimeout(text)
    if "NOT_FOUND" in status or "unknown model" in lower or "not ready" in lower:
        return ModelNotReady(text)
    if "UNAVAILABLE" in status and any(b in lower for b in _BUSY):
        return TritonBusy(text)
    if "UNAVAILABLE" in status or "CANCELLED" in status or "failed to connect" in lower:
        return TritonUnavailable(text)
    if "INVALID_ARGUMENT" in status:
        return BadInput(text)
    return TritonError(f"{text} ({status})")
