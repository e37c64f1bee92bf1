"""Trace correlation of matched pairs with the true calcium."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rtcal.errors import RtcalError
from rtcal.metrics.traces import TraceFramesError, median_or_none, pearson, trace_correlations


def calcium(k: int, t: int, seed: int = 0) -> np.ndarray:
    """Spiky positive calcium-like traces, float32 (k, t)."""
    rng = np.random.default_rng(seed)
    spikes = (rng.random((k, t)) < 0.05).astype(np.float64)
    c = np.zeros((k, t))
    for i in range(1, t):
        c[:, i] = 0.9 * c[:, i - 1] + spikes[:, i]
    return c.astype(np.float32)


def test_scaled_copy_correlates_exactly_one():
    c = calcium(1, 300)[0]
    assert pearson(2.0 * c, c) == 1.0  # x2 is exact in float32


@settings(max_examples=50, deadline=None)
@given(st.floats(0.01, 100.0), st.floats(-50.0, 50.0), st.integers(0, 10_000))
def test_positive_affine_copy_correlates_one(scale, offset, seed):
    c = calcium(1, 200, seed)[0]
    if c.std() == 0:
        return
    est = (scale * c + offset).astype(np.float32)
    assert pearson(est, c) == pytest.approx(1.0, abs=1e-6)
    assert pearson(-est, c) == pytest.approx(-1.0, abs=1e-6)


def test_pearson_matches_numpy_and_handles_degenerate_input():
    rng = np.random.default_rng(1)
    x, y = rng.normal(size=50), rng.normal(size=50)
    assert pearson(x, y) == pytest.approx(np.corrcoef(x, y)[0, 1], abs=1e-14)
    assert np.isnan(pearson(np.ones(10), y[:10]))
    assert np.isnan(pearson(x[:1], y[:1]))


def test_nan_before_birth_is_ignored_and_frame_index_maps_columns():
    # results cover movie frames 100..399; component 0 was born at column 50
    true_c = calcium(2, 500)
    frame_index = np.arange(100, 400)
    traces = np.stack([3.0 * true_c[1, 100:400] + 1.0, true_c[0, 100:400]]).astype(np.float32)
    traces[0, :50] = np.nan
    r = trace_correlations(traces, frame_index, true_c, np.array([0, 1]), np.array([1, 0]))
    assert r == pytest.approx([1.0, 1.0], abs=1e-6)
    # pairing with the wrong neuron is far from 1: the matching is used
    wrong = trace_correlations(traces, frame_index, true_c, np.array([0]), np.array([0]))
    assert wrong[0] < 0.5


def test_misaligned_frames_lower_the_correlation():
    true_c = calcium(1, 300)
    traces = true_c[:, 10:290].copy()  # columns are movie frames 10..289
    ok = trace_correlations(traces, np.arange(10, 290), true_c, np.array([0]), np.array([0]))
    off = trace_correlations(traces, np.arange(0, 280), true_c, np.array([0]), np.array([0]))
    assert ok[0] == pytest.approx(1.0, abs=1e-12)
    assert off[0] < 0.9


def test_column_count_must_match_frame_index():
    with pytest.raises(TraceFramesError, match="columns"):
        trace_correlations(np.zeros((1, 5), np.float32), np.arange(4),
                           calcium(1, 10), np.array([0]), np.array([0]))


def test_unborn_component_gives_nan_not_an_error():
    true_c = calcium(1, 20)
    traces = np.full((1, 20), np.nan, np.float32)
    traces[0, 19] = 1.0  # one finite frame only
    r = trace_correlations(traces, np.arange(20), true_c, np.array([0]), np.array([0]))
    assert np.isnan(r[0])


def test_frames_beyond_truth_raise():
    with pytest.raises(TraceFramesError, match="frames") as err:
        trace_correlations(np.zeros((1, 5), np.float32), np.arange(8, 13),
                           calcium(1, 10), np.array([0]), np.array([0]))
    assert isinstance(err.value, RtcalError)


def test_median_or_none():
    assert median_or_none(np.array([np.nan, 0.2, 0.4, 0.9])) == pytest.approx(0.4)
    assert median_or_none(np.array([np.nan])) is None
    assert median_or_none(np.zeros(0)) is None
