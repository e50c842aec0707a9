"""Synthetic camera picture: moving content plus the frame index written in big blocks.

The index survives VP8 at low bitrates because each bit is a pair of 40x40-pixel blocks (at
640x480), one white and one black (Manchester style): the decoder compares the two blocks of a
pair instead of thresholding, and refuses a pair whose contrast is too weak. Layout, relative
to the frame size so any resolution works: the top 3 of 12 block rows, 16 blocks per row,
hold 24 pairs = 24 bits; the rest of the picture moves (a sliding bar over a gradient).
"""

from __future__ import annotations

import numpy as np

INDEX_BITS = 24
INDEX_MODULO = 1 << INDEX_BITS
_COLS = 16
_ROWS = 12
_CODE_ROWS = 3  # 3 * 16 blocks = 24 pairs
_MIN_CONTRAST = 60.0
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

    def __init__(self, width: int, height: int) -> None:
        check_size(width, height)
        self.width, self.height = width, height
        bw, bh = _block_size(width, height)
        self._bw, self._bh = bw, bh
        # Static background: a diagonal gradient under the code band.
        ys, xs = np.mgrid[0:height, 0:width]
        self._background = (48 + (xs + ys) * 128 // (width + height)).astype(np.uint8)
        self._code_h = _CODE_ROWS * bh
        self._chroma = np.full((height // 2, width), 128, dtype=np.uint8)

    def planes(self, index: int) -> np.ndarray:
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
        out[h:] = self._chroma
        return out


def _block_means(luma: np.ndarray, width: int, height: int) -> np.ndarray:
    bw, bh = _block_size(width, height)
    # Only the inner half of each block: edges blur under compression and chroma subsampling.
    y0, x0 = bh // 4, bw // 4
    means = np.empty(_CODE_ROWS * _COLS, dtype=np.float64)
    for b in range(_CODE_ROWS * _COLS):
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
    means = _block_means(luma, width, height)
    value = 0
    for bit in range(INDEX_BITS):
        first, second = _pair_blocks(bit)
        diff = means[first] - means[second]
        if abs(diff) < _MIN_CONTRAST:
            return None
        if diff > 0:
            value |= 1 << bit
    return value
