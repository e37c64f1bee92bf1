"""The activity ceiling: the F1 a detector would score if it found exactly the
cells that fire in the frames it saw, and nothing else.

A simulated cell that never spikes in a recording shows only through its
resting fluorescence, and a soma hides the neuropil behind it, so a dim one is
often darker than its surroundings (``tools/missed_cells.py``). The ceiling
says how much of a target activity can reach at all: in 500-frame windows of
the default 2p simulation about half the cells are silent.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from rtcal.metrics.snr import recall_by_snr


@dataclass(frozen=True)
class Ceiling:
    """f1 of finding exactly the n_active cells with >= min_spikes spikes out of n_true."""

    f1: float
    n_active: int
    n_true: int
    min_spikes: int


def activity_ceiling(spike_counts, min_spikes: int = 1) -> Ceiling:
    """spike_counts: each true cell's number of spikes (one array, or a list of arrays
    pooled over movies or windows)."""
    if min_spikes < 1:
        raise ValueError(f"min_spikes={min_spikes}: must be >= 1")
    counts = np.concatenate([np.ravel(c) for c in spike_counts]) if isinstance(
        spike_counts, list | tuple) else np.ravel(spike_counts)
    n_true = int(counts.size)
    n_active = int((counts >= min_spikes).sum())
    f1 = 2 * n_active / (n_active + n_true) if n_true else float("nan")
    return Ceiling(f1, n_active, n_true, int(min_spikes))


# Interior edges of the spike-count bins of ``rtcal eval``: 0, 1, 2-4, 5-9, 10 or more.
DEFAULT_SPIKE_EDGES: tuple[int, ...] = (1, 2, 5, 10)


@dataclass(frozen=True)
class SpikeBin:
    """True neurons with lo <= spikes < hi (hi = None: no upper end); recall = n_tp / n_true
    (NaN for an empty bin)."""

    lo: int
    hi: int | None
    n_true: int
    n_tp: int
    recall: float


def recall_by_spikes(spike_counts: np.ndarray, tp_true_index: np.ndarray,
                     edges: tuple[int, ...] = DEFAULT_SPIKE_EDGES) -> tuple[SpikeBin, ...]:
    """Recall per bin of spike count: [0, e_1), [e_1, e_2), ..., [e_n, inf) (the binning
    of :func:`rtcal.metrics.snr.recall_by_snr`, on counts)."""
    if not edges or edges[0] < 1:
        raise ValueError(f"spike-count bin edges must increase from >= 1, got {edges}")
    bins = recall_by_snr(np.asarray(spike_counts, np.float64), tp_true_index,
                         tuple(float(e) for e in edges))
    return tuple(SpikeBin(0 if i == 0 else int(b.snr_lo),
                          None if i == len(bins) - 1 else int(b.snr_hi),
                          b.n_true, b.n_tp, b.recall) for i, b in enumerate(bins))
