"""Per-frame processing time from a run's timestamps."""

from __future__ import annotations

import numpy as np


def frame_times_ms(t_received_ns: np.ndarray, t_done_ns: np.ndarray, skip: int = 0) -> np.ndarray:
    """Time from each frame's arrival to its result, ms, float64 (T - skip,).

    skip: leading frames to leave out; the initialisation window's frames wait
    for the detector, and would otherwise swamp the steady-state figures.
    """
    return (t_done_ns[skip:] - t_received_ns[skip:]) / 1e6


def describe_ms(ms: np.ndarray) -> str:
    """'median 1.23 ms, p99 1.80 ms, max 7.10 ms over N frames' (or 'no frames')."""
    if ms.size == 0:
        return "no frames"
    return (
        f"median {np.median(ms):.2f} ms, p99 {np.percentile(ms, 99):.2f} ms, "
        f"max {ms.max():.2f} ms over {ms.size} frames"
    )
