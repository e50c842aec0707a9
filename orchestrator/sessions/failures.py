"""What a session's failed chunk requests are called: the kinds counted in its status and
on /metrics (``orchestrator_errors_total``), all known up front so every series exists."""

from __future__ import annotations

from orchestrator.triton.errors import BadInput, InferenceTimeout, ModelNotReady, TritonUnavailable

ERROR_KINDS = ("triton_unavailable", "model_unavailable", "inference_timeout", "bad_input",
               "inference_error", "bad_chunk", "tick", "publish", "observation_error",
               "stale_frame", "stale_observation")

_BY_TYPE: dict[type[Exception], str] = {
    TritonUnavailable: "triton_unavailable",
    ModelNotReady: "model_unavailable",
    InferenceTimeout: "inference_timeout",
    BadInput: "bad_input",
}


class StaleObservation(Exception):
    """The newest usable frame, or the observation's capture, is past the staleness limit:
    nothing is asked from it."""


def failure_kind(exc: Exception) -> str:
    """A request's failure by its error's type; an error no adapter names is
    ``inference_error``."""
    return next((kind for t, kind in _BY_TYPE.items() if isinstance(exc, t)), "inference_error")
