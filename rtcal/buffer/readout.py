"""Numba kernels that turn a window's sums into images (arrays in, arrays out).

Both have readable NumPy twins that the tests hold them to:
``rtcal.buffer.summary.local_correlation`` (from the frames) and
``rtcal.buffer.reference.activity_scores``.
"""

from __future__ import annotations

import numba
import numpy as np

SQRT_PI_OVER_2 = float(np.sqrt(np.pi) / 2.0)  # E|d| = 2 sigma / sqrt(pi), d ~ N(0, 2 sigma^2)
NOISE_FLOOR = 1e-6
# (dy, dx) of the x_* sums, as rtcal.buffer.fold.FORWARD_NEIGHBOURS, and their sums' rows.
_DY = (0, 1, 1, 1)
_DX = (1, -1, 0, 1)


@numba.njit(cache=True)
def local_correlation(sums, mean, std, n_frames, out) -> None:
    """Mean Pearson correlation of each pixel with its 8 neighbours, from the window
    sums (7, H, W) (rows 3..6: Sum d_p d_q for the forward neighbours), the mean and
    std of d (H, W) and T. Edge pixels average the neighbours they have; a pair with
    a zero std counts 0. out: (H, W) float32."""
    H, W = mean.shape
    total = np.zeros((H, W))
    count = np.zeros((H, W))
    inv_t = 1.0 / n_frames
    for c in range(4):
        dy = _DY[c]
        dx = _DX[c]
        for i in range(H - dy):
            q_i = i + dy
            for j in range(max(0, -dx), min(W, W - dx)):
                q_j = j + dx
                sd = std[i, j] * std[q_i, q_j]
                r = 0.0
                if sd > 0:
                    r = (sums[3 + c, i, j] * inv_t - mean[i, j] * mean[q_i, q_j]) / sd
                total[i, j] += r
                total[q_i, q_j] += r
                count[i, j] += 1
                count[q_i, q_j] += 1
    for i in range(H):
        for j in range(W):
            v = total[i, j] / max(count[i, j], 1.0)
            out[i, j] = min(1.0, max(-1.0, v))


@numba.njit(cache=True)
def activity_scores(blocks, threshold, out) -> None:
    """Key-frame score of each frame from block means a (T, P, Q) float32: per block,
    sigma = mean_t |a_t - a_{t-1}| sqrt(pi) / 2 (floored), and
    out[t] = sum over blocks of max(0, (a_t - mean_t a) / sigma - threshold). (T,)."""
    T, P, Q = blocks.shape
    total = np.zeros((P, Q))
    diff = np.zeros((P, Q))
    for t in range(T):  # frames outermost: each frame is one contiguous read
        for p in range(P):
            for q in range(Q):
                total[p, q] += blocks[t, p, q]
                if t > 0:
                    diff[p, q] += abs(blocks[t, p, q] - blocks[t - 1, p, q])
    mean = total / T
    inv_sigma = np.empty((P, Q))
    for p in range(P):
        for q in range(Q):
            inv_sigma[p, q] = 1.0 / max(diff[p, q] / (T - 1) * SQRT_PI_OVER_2, NOISE_FLOOR)
    for t in range(T):
        score = 0.0
        for p in range(P):
            for q in range(Q):
                rise = (blocks[t, p, q] - mean[p, q]) * inv_sigma[p, q] - threshold
                if rise > 0:
                    score += rise
        out[t] = score
