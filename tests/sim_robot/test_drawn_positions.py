"""The simulated camera draws the arm's joint positions (sim_robot.pattern's value code) in
a form that survives VP8: encoded and decoded with aiortc's own codec, every frame reads
back to within the code's resolution."""

from __future__ import annotations

import fractions

import av
import pytest
from aiortc.codecs.vpx import Vp8Decoder, Vp8Encoder, vp8_depayload
from aiortc.jitterbuffer import JitterFrame

from sim_robot.camera import CameraSource
from sim_robot.pattern import (
    VALUE_SCALE,
    PatternGenerator,
    decode_frame_index,
    decode_values,
    encode_value,
)
from sim_robot.robot import SimRobot


def test_positions_survive_vp8_at_192x144() -> None:
    generator = PatternGenerator(192, 144, values=3)
    encoder, decoder = Vp8Encoder(), Vp8Decoder()
    checked = 0
    for i in range(120):
        values = [i * 0.6789 - 3.3, -i * 1.234 + 500.1, 20.0 * (-1) ** i]
        frame = av.VideoFrame.from_ndarray(generator.planes(i, values), format="yuv420p")
        frame.pts, frame.time_base = i * 3000, fractions.Fraction(1, 90_000)
        payloads, timestamp = encoder.encode(frame)
        data = b"".join(vp8_depayload(p) for p in payloads)
        for out in decoder.decode(JitterFrame(data=data, timestamp=timestamp)):
            rgb = out.to_ndarray(format="rgb24")
            got = decode_values(rgb, 3)
            assert got is not None and decode_frame_index(rgb) == i
            assert got == pytest.approx(values, abs=0.5 / VALUE_SCALE)
            checked += 1
    assert checked >= 100


def test_value_code_clips_and_rejects_bad_counts() -> None:
    assert encode_value(float("nan")) == encode_value(0.0)
    assert encode_value(1e9) == (1 << 24) - 1 and encode_value(-1e9) == 0
    with pytest.raises(ValueError):
        PatternGenerator(64, 48, values=4)
    plain = PatternGenerator(64, 48).planes(7)
    assert decode_values(plain[:48, :, None].repeat(3, axis=2), 1) is None  # no value drawn


def test_the_robots_camera_draws_where_the_arm_is_at_capture() -> None:
    robot = SimRobot("http://127.0.0.1:9", "ws", cameras={"front": "room"},
                     joints=("a", "b"), camera_joints=("b",), width=64, height=48,
                     initial={"a": 1.0, "b": -42.5})
    source = robot.cameras["front"]
    planes = source.planes(3)
    rgb = planes[:48, :, None].repeat(3, axis=2)  # luma as grey RGB
    assert decode_values(rgb, 1) == [-42.5]
    with pytest.raises(ValueError):
        SimRobot("http://127.0.0.1:9", "ws", joints=("a",), camera_joints=("z",))
    assert isinstance(source, CameraSource)
