"""Summary images of a window of frames: mean, std, max, local correlation, peak-to-noise.

These are the images that both the classical seed detector and the learned
detector read. All functions take a float window ``Y`` of shape (T, H, W) and
return float32 images of shape (H, W). They are pure kernels: arrays in,
arrays out.

Local correlation (Smith & Hausser 2010; CNMF-E's ``Cn``): for each pixel the
mean Pearson correlation of its time course with its 8 neighbours. It is
computed from running sums over time chunks, so memory stays at a few (H, W)
images whatever T is, and the same sums can be kept incrementally by a rolling
buffer.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

# MAD of a difference of two iid Gaussians -> sigma of one: 0.6745 * sqrt(2)
_MAD_DIFF_TO_SIGMA = 1.0 / (0.6744897501960817 * np.sqrt(2.0))

# The four "forward" neighbour offsets; the other four follow by symmetry.
_FORWARD_NEIGHBOURS = ((0, 1), (1, -1), (1, 0), (1, 1))


@dataclass(frozen=True)
class SummaryImages:
    """Summary images of one window; every field float32 (H, W).

    mean, std, max: over time. corr: 8-neighbour local correlation in [-1, 1].
    noise: per-pixel noise sigma (robust, from temporal first differences).
    pnr: peak-to-noise ratio, (max - median) / noise.
    """

    mean: np.ndarray
    std: np.ndarray
    max: np.ndarray
    corr: np.ndarray
    noise: np.ndarray
    pnr: np.ndarray


def noise_std(Y: np.ndarray, *, rows: int = 32) -> np.ndarray:
    """Per-pixel noise sigma from the median absolute first difference over time.

    Calcium transients are sparse and slow compared with shot noise, so the
    median of |y[t+1] - y[t]| is dominated by noise: sigma = MAD / (0.6745 sqrt 2).
    Y: (T, H, W) with T >= 2. Returns float32 (H, W), floored at a tiny positive value.
    """
    if Y.shape[0] < 2:
        raise ValueError(f"noise_std needs at least 2 frames, got {Y.shape[0]}")
    out = np.empty(Y.shape[1:], np.float32)
    for r0 in range(0, Y.shape[1], rows):  # row blocks keep the temporaries small
        block = time_last(Y[:, r0 : r0 + rows]).astype(np.float32, copy=False)
        diff = np.abs(np.diff(block, axis=-1))
        out[r0 : r0 + rows] = np.median(diff, axis=-1) * _MAD_DIFF_TO_SIGMA
    return np.maximum(out, 1e-6)


def time_last(block: np.ndarray) -> np.ndarray:
    """(T, H, W) -> a contiguous (H, W, T) copy, for statistics over time. Medians along the last,
    contiguous axis partition 1.8x faster than along the first (measured at
    300 x 512 x 512: 1.04 s against 1.87 s), with the same result."""
    return np.ascontiguousarray(block.transpose(1, 2, 0))


def _shifted_pair(img: np.ndarray, dy: int, dx: int) -> tuple[np.ndarray, np.ndarray]:
    """Views (a, b) of ``img[..., H, W]`` such that b[p] is the (dy, dx) neighbour of a[p]."""
    H, W = img.shape[-2:]
    ys_a = slice(0, H - dy)
    ys_b = slice(dy, H)
    if dx >= 0:
        xs_a, xs_b = slice(0, W - dx), slice(dx, W)
    else:
        xs_a, xs_b = slice(-dx, W), slice(0, W + dx)
    return img[..., ys_a, xs_a], img[..., ys_b, xs_b]


def local_correlation(Y: np.ndarray, *, chunk: int = 32) -> np.ndarray:
    """Mean correlation of every pixel with its 8 neighbours. Y: (T, H, W) -> float32 (H, W).

    Pixels with zero variance get correlation 0. Edge pixels average over the
    neighbours they have.
    """
    T, H, W = Y.shape
    mean = Y.mean(axis=0, dtype=np.float64)
    # Accumulate centred sums in float64 to avoid cancellation.
    sq = np.zeros((H, W))
    cross = [np.zeros((H - dy, W - abs(dx))) for dy, dx in _FORWARD_NEIGHBOURS]
    for t0 in range(0, T, chunk):
        Z = Y[t0 : t0 + chunk].astype(np.float64) - mean
        sq += np.einsum("thw,thw->hw", Z, Z)
        for acc, (dy, dx) in zip(cross, _FORWARD_NEIGHBOURS, strict=True):
            a, b = _shifted_pair(Z, dy, dx)
            acc += np.einsum("thw,thw->hw", a, b)
    norm = np.sqrt(sq)
    total = np.zeros((H, W))
    count = np.zeros((H, W))
    for acc, (dy, dx) in zip(cross, _FORWARD_NEIGHBOURS, strict=True):
        na, nb = _shifted_pair(norm, dy, dx)
        with np.errstate(invalid="ignore", divide="ignore"):
            r = np.where((na > 0) & (nb > 0), acc / (na * nb), 0.0)
        # r is the correlation of pixel p with its forward neighbour q: credit both.
        ta, tb = _shifted_pair(total, dy, dx)
        ca, cb = _shifted_pair(count, dy, dx)
        ta += r
        tb += r
        ca += 1
        cb += 1
    return (total / np.maximum(count, 1)).astype(np.float32)


def temporal_median(Y: np.ndarray, *, rows: int = 32) -> np.ndarray:
    """Median over time of Y (T, H, W) -> float32 (H, W), a block of rows at a time
    (np.median copies its input; this keeps the copy to T x rows x W)."""
    out = np.empty(Y.shape[1:], np.float32)
    for r0 in range(0, Y.shape[1], rows):
        out[r0 : r0 + rows] = np.median(time_last(Y[:, r0 : r0 + rows]), axis=-1)
    return out


def summary_images(Y: np.ndarray) -> SummaryImages:
    """All summary images of a window Y: (T, H, W), T >= 2."""
    Yf = Y.astype(np.float32, copy=False)
    noise = noise_std(Yf)
    median = temporal_median(Yf)
    peak = Yf.max(axis=0)
    return SummaryImages(
        mean=Yf.mean(axis=0).astype(np.float32),
        std=Yf.std(axis=0).astype(np.float32),
        max=peak.astype(np.float32),
        corr=local_correlation(Yf),
        noise=noise,
        pnr=((peak - median) / noise).astype(np.float32),
    )
