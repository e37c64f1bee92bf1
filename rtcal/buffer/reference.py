"""Plain NumPy definitions of what the rolling-buffer kernels compute, for tests.

Readable and slow: each function takes a whole window at once. The fast paths
(``rtcal.buffer.fold`` kernels driven by ``SummaryAccumulator``) must agree
with these to float rounding.
"""

from __future__ import annotations

import numpy as np
from scipy.ndimage import gaussian_filter

from rtcal.buffer.fold import (
    ACT_SHIFT,
    BACKGROUND_SIGMA_PX,
    BG_SHIFT,
    FORWARD_NEIGHBOURS,
    TRUNCATE_SIGMAS,
)


def block_means(images: np.ndarray, shift: int) -> np.ndarray:
    """Means over (1 << shift)-px square blocks of (..., H, W); edge blocks average
    the pixels they have. float64 (..., ceil(H / step), ceil(W / step))."""
    step = 1 << shift
    H, W = images.shape[-2:]
    Hc, Wc = -(-H // step), -(-W // step)
    pad = [(0, 0)] * (images.ndim - 2) + [(0, Hc * step - H), (0, Wc * step - W)]
    x = np.pad(images.astype(np.float64), pad)
    ones = np.pad(np.ones((H, W)), pad[-2:])
    shape = x.shape[:-2] + (Hc, step, Wc, step)
    sums = x.reshape(shape).sum(axis=(-3, -1))
    counts = ones.reshape(Hc, step, Wc, step).sum(axis=(1, 3))
    return sums / counts


def background(frames: np.ndarray) -> np.ndarray:
    """Smooth background of each frame (T, H, W) at 8-px block resolution: block means
    blurred by BACKGROUND_SIGMA_PX / 8 blocks, symmetric edges. float64 (T, Hb, Wb)."""
    blocks = block_means(frames, BG_SHIFT)
    sigma = BACKGROUND_SIGMA_PX / (1 << BG_SHIFT)
    return gaussian_filter(
        blocks, (0, sigma, sigma), mode="reflect", truncate=TRUNCATE_SIGMAS
    )


def upsample(coarse: np.ndarray, shift: int, shape: tuple[int, int]) -> np.ndarray:
    """Nearest-neighbour expansion of block images (..., Hc, Wc) to (..., H, W)."""
    step = 1 << shift
    big = np.repeat(np.repeat(coarse, step, axis=-2), step, axis=-1)
    return big[..., : shape[0], : shape[1]]


def flat_movie(frames: np.ndarray) -> np.ndarray:
    """z = y - background (nearest 8-px block). (T, H, W) -> float64 (T, H, W)."""
    return frames.astype(np.float64) - upsample(background(frames), BG_SHIFT, frames.shape[1:])


def activity_blocks(frames: np.ndarray) -> np.ndarray:
    """4 x 4 block means of the flat movie. (T, H, W) -> float64 (T, Ha, Wa)."""
    return block_means(flat_movie(frames), ACT_SHIFT)


def window_sums(z: np.ndarray) -> np.ndarray:
    """The seven sums of ``fold.STAT_NAMES`` over a flat window z (T, H, W): Sum z,
    Sum z^2, Sum over consecutive pairs |z_t - z_{t-1}|, and Sum z_p z_q for the
    forward neighbours (zero where q is outside the frame). float64 (7, H, W)."""
    T, H, W = z.shape
    out = np.zeros((7, H, W))
    out[0] = z.sum(axis=0)
    out[1] = (z * z).sum(axis=0)
    out[2] = np.abs(np.diff(z, axis=0)).sum(axis=0)
    for c, (dy, dx) in enumerate(FORWARD_NEIGHBOURS, start=3):
        q = np.zeros_like(z)
        ys = slice(0, H - dy)
        if dx >= 0:
            q[:, ys, : W - dx] = z[:, dy:, dx:]
        else:
            q[:, ys, -dx:] = z[:, dy:, : W + dx]
        out[c] = (z * q).sum(axis=0)
    return out


def pair_peak(z: np.ndarray) -> np.ndarray:
    """max over t >= 1 of (z_t + z_{t-1}) / 2. (T, H, W) -> float64 (H, W)."""
    return (0.5 * (z[1:] + z[:-1])).max(axis=0)


def activity_scores(blocks: np.ndarray, threshold: float) -> np.ndarray:
    """Key-frame score per frame from block means (T, P, Q): the summed rise above
    ``threshold`` noise sigmas (sigma from mean |first difference|). float64 (T,)."""
    a = blocks.astype(np.float64)
    sigma = np.abs(np.diff(a, axis=0)).mean(axis=0) * np.sqrt(np.pi) / 2
    rise = (a - a.mean(axis=0)) / np.maximum(sigma, 1e-6) - threshold
    return np.maximum(rise, 0.0).sum(axis=(1, 2))
