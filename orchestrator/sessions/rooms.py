"""Keeping a running session's rooms on the Arena server, once a second.

Rooms live in the server's memory: a restart loses them, a DELETE sent late for an earlier
session of the same id removes them, and a robot or page may make "its" rooms again under
the same ids. None of these closes our sockets (a quirk of the server), so a client can stay
joined to a room the server no longer counts it in. The workspace's listings (presence.py)
show whom it counts; those it does not count join again, into a room made again if missing.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable

from orchestrator.arena.rest import ArenaError, ArenaRest
from orchestrator.arena.video import VideoConsumer
from orchestrator.sessions.presence import RoomClient, WorkspacePresence, rejoin_unregistered

log = logging.getLogger(__name__)


async def keep_rooms(session_id: str, workspace: str, rest: ArenaRest,
                     board: WorkspacePresence, robotics: Iterable[RoomClient],
                     cameras: Iterable[VideoConsumer], period_s: float = 1.0) -> None:
    """Run until cancelled. Robotics clients make their own rooms again when a re-join is
    refused; video rooms are made here."""
    robotics, cameras = list(robotics), list(cameras)
    while True:
        rejoin_unregistered(board, robotics)
        try:
            for camera in cameras:
                await _keep_video_room(session_id, workspace, rest, board, camera)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # server restarting: try again next period
            log.debug("session %s: video room check failed: %s", session_id, exc)
        await asyncio.sleep(period_s)


async def _keep_video_room(session_id: str, workspace: str, rest: ArenaRest,
                           board: WorkspacePresence, camera: VideoConsumer) -> None:
    """A missing room is made again while its consumer is not joined (nobody can join it
    otherwise), or once the server no longer counts that consumer. A consumer it does not
    count re-joins once no frames come from its peer: until then its peer connection still
    delivers them, and a re-join would close it."""
    room = camera.room_id
    unregistered = board.video_registered(room, camera.participant_id,
                                          camera.joined_at) is False
    if camera.stats.joined and not unregistered:
        return
    if camera.stats.connected and board.video_room_listed(room):
        return  # made again already; the consumer re-joins once its peer connection ends
    try:
        await rest.get_video_room(workspace, room)
    except ArenaError as exc:
        if exc.status != 404:
            raise
        await rest.create_video_room(workspace, room)
        log.warning("session %s: recreated missing video room %s", session_id, room)
    if unregistered and not camera.stats.connected:
        camera.rejoin("no longer registered in its room (deleted or re-created?)")
