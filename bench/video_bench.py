"""Video frame latency and rate through the local room server over loopback (real WebRTC).

    python -m bench.video_bench [--seconds 10] [--width 640 --height 480 --fps 30]
                                [--ice gathered|trickle|none] [--url http://host:port]

A simulated camera (sim_robot's CameraProducer: VP8 via aiortc) streams to a VideoConsumer;
the frame index is read back from the pixels of each received frame, and its latency is the
consumer's arrival time minus the time the camera handed that frame to the encoder (one
monotonic clock: both ends run in this process, the room server in its own). It includes
encode, RTP over loopback, jitter buffer, decode and the YUV->RGB conversion.

Without --url the room server is started as a child process on a free port. The results go
to bench/results/video.json (and under "video" in bench/results/arena.json, next to the
joint latency of arena_bench); `video_latency()` is the reusable function.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import statistics
import time
from pathlib import Path
from typing import Any

from arena_server.launcher import LocalArenaServer
from orchestrator.arena.rest import ArenaRest, new_workspace
from orchestrator.arena.video import VideoConsumer
from sim_robot.camera import CameraSource, decode_frame_index
from sim_robot.video_producer import CameraProducer, IceMode

RESULTS = Path(__file__).parent / "results" / "video.json"
POLL_S = 0.002


def _percentile(sorted_values: list[float], q: float) -> float:
    if not sorted_values:
        return float("nan")
    k = (len(sorted_values) - 1) * q
    lo, hi = int(k), min(int(k) + 1, len(sorted_values) - 1)
    return sorted_values[lo] + (sorted_values[hi] - sorted_values[lo]) * (k - lo)


async def video_latency(
    base_url: str, *, seconds: float = 10.0, warmup_s: float = 2.0, width: int = 640,
    height: int = 480, fps: float = 30.0, ice_mode: IceMode = "gathered",
) -> dict[str, Any]:
    workspace, room = new_workspace(), "bench-camera"
    async with ArenaRest(base_url) as rest:
        await rest.create_video_room(workspace, room)
        source = CameraSource(width, height, fps)
        consumer = VideoConsumer(base_url, workspace, room, "bench-consumer")
        producer = CameraProducer(base_url, workspace, room, "bench-producer", source,
                                  ice_mode=ice_mode)
        await consumer.start()
        await producer.start()
        try:
            t_start = time.monotonic()
            while consumer.latest() is None:
                if time.monotonic() - t_start > 30:
                    raise TimeoutError(f"no frame within 30 s: {consumer.stats}")
                await asyncio.sleep(0.01)
            first_frame_s = time.monotonic() - t_start
            await asyncio.sleep(warmup_s)

            latencies: list[float] = []
            seen = undecoded = 0
            last_seq = -1
            frames0, sent0 = consumer.stats.frames, source.frames_sent
            t0 = time.monotonic()
            while (now := time.monotonic()) - t0 < seconds:
                frame = consumer.latest()
                if frame is not None and frame.seq != last_seq:
                    last_seq = frame.seq
                    seen += 1
                    index = decode_frame_index(frame.rgb)
                    sent = None if index is None else source.sent_at(index)
                    if sent is None:
                        undecoded += 1
                    else:
                        latencies.append(frame.arrived_at - sent)
                await asyncio.sleep(POLL_S)
            window = now - t0
            received = consumer.stats.frames - frames0
            sent_frames = source.frames_sent - sent0
        finally:
            await producer.stop()
            await consumer.stop()
            await rest.delete_video_room(workspace, room, missing_ok=True)

    latencies.sort()
    ms = [x * 1000 for x in latencies]
    return {
        "resolution": f"{width}x{height}",
        "target_fps": fps,
        "ice_mode": ice_mode,
        "window_s": round(window, 3),
        "fps_received": round(received / window, 2),
        "fps_sent": round(sent_frames / window, 2),
        "frames_received": received,
        "frames_sampled": seen,  # frames the 2 ms poll looked at (the rest were overwritten)
        "frames_undecodable": undecoded,
        "latency_ms": {
            "p50": round(_percentile(ms, 0.50), 2),
            "p90": round(_percentile(ms, 0.90), 2),
            "p99": round(_percentile(ms, 0.99), 2),
            "max": round(ms[-1], 2) if ms else None,
            "mean": round(statistics.fmean(ms), 2) if ms else None,
            "samples": len(ms),
        },
        "time_to_first_frame_s": round(first_frame_s, 3),
        "consumer": {k: v for k, v in vars(consumer.stats).items()},
    }


def _meta() -> dict[str, Any]:
    return {
        "python": platform.python_version(),
        "machine": platform.machine(),
        "cpus": os.cpu_count(),
        "loadavg_1m": round(os.getloadavg()[0], 2),
        "time_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }


async def _main(args: argparse.Namespace) -> dict[str, Any]:
    server = None
    url = args.url
    if url is None:
        server = await LocalArenaServer().astart()
        url = server.base_url
    try:
        result = await video_latency(
            url, seconds=args.seconds, warmup_s=args.warmup, width=args.width,
            height=args.height, fps=args.fps, ice_mode=args.ice,
        )
    finally:
        if server is not None:
            await server.astop()
    return {"video": result, "server": "external" if args.url else "local child process",
            "meta": _meta()}


def _merge_into_arena_results(report: dict[str, Any]) -> None:
    """bench/results/arena.json holds the joints part (arena_bench); add ours as "video"."""
    path = RESULTS.parent / "arena.json"
    try:
        merged = json.loads(path.read_text()) if path.exists() else {}
    except ValueError:
        merged = {}
    if not isinstance(merged, dict):
        merged = {}
    merged["video"] = report["video"]
    path.write_text(json.dumps(merged, indent=2) + "\n")


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="video_bench", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--url", help="use a running Arena server instead of a local child process")
    p.add_argument("--seconds", type=float, default=10.0, help="measurement window")
    p.add_argument("--warmup", type=float, default=2.0)
    p.add_argument("--width", type=int, default=640)
    p.add_argument("--height", type=int, default=480)
    p.add_argument("--fps", type=float, default=30.0)
    p.add_argument("--ice", choices=["gathered", "trickle", "none"], default="gathered")
    p.add_argument("--out", type=Path, default=RESULTS)
    args = p.parse_args(argv)
    report = asyncio.run(_main(args))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    if args.out == RESULTS:
        _merge_into_arena_results(report)
    print(json.dumps(report["video"], indent=2))
    print(f"written to {args.out}")


if __name__ == "__main__":
    main()
