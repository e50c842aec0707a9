"""A TCP proxy in front of a real server that delays what a slow server would."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass


@dataclass
class SlowDeletes:
    url: str = ""
    holding: int = 0  # DELETE requests received and not passed on yet


@contextlib.asynccontextmanager
async def slow_deletes(upstream: str, hold_s: float) -> AsyncIterator[SlowDeletes]:
    """A TCP proxy to ``upstream`` that holds every DELETE request for ``hold_s``."""
    host, port = upstream.removeprefix("http://").split(":")
    proxy = SlowDeletes()

    async def pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                   hold: bool) -> None:
        with contextlib.suppress(ConnectionError):
            while chunk := await reader.read(65536):
                held = hold and chunk.startswith(b"DELETE ")
                if held:
                    proxy.holding += 1
                    await asyncio.sleep(hold_s)
                writer.write(chunk)
                await writer.drain()
                if held:
                    proxy.holding -= 1
        writer.close()

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        up_reader, up_writer = await asyncio.open_connection(host, int(port))
        await asyncio.gather(pipe(reader, up_writer, True), pipe(up_reader, writer, False))

    server = await asyncio.start_server(serve, "127.0.0.1", 0)
    try:
        proxy.url = f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}"
        yield proxy
    finally:
        server.close()
