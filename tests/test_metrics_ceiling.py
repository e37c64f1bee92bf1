"""The activity ceiling: F1 of finding exactly the cells that spike."""

import numpy as np
import pytest

from rtcal.metrics import activity_ceiling


def test_ceiling_pools_counts_and_takes_a_spike_threshold():
    counts = [np.array([0, 1, 3, 0]), np.array([2, 0])]
    one = activity_ceiling(counts)
    assert (one.n_active, one.n_true) == (3, 6)
    assert one.f1 == pytest.approx(2 * 3 / (3 + 6))  # P = 1, R = 1/2
    two = activity_ceiling(counts, 2)
    assert (two.n_active, two.f1) == (2, pytest.approx(2 * 2 / (2 + 6)))
    assert activity_ceiling(np.array([4, 1, 7])).f1 == 1.0
    assert activity_ceiling(np.zeros(5, int)).f1 == 0.0
    assert np.isnan(activity_ceiling(np.zeros(0, int)).f1)
    with pytest.raises(ValueError, match="min_spikes"):
        activity_ceiling(counts, 0)


def test_recall_by_spikes_bins_counts_from_zero_to_open_end():
    from rtcal.metrics.ceiling import recall_by_spikes

    bins = recall_by_spikes(np.array([0, 0, 1, 3, 6, 12, 12]), np.array([0, 3, 5]))
    assert [(b.lo, b.hi) for b in bins] == [(0, 1), (1, 2), (2, 5), (5, 10), (10, None)]
    assert [(b.n_true, b.n_tp) for b in bins] == [(2, 1), (1, 0), (1, 1), (1, 0), (2, 1)]
    with pytest.raises(ValueError, match="from >= 1"):
        recall_by_spikes(np.array([1]), np.array([0]), edges=(0, 2))
    with pytest.raises(ValueError, match="must increase"):
        recall_by_spikes(np.array([1]), np.array([0]), edges=(2, 1))
