"""Spike inference against the true spikes: what a closed-loop rule acting on
``spikes`` would have seen.

For each true-positive pair (an estimated component matched to a true neuron)
the frames where the component reported a spike (``spikes`` > 0) are matched to
the frames where the neuron spiked, one to one, within ``tolerance`` frames
(greedy in time order, which is optimal for intervals on a line). Only frames
where the component existed count (a component added late reports NaN before
its birth). A frame with several true spikes counts once: the online
deconvolution reports at most one event per frame.

Reported: per pair precision, recall and F1, their median over pairs with at
least one true or estimated spike, and the totals (estimated and true spikes,
matched ones) pooled over pairs.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

DEFAULT_TOLERANCE_FRAMES = 2


def match_events(est: np.ndarray, true: np.ndarray, tolerance: int) -> int:
    """How many of the event frames ``est`` (sorted int) can be paired one to one
    with frames of ``true`` (sorted int) at most ``tolerance`` apart."""
    i = j = n = 0
    while i < len(est) and j < len(true):
        if est[i] < true[j] - tolerance:
            i += 1
        elif true[j] < est[i] - tolerance:
            j += 1
        else:
            n += 1
            i += 1
            j += 1
    return n


@dataclass(frozen=True)
class SpikeScore:
    """n_pairs: true-positive pairs scored (with at least one true or estimated
    spike); n_est, n_true, n_matched: spikes pooled over them; f1_median: median
    per-pair F1; tolerance: frames."""

    n_pairs: int
    n_est: int
    n_true: int
    n_matched: int
    f1_median: float
    tolerance: int

    @property
    def precision(self) -> float:
        return self.n_matched / self.n_est if self.n_est else float("nan")

    @property
    def recall(self) -> float:
        return self.n_matched / self.n_true if self.n_true else float("nan")


def spike_scores(
    est_spikes: np.ndarray,
    frame_index: np.ndarray,
    true_spikes: np.ndarray,
    est_index: np.ndarray,
    true_index: np.ndarray,
    tolerance: int = DEFAULT_TOLERANCE_FRAMES,
) -> SpikeScore:
    """est_spikes: (K_est, n) spikes of the results (NaN where a component did not
    exist); frame_index: (n,) the movie frame of each column; true_spikes:
    (K_true, T) > 0 where a neuron spiked; est_index, true_index: the pairs."""
    if tolerance < 0:
        raise ValueError(f"tolerance={tolerance}: must be >= 0")
    frame_index = np.asarray(frame_index, np.int64)
    inside = (frame_index >= 0) & (frame_index < true_spikes.shape[1])
    f1s, n_est = [], 0
    n_true = n_matched = 0
    for e, t in zip(np.asarray(est_index), np.asarray(true_index), strict=True):
        s = np.asarray(est_spikes[e], np.float64)
        alive = inside & np.isfinite(s)
        frames = frame_index[alive]
        est = np.sort(frames[s[alive] > 0])
        true = np.sort(frames[true_spikes[t, frames] > 0])
        if not len(est) and not len(true):
            continue
        m = match_events(est, true, tolerance)
        f1s.append(2 * m / (len(est) + len(true)))
        n_est += len(est)
        n_true += len(true)
        n_matched += m
    median = float(np.median(f1s)) if f1s else float("nan")
    return SpikeScore(len(f1s), n_est, n_true, n_matched, median, int(tolerance))
