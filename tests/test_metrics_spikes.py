"""Spike inference scores: one-to-one event matching within a tolerance, and
what ``rtcal eval`` reports."""

import numpy as np
import pytest

from rtcal.metrics.spikes import match_events, spike_scores


def test_events_pair_one_to_one_within_the_tolerance():
    assert match_events(np.array([10, 20, 30]), np.array([11, 22, 40]), 2) == 2
    assert match_events(np.array([10, 20, 30]), np.array([11, 22, 40]), 1) == 1
    # two reports near one spike: one of them matches
    assert match_events(np.array([10, 11]), np.array([10]), 2) == 1
    # one report between two spikes: it matches one
    assert match_events(np.array([12]), np.array([10, 14]), 2) == 1
    # greedy in time order is optimal: the first report takes the first spike
    assert match_events(np.array([9, 12]), np.array([10, 13]), 1) == 2
    assert match_events(np.array([], np.int64), np.array([3]), 5) == 0


def test_scores_count_only_frames_where_the_component_existed():
    T = 100
    true = np.zeros((2, T))
    true[0, [10, 50, 90]] = 1
    true[1, [5, 60]] = 2  # two spikes in one frame count once
    est = np.zeros((2, T))
    est[0, [11, 50, 70]] = 0.3  # 2 matched, 1 false
    est[1, :40] = np.nan  # born at frame 40: the spike at 5 is not counted
    est[1, [60, 61]] = 0.5
    s = spike_scores(est, np.arange(T), true, np.array([0, 1]), np.array([0, 1]))
    assert (s.n_pairs, s.n_est, s.n_true, s.n_matched) == (2, 5, 4, 3)
    assert s.precision == pytest.approx(3 / 5) and s.recall == pytest.approx(3 / 4)
    assert s.f1_median == pytest.approx(np.median([2 * 2 / 6, 2 * 1 / 3]))
    # results covering only movie frames 50..99
    s = spike_scores(est[:, 50:], np.arange(50, T), true, np.array([0]), np.array([0]))
    assert (s.n_est, s.n_true, s.n_matched) == (2, 2, 1)
    with pytest.raises(ValueError, match="tolerance"):
        spike_scores(est, np.arange(T), true, np.array([0]), np.array([0]), tolerance=-1)


def test_a_silent_pair_with_no_reports_is_not_scored():
    est, true = np.zeros((1, 50)), np.zeros((1, 50))
    s = spike_scores(est, np.arange(50), true, np.array([0]), np.array([0]))
    assert s.n_pairs == 0 and np.isnan(s.f1_median) and np.isnan(s.precision)
