"""Correlation of estimated calcium traces with the true calcium.

For a matched pair (estimated i, true j) the estimate's columns are movie frames
``frame_index``; the true calcium is indexed by movie frame. Over the columns
where the estimate (and the truth) is finite (a component's trace is NaN before it was born),

    r_ij = sum_t (x_t - x_bar)(y_t - y_bar) / sqrt(sum_t (x_t - x_bar)^2 sum_t (y_t - y_bar)^2),

x = C_est[i, cols], y = C_true[j, frame_index[cols]] (Pearson), in float64.
"""

from __future__ import annotations

import numpy as np

from rtcal.errors import RtcalError


class TraceFramesError(RtcalError):
    """The results refer to movie frames the truth does not have."""


def pearson(x: np.ndarray, y: np.ndarray) -> float:
    """Pearson correlation of two 1-D arrays in float64, clipped to [-1, 1].

    NaN if fewer than 2 samples or either has zero variance.
    """
    x = np.asarray(x, np.float64)
    y = np.asarray(y, np.float64)
    if x.size < 2:
        return float("nan")
    xc, yc = x - x.mean(), y - y.mean()
    denom = np.sqrt(np.dot(xc, xc) * np.dot(yc, yc))
    if denom == 0:
        return float("nan")
    return float(np.clip(np.dot(xc, yc) / denom, -1.0, 1.0))


def trace_correlations(
    traces: np.ndarray,
    frame_index: np.ndarray,
    calcium: np.ndarray,
    est_index: np.ndarray,
    true_index: np.ndarray,
) -> np.ndarray:
    """Pearson r of each pair (traces[est_index[m]], calcium[true_index[m]]).

    traces: float (K_est, T) NaN where the component did not exist yet
    frame_index: int64 (T,) movie frame of each column of traces
    calcium: float (K_true, T_true) indexed by movie frame
    est_index, true_index: int64 (M,) the pairs
    Returns float64 (M,); NaN where fewer than 2 finite frames or a flat trace.
    Raises TraceFramesError if frame_index reaches outside [0, T_true).
    """
    frame_index = np.asarray(frame_index, np.int64)
    if traces.shape[1] != frame_index.shape[0]:
        raise TraceFramesError(
            f"traces have {traces.shape[1]} columns but frame_index has {frame_index.shape[0]}"
        )
    n_true_frames = calcium.shape[1]
    if frame_index.size and (frame_index.min() < 0 or frame_index.max() >= n_true_frames):
        raise TraceFramesError(
            f"results cover movie frames {frame_index.min()}..{frame_index.max()}, "
            f"but the truth calcium has {n_true_frames} frames"
        )
    out = np.full(len(est_index), np.nan)
    for m, (i, j) in enumerate(zip(est_index, true_index, strict=True)):
        x, y = traces[i], calcium[j, frame_index]
        cols = np.isfinite(x) & np.isfinite(y)
        out[m] = pearson(x[cols], y[cols])
    return out


def median_or_none(values: np.ndarray) -> float | None:
    """Median of the finite values, or None if there are none."""
    finite = values[np.isfinite(values)]
    return float(np.median(finite)) if finite.size else None
