"""Our own Arena-compatible room server (robotics + video signaling), for tests and local runs."""

from .server import create_app, main

__all__ = ["create_app", "main"]
