"""Synthetic camera picture: moving content plus the frame index written in big blocks.

The index survives VP8 at low bitrates because each bit is a pair of 40x40-pixel blocks (at
640x480), one white and one black (Manchester style): the decoder compares the two blocks of a
pair instead of thresholding, and refuses a pair whose contrast is too weak. Layout, relative
to the frame size so any resolution works: the top 3 of 12 block rows, 16 blocks per row,
hold 24 pairs = 24 bits; the rest of the picture moves (a sliding bar over a gradient).

Optionally up to 3 values (the arm's joint positions at capture) follow in the same code,
3 block rows each: ``round(value * 256) + 2**23`` as 24 bits (1/256 unit, +-32768 units).
A model can read them with the same pair comparison (bench/fidelity's camera oracle does).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

INDEX_BITS = 24
INDEX_MODULO = 1 << INDEX_BITS
_COLS = 16
_ROWS = 12
_CODE_ROWS = 3  # 3 * 16 blocks = 24 pairs
_MIN_CONTRAST = 60.0
MAX_VALUES = 3
VALUE_SCALE = 256.0
VALUE_OFFSET = 1 << 23
_VALUE_ROWS = 3  # block rows per value
_WHITE, _BLACK = 235, 16  # video-range luma


def _block_size(width: int, height: int) -> tuple[int, int]:
    return width // _COLS, height // _ROWS


def _pair_blocks(pair: int) -> tuple[int, int]:
    """Block numbers (row-major over the code rows) of bit `pair`'s two halves."""
    return 2 * pair, 2 * pair + 1


def check_size(width: int, height: int) -> None:
    if width < 2 * _COLS or height < 2 * _ROWS or width % 2 or height % 2:
        raise ValueError(f"frame size must be even and at least {2 * _COLS}x{2 * _ROWS}")


class PatternGenerator:
    """Makes yuv420p planes (as one (H*3/2) x W array, PyAV's layout) for frame k."""

    def __init__(self, width: int, height: int, values: int = 0) -> None:
        check_size(width, height)
        if not 0 <= values <= MAX_VALUES:
            raise ValueError(f"a frame carries 0..{MAX_VALUES} values, got {values}")
        self.width, self.height = width, height
        self.values = values
        bw, bh = _block_size(width, height)
        self._bw, self._bh = bw, bh
        # Static background: a diagonal gradient under the code band.
        ys, xs = np.mgrid[0:height, 0:width]
        self._background = (48 + (xs + ys) * 128 // (width + height)).astype(np.uint8)
        self._code_h = (_CODE_ROWS + _VALUE_ROWS * values) * bh
        self._chroma = np.full((height // 2, width), 128, dtype=np.uint8)

    def planes(self, index: int, values: Sequence[float] = ()) -> np.ndarray:
        h, w = self.height, self.width
        out = np.empty((h * 3 // 2, w), dtype=np.uint8)
        luma = out[:h]
        luma[:] = self._background
        # Moving content: a vertical bar sliding across the lower part, one step per frame.
        bar_w = max(2, w // 20)
        x0 = (index * max(1, w // 60)) % (w - bar_w)
        luma[self._code_h :, x0 : x0 + bar_w] = _WHITE
        # The code band.
        value = index % INDEX_MODULO
        luma[: self._code_h] = _BLACK
        for bit in range(INDEX_BITS):
            one = (value >> bit) & 1
            first, second = _pair_blocks(bit)
            white_block = first if one else second
            r, c = divmod(white_block, _COLS)
            luma[r * self._bh : (r + 1) * self._bh, c * self._bw : (c + 1) * self._bw] = _WHITE
        for slot in range(self.values):
            drawn = values[slot] if slot < len(values) else 0.0
            self._draw_word(luma, _CODE_ROWS + _VALUE_ROWS * slot, encode_value(drawn))
        out[h:] = self._chroma
        return out


    def _draw_word(self, luma: np.ndarray, row0: int, word: int) -> None:
        for bit in range(INDEX_BITS):
            first, second = _pair_blocks(bit)
            r, c = divmod(first if (word >> bit) & 1 else second, _COLS)
            r += row0
            luma[r * self._bh : (r + 1) * self._bh, c * self._bw : (c + 1) * self._bw] = _WHITE


def encode_value(value: float) -> int:
    """A joint position as the 24-bit word drawn in the frame (clipped to the range)."""
    if not math.isfinite(value):
        value = 0.0
    return min(INDEX_MODULO - 1, max(0, round(value * VALUE_SCALE) + VALUE_OFFSET))


def decode_values(rgb: np.ndarray, count: int) -> list[float] | None:
    """The ``count`` values drawn by PatternGenerator(values=count), or None."""
    if rgb.ndim != 3 or rgb.shape[2] != 3 or rgb.dtype != np.uint8:
        return None
    height, width = rgb.shape[:2]
    rows = _CODE_ROWS + _VALUE_ROWS * count
    means = _block_means(rgb[: rows * (height // _ROWS), :, 1], width, height, rows)
    out: list[float] = []
    for slot in range(count):
        word = _read_word(means[(_CODE_ROWS + _VALUE_ROWS * slot) * _COLS :])
        if word is None:
            return None
        out.append((word - VALUE_OFFSET) / VALUE_SCALE)
    return out


def _read_word(means: np.ndarray) -> int | None:
    value = 0
    for bit in range(INDEX_BITS):
        first, second = _pair_blocks(bit)
        diff = means[first] - means[second]
        if abs(diff) < _MIN_CONTRAST:
            return None
        if diff > 0:
            value |= 1 << bit
    return value


def _block_means(luma: np.ndarray, width: int, height: int, rows: int = _CODE_ROWS
                 ) -> np.ndarray:
    bw, bh = _block_size(width, height)
    # Only the inner half of each block: edges blur under compression and chroma subsampling.
    y0, x0 = bh // 4, bw // 4
    means = np.empty(rows * _COLS, dtype=np.float64)
    for b in range(rows * _COLS):
        r, c = divmod(b, _COLS)
        top, left = r * bh + y0, c * bw + x0
        means[b] = luma[top : top + bh // 2, left : left + bw // 2].mean()
    return means


def decode_frame_index(rgb: np.ndarray) -> int | None:
    """The index written by PatternGenerator (mod 2**24), or None if the picture is not ours."""
    if rgb.ndim != 3 or rgb.shape[2] != 3 or rgb.dtype != np.uint8:
        return None
    height, width = rgb.shape[:2]
    if width < 2 * _COLS or height < 2 * _ROWS:
        return None
    # The pattern is grey: green alone stands for the luma well enough.
    luma = rgb[: _CODE_ROWS * (height // _ROWS), :, 1]
    return _read_word(_block_means(luma, width, height))
