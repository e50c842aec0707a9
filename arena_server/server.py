"""The Arena-compatible room server: app factory and CLI (`arena-server`)."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from typing import Any

from fastapi import FastAPI
from fastapi.middleware.cors import CORSMiddleware

from .common import MAX_MESSAGE_BYTES
from .robotics import RoboticsHub, robotics_router
from .video import VideoHub, video_router

logger = logging.getLogger(__name__)

SWEEP_INTERVAL_S = 15 * 60.0
IDLE_TIMEOUT_S = 60 * 60.0


def create_app(
    *, sweep_interval_s: float = SWEEP_INTERVAL_S, idle_timeout_s: float = IDLE_TIMEOUT_S,
    prefix: str = "",
) -> FastAPI:
    """A fresh server with empty in-memory state (rooms live as long as the app).

    ``prefix`` (e.g. ``/api``) puts the rooms below a path, as the public server is deployed;
    ``/health`` then answers at the root and below the prefix."""
    prefix = prefix.rstrip("/")
    robotics, video = RoboticsHub(), VideoHub()

    async def sweep_forever() -> None:
        while True:
            await asyncio.sleep(sweep_interval_s)
            removed = robotics.sweep(idle_timeout_s) + video.sweep(idle_timeout_s)
            if removed:
                logger.info("swept %d idle rooms", removed)

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        task = asyncio.create_task(sweep_forever(), name="arena-room-sweep")
        try:
            yield
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    app = FastAPI(title="Arena-compatible room server", version="1.0.0", lifespan=lifespan)
    app.add_middleware(
        CORSMiddleware, allow_origins=["*"], allow_methods=["*"], allow_headers=["*"]
    )
    app.state.robotics = robotics
    app.state.video = video
    app.include_router(robotics_router(robotics), prefix=prefix)
    app.include_router(video_router(video), prefix=prefix)

    async def health() -> dict[str, Any]:
        return {"status": "healthy", "server_running": True}

    for path in dict.fromkeys(("/health", f"{prefix}/health")):
        app.add_api_route(path, health, methods=["GET"])

    @app.get("/")
    async def root() -> dict[str, Any]:
        return {"message": "Arena-compatible room server", "status": "running"}

    return app


def uvicorn_config_kwargs() -> dict[str, Any]:
    """Server settings shared by the CLI and the test helpers."""
    # The protocol is JSON text; frames above the limit are refused by the WebSocket layer.
    return {"ws_max_size": MAX_MESSAGE_BYTES, "ws_ping_interval": 20.0, "ws_ping_timeout": 20.0}


def main(argv: list[str] | None = None) -> None:
    import uvicorn

    parser = argparse.ArgumentParser(prog="arena-server", description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8000)
    parser.add_argument("--log-level", default="info")
    parser.add_argument("--prefix", default="", help="serve the rooms below a path, e.g. /api")
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    uvicorn.run(
        create_app(prefix=args.prefix),
        host=args.host,
        port=args.port,
        log_level=args.log_level,
        **uvicorn_config_kwargs(),
    )


if __name__ == "__main__":
    main()
