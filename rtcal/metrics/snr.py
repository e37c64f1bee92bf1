"""Recall as a function of each true neuron's single-spike SNR."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

# Interior bin edges; the first bin is open below, the last open above, so
# every neuron with a finite SNR falls in exactly one bin.
DEFAULT_SNR_EDGES: tuple[float, ...] = (1.0, 2.0, 4.0, 8.0, 16.0)


@dataclass(frozen=True)
class SnrBin:
    """True neurons with snr_lo <= snr < snr_hi (snr_lo = -inf / snr_hi = inf at the ends).

    recall = n_tp / n_true (NaN when the bin is empty).
    """

    snr_lo: float
    snr_hi: float
    n_true: int
    n_tp: int
    recall: float


def recall_by_snr(
    snr: np.ndarray, tp_true_index: np.ndarray, edges: tuple[float, ...] = DEFAULT_SNR_EDGES
) -> tuple[SnrBin, ...]:
    """Recall per SNR bin.

    snr: float (K_true,) single-spike SNR of each true neuron (non-finite: left out)
    tp_true_index: int (n_tp,) true neurons matched as true positives
    edges: increasing interior edges e_1 < ... < e_n; bins are
        [-inf, e_1), [e_1, e_2), ..., [e_n, inf)
    """
    snr = np.asarray(snr, np.float64)
    bounds = np.concatenate([[-np.inf], np.asarray(edges, np.float64), [np.inf]])
    if np.any(np.diff(bounds) <= 0):
        raise ValueError(f"SNR bin edges must increase, got {edges}")
    is_tp = np.zeros(snr.size, bool)
    is_tp[np.asarray(tp_true_index, np.int64)] = True
    bin_of = np.searchsorted(bounds, snr, side="right") - 1  # NaN -> last index + 1
    bins = []
    for b in range(bounds.size - 1):
        member = bin_of == b
        n_true = int(member.sum())
        n_tp = int((member & is_tp).sum())
        recall = n_tp / n_true if n_true else float("nan")
        bins.append(SnrBin(float(bounds[b]), float(bounds[b + 1]), n_true, n_tp, recall))
    return tuple(bins)
