"""Screening and centring a raw frame before registration.

One pass over the frame counts what makes it unusable for registration and
template updates, and a second writes the float32, mean-removed (optionally
b x b binned) image whose spectrum is correlated:

    mean   = average of the finite pixels
    out[i, j] = 1/b^2 sum over the b x b block of (Y - mean), non-finite pixels counted as mean
    n_nonfinite = #{NaN or +-inf pixels},  n_saturated = #{Y >= saturation_level}

The verdicts that use these counts are :class:`FrameQuality`.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum

import numba
import numpy as np


class FrameQuality(str, Enum):  # noqa: UP042 - StrEnum needs Python 3.11; we support 3.10
    """Why a frame was (not) trusted. Only OK frames move the shift and the template."""

    OK = "ok"
    NON_FINITE = "non_finite"  # too many NaN / inf pixels (all of them, for a dropped frame)
    SATURATED = "saturated"  # too many pixels at the detector's ceiling
    FEATURELESS = "featureless"  # nothing at cell scale (a constant or blank frame)
    LOW_SCORE = "low_score"  # the best correlation with the template is below min_score


@dataclass(frozen=True)
class FrameStats:
    """mean: average of the finite pixels (NaN if none); counts of non-finite and saturated
    pixels, and n_px, the number of pixels."""

    mean: float
    n_nonfinite: int
    n_saturated: int
    n_px: int

    def verdict(self, max_bad_fraction: float) -> FrameQuality:
        """NON_FINITE / SATURATED if that kind of pixel exceeds the fraction, else OK."""
        if self.n_nonfinite == self.n_px or self.n_nonfinite > max_bad_fraction * self.n_px:
            return FrameQuality.NON_FINITE
        if self.n_saturated > max_bad_fraction * self.n_px:
            return FrameQuality.SATURATED
        return FrameQuality.OK


def saturation_level_for(dtype: np.dtype, level: float | None) -> float:
    """The configured level, else the integer dtype's maximum, else +inf (floats: no check)."""
    if level is not None:
        return float(level)
    if np.dtype(dtype).kind in "ui":
        return float(np.iinfo(dtype).max)
    return float("inf")


# Reassociation lets LLVM vectorise the sums; NaN and inf keep their IEEE meaning.
_FAST = {"reassoc", "contract"}


@numba.njit(cache=True, fastmath=_FAST)
def _sum_saturated(frame, saturation_level):  # pragma: no cover - compiled
    """(sum of all pixels, number >= saturation_level); the sum is NaN / inf if any pixel is."""
    H, W = frame.shape
    level = np.float32(saturation_level)
    total = 0.0
    n_saturated = 0
    for y in range(H):
        row = frame[y]
        row_total = np.float32(0.0)  # float32 over one row, float64 across rows
        for x in range(W):
            v = np.float32(row[x])
            row_total += v
            n_saturated += v >= level
        total += row_total
    return total, n_saturated


@numba.njit(cache=True)
def _finite_stats(frame, saturation_level):  # pragma: no cover - compiled
    """(sum of finite pixels, number finite, number saturated): the slow path for bad frames."""
    H, W = frame.shape
    total = 0.0
    n_finite = 0
    n_saturated = 0
    for y in range(H):
        for x in range(W):
            v = np.float64(frame[y, x])
            if np.isfinite(v):
                total += v
                n_finite += 1
                n_saturated += v >= saturation_level
    return total, n_finite, n_saturated


@numba.njit(cache=True, fastmath=_FAST)
def _centre_bin(frame, mean, b, check_finite, out):  # pragma: no cover - compiled
    """out = b x b block means of (frame - mean); non-finite pixels count as the mean."""
    Hb, Wb = out.shape
    W = frame.shape[1]
    m32 = np.float32(mean)
    zero = np.float32(0.0)
    rows = np.empty(W, np.float32)  # sum of the block's b rows, centred
    for yb in range(Hb):
        rows[:] = zero
        for y in range(yb * b, yb * b + b):
            row = frame[y]
            for x in range(Wb * b):
                c = np.float32(row[x]) - m32
                if check_finite and not np.isfinite(c):
                    c = zero
                rows[x] += c
        o = out[yb]
        if b == 1:
            o[:] = rows[:Wb]
            continue
        scale = np.float32(1.0 / (b * b))
        for xb in range(Wb):
            acc = zero
            for x in range(xb * b, xb * b + b):
                acc += rows[x]
            o[xb] = acc * scale
    return out


def centre_frame(
    frame: np.ndarray, saturation_level: float, bin_px: int = 1, out: np.ndarray | None = None
) -> tuple[np.ndarray, FrameStats]:
    """Mean-removed, binned float32 (H // bin_px, W // bin_px) image and the frame's stats.

    frame: (H, W) any real dtype; bin_px: block side b >= 1 (edge rows/columns that
    do not fill a block are dropped).
    """
    H, W = frame.shape
    if out is None:
        out = np.empty((H // bin_px, W // bin_px), np.float32)
    frame = np.ascontiguousarray(frame)
    total, n_sat = _sum_saturated(frame, float(saturation_level))
    n_finite = H * W
    if not np.isfinite(total):  # some pixel is NaN or inf: count them properly
        total, n_finite, n_sat = _finite_stats(frame, float(saturation_level))
    mean = total / n_finite if n_finite > 0 else float("nan")
    _centre_bin(frame, mean if n_finite > 0 else 0.0, int(bin_px), n_finite < H * W, out)
    return out, FrameStats(float(mean), H * W - int(n_finite), int(n_sat), H * W)


def centre_frame_reference(
    frame: np.ndarray, saturation_level: float, bin_px: int = 1
) -> tuple[np.ndarray, FrameStats]:
    """Plain NumPy version of :func:`centre_frame` (float64 arithmetic)."""
    y = np.asarray(frame, np.float64)
    finite = np.isfinite(y)
    mean = y[finite].mean() if finite.any() else np.nan
    centred = np.where(finite, y - (mean if finite.any() else 0.0), 0.0)
    H, W = y.shape
    Hb, Wb = H // bin_px, W // bin_px
    blocks = centred[: Hb * bin_px, : Wb * bin_px].reshape(Hb, bin_px, Wb, bin_px)
    stats = FrameStats(
        float(mean), int((~finite).sum()), int((y[finite] >= saturation_level).sum()), H * W
    )
    return blocks.mean(axis=(1, 3)).astype(np.float32), stats
