"""The frame index written into the synthetic picture reads back, also from degraded pixels."""

from __future__ import annotations

import av
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sim_robot.pattern import INDEX_MODULO, PatternGenerator, decode_frame_index


def rgb_of(gen: PatternGenerator, index: int) -> np.ndarray:
    frame = av.VideoFrame.from_ndarray(gen.planes(index), format="yuv420p")
    return frame.to_ndarray(format="rgb24")


GEN_VGA = PatternGenerator(640, 480)
GEN_SMALL = PatternGenerator(320, 240)


@settings(max_examples=60, deadline=None)
@given(index=st.integers(min_value=0, max_value=INDEX_MODULO - 1))
def test_round_trip_any_index(index: int) -> None:
    assert decode_frame_index(rgb_of(GEN_VGA, index)) == index
    assert decode_frame_index(rgb_of(GEN_SMALL, index)) == index


def test_index_wraps_modulo_2_24() -> None:
    assert decode_frame_index(rgb_of(GEN_SMALL, INDEX_MODULO + 7)) == 7


def test_survives_noise_and_blur() -> None:
    rng = np.random.default_rng(1)
    for index in (0, 1, 123_456, INDEX_MODULO - 1):
        rgb = rgb_of(GEN_VGA, index).astype(np.float32)
        rgb += rng.normal(0, 25, rgb.shape)
        # 9x9 box blur, a crude stand-in for heavy compression smearing block edges.
        k = 9
        pad = np.pad(rgb, ((k // 2, k // 2), (k // 2, k // 2), (0, 0)), mode="edge")
        c = pad.cumsum(0).cumsum(1)
        c = np.pad(c, ((1, 0), (1, 0), (0, 0)))
        blurred = (c[k:, k:] - c[:-k, k:] - c[k:, :-k] + c[:-k, :-k]) / (k * k)
        degraded = np.clip(blurred, 0, 255).astype(np.uint8)
        assert decode_frame_index(degraded) == index


def test_survives_vp8_at_low_bitrate() -> None:
    enc = av.CodecContext.create("libvpx", "w")
    enc.width, enc.height, enc.pix_fmt = 320, 240, "yuv420p"
    enc.bit_rate = 150_000  # well below what aiortc uses
    enc.options = {"deadline": "realtime", "cpu-used": "8", "lag-in-frames": "0"}
    dec = av.CodecContext.create("vp8", "r")
    got = []
    for k in range(30):
        frame = av.VideoFrame.from_ndarray(GEN_SMALL.planes(k), format="yuv420p")
        frame.pts = k
        for packet in enc.encode(frame):
            for out in dec.decode(packet):
                got.append(decode_frame_index(out.to_ndarray(format="rgb24")))
    assert got == list(range(len(got))) and len(got) >= 25


@pytest.mark.parametrize(
    "picture",
    [
        np.full((480, 640, 3), 128, np.uint8),  # flat grey: no contrast anywhere
        np.random.default_rng(0).integers(0, 256, (480, 640, 3), dtype=np.uint8),
        np.zeros((10, 10, 3), np.uint8),  # too small
        np.zeros((480, 640), np.uint8),  # not RGB
        np.zeros((480, 640, 3), np.float32),  # not uint8
    ],
    ids=["grey", "noise", "tiny", "2d", "float"],
)
def test_foreign_pictures_give_none(picture: np.ndarray) -> None:
    assert decode_frame_index(picture) is None


def test_content_moves_outside_the_code_band() -> None:
    a, b = GEN_VGA.planes(10)[:480], GEN_VGA.planes(11)[:480]
    band = 3 * (480 // 12)
    assert np.any(a[band:] != b[band:])


def test_rejects_odd_or_tiny_sizes() -> None:
    with pytest.raises(ValueError):
        PatternGenerator(641, 480)
    with pytest.raises(ValueError):
        PatternGenerator(16, 16)
