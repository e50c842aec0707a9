"""An observation: the latest frame of every camera plus the full joint state, stamped.

Each part is also dated by its **capture** (see ``orchestrator.control.alignment``): a
frame by the stream's own timing when it carries a trustworthy one, else by its arrival
minus the configured video-path delay (``camera_latency_s``); the joint state by the
arrival of its last change. The oldest capture is the observation's moment.

Snapshots are cheap (references to the latest frames); turning one into Triton inputs
(resizing a frame whose size differs from the model's) happens in the inference task,
off the tick."""

from __future__ import annotations

import functools
import logging
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from orchestrator.control.alignment import frame_capture_moment
from orchestrator.triton.model_contract import STATE_INPUT, ModelContract, image_input

JOINTS_PART = "joints"  # the joint state's key in ``Observation.captured``

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Observation:
    tick: int
    taken_at: float
    state: np.ndarray  # model state order, float32
    frames: Mapping[str, np.ndarray]  # camera -> uint8 HxWx3 as received
    frame_stamps: Mapping[str, float]  # camera -> monotonic arrival time
    frame_seq: Mapping[str, int]
    # part (camera, or JOINTS_PART) -> monotonic capture estimate; how the frames were dated
    captured: Mapping[str, float] = field(default_factory=dict)
    frame_dating: str = "arrival"  # "stream", "configured" or "arrival" (the least exact)

    @functools.cached_property
    def oldest_stamp(self) -> float:  # read at every tick that publishes from this chunk
        return min(self.frame_stamps.values(), default=self.taken_at)

    @property
    def captured_at(self) -> float:
        """The observation's moment: its oldest part's capture (the snapshot without any)."""
        return min(self.captured.values(), default=self.taken_at)

    @property
    def dated_by(self) -> str:
        """What dated the oldest part: ``joints`` or how the frames were dated."""
        if not self.captured:
            return "snapshot"
        oldest = min(self.captured, key=lambda part: self.captured[part])
        return JOINTS_PART if oldest == JOINTS_PART else self.frame_dating


def resize_nearest(rgb: np.ndarray, height: int, width: int) -> np.ndarray:
    """Nearest-neighbour resize: cheap and exact for integer scale factors."""
    rows = (np.arange(height) * rgb.shape[0] // height).astype(np.intp)
    cols = (np.arange(width) * rgb.shape[1] // width).astype(np.intp)
    return rgb[rows[:, None], cols[None, :]]


def frames_captured_at(frames: Mapping[str, Any], camera_latency_s: float | None
                       ) -> float | None:
    """The oldest capture moment among ``frames`` (None when there is none)."""
    moments = [frame_capture_moment(f.arrived_at, getattr(f, "captured_at", None),
                                    camera_latency_s)
               for f in frames.values() if f is not None]
    return min(moments, default=None)


class ObservationBuilder:
    def __init__(self, contract: ModelContract) -> None:
        self.contract = contract
        self.resized: Counter[str] = Counter()
        self.bad_frames: Counter[str] = Counter()

    def snapshot(
        self, tick: int, now: float, state: np.ndarray | None, frames: Mapping[str, Any],
        *, joints_captured_at: float | None = None, camera_latency_s: float | None = None,
    ) -> Observation | None:
        """None when a camera or the joint state is missing (the caller retries later)."""
        if state is None:
            return None
        images: dict[str, np.ndarray] = {}
        stamps: dict[str, float] = {}
        seqs: dict[str, int] = {}
        captured: dict[str, float] = {}
        dating: set[str] = set()
        for camera in self.contract.cameras:
            frame = frames.get(camera)
            if frame is None:
                return None
            rgb = frame.rgb
            if not (isinstance(rgb, np.ndarray) and rgb.ndim == 3 and rgb.shape[2] == 3
                    and rgb.dtype == np.uint8 and rgb.shape[0] > 0 and rgb.shape[1] > 0):
                self.bad_frames[camera] += 1
                return None
            images[camera], stamps[camera], seqs[camera] = rgb, frame.arrived_at, frame.seq
            stream = getattr(frame, "captured_at", None)
            captured[camera] = frame_capture_moment(frame.arrived_at, stream, camera_latency_s)
            dating.add("stream" if stream is not None
                       else "configured" if camera_latency_s else "arrival")
        if joints_captured_at is not None:
            captured[JOINTS_PART] = min(joints_captured_at, now)
        # The least exact dating of any camera is the observation's.
        frame_dating = next((d for d in ("arrival", "configured", "stream") if d in dating),
                            "arrival")
        return Observation(tick, now, np.asarray(state, dtype=np.float32), images, stamps, seqs,
                           captured, frame_dating)

    def needs_resize(self, observation: Observation) -> bool:
        return any(rgb.shape[:2] != self.contract.image_sizes[camera]
                   for camera, rgb in observation.frames.items())

    def inputs(self, observation: Observation) -> dict[str, np.ndarray]:
        """Batch-of-one Triton inputs named by LeRobot's feature keys."""
        out: dict[str, np.ndarray] = {STATE_INPUT: observation.state.reshape(1, -1)}
        for camera, rgb in observation.frames.items():
            height, width = self.contract.image_sizes[camera]
            if rgb.shape[:2] != (height, width):
                if not self.resized[camera]:
                    log.warning(
                        "camera %s sends %dx%d frames; the model expects %dx%d: resizing",
                        camera, rgb.shape[1], rgb.shape[0], width, height,
                    )
                self.resized[camera] += 1
                rgb = resize_nearest(rgb, height, width)
            out[image_input(camera)] = np.ascontiguousarray(rgb)[None]
        return out
