"""Keyframe buffer: Numba fold against the NumPy reference, incremental == offline,
summary images against rtcal.buffer.summary, key-frame choice, bad input."""

import numpy as np
import pytest

from rtcal.buffer import fold, readout
from rtcal.buffer import reference as ref
from rtcal.buffer.accumulator import SummaryAccumulator
from rtcal.buffer.keyframe import KeyframeBuffer, KeyframeError, select_key_frames
from rtcal.buffer.summary import local_correlation, noise_std
from rtcal.detect.inputs import N_SUMMARY, input_channels


def _noise_movie(n_frames, height, width, seed=0):
    """Noise on a sloping, flickering background: every statistic is exercised."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:height, :width]
    slope = 200.0 + 3.0 * yy + 2.0 * xx
    flicker = 1.0 + 0.05 * rng.standard_normal((n_frames, 1, 1))
    return (slope * flicker + rng.normal(0, 5, (n_frames, height, width))).astype(np.float32)


def _check_window(acc, window):
    """The accumulator's exact window sums and peak equal the reference's."""
    z = ref.flat_movie(window)
    sums, peak = acc._exact_sums()
    want = ref.window_sums(z - acc.ref)  # the sums are of z minus the first flat frame
    scale = np.abs(want).max(axis=(1, 2)) + 1e-9
    assert (np.abs(sums - want).max(axis=(1, 2)) / scale).max() < 1e-5
    np.testing.assert_allclose(peak, ref.pair_peak(z), atol=1e-4 * np.abs(z).max())


@pytest.mark.parametrize("capacity", [2, 3, 9, 23])
def test_fold_matches_reference_through_wraparound(capacity):
    H, W = 13, 21  # not multiples of the 4- and 8-px blocks
    Y = _noise_movie(4 * capacity + 40, H, W, seed=capacity)
    acc = SummaryAccumulator(H, W, capacity)
    for n in range(len(Y)):
        acc.push(Y[n])
        if n >= 1 and (n % 5 == 0 or n == len(Y) - 1):
            _check_window(acc, Y[acc.start : acc.n_pushed])
    assert acc.n_pushed > acc.n_slots  # the ring wrapped around


def test_no_drift_over_a_long_run():
    """Thousands of add/remove cycles: the totals still equal the window's sums."""
    Y = _noise_movie(64, 16, 16, seed=11)
    acc = SummaryAccumulator(16, 16, 20)
    for n in range(5000):
        acc.push(Y[(7 * n) % 64])
    order = [(7 * n) % 64 for n in range(5000 - 20, 5000)]
    _check_window(acc, Y[order])


def test_per_frame_images_match_reference():
    Y = _noise_movie(6, 37, 45)
    acc = SummaryAccumulator(37, 45, 6)
    for frame in Y:
        acc.push(frame)
    slots = acc.window_slots()
    np.testing.assert_allclose(acc.bg[slots], ref.background(Y), rtol=1e-5)
    np.testing.assert_allclose(acc.act[slots], ref.activity_blocks(Y), rtol=1e-4, atol=1e-3)


def test_activity_kernel_matches_reference():
    rng = np.random.default_rng(2)
    blocks = rng.normal(0, 1, (50, 7, 9)).astype(np.float32)
    blocks[20, 3:5, 2:6] += 8.0
    out = np.empty(50, np.float32)
    readout.activity_scores(blocks, 2.0, out)
    want = ref.activity_scores(blocks, 2.0)
    np.testing.assert_allclose(out, want, rtol=1e-4, atol=1e-4)
    assert np.argmax(out) == 20


def test_incremental_equals_offline_after_wraparound():
    T = 40
    Y = _noise_movie(150, 32, 24, seed=3)
    buffer = KeyframeBuffer(32, 24, T, n_key=3)
    for t, frame in enumerate(Y):
        buffer.push(1000 + 2 * t, frame)
    snap = buffer.snapshot()
    assert buffer.acc.n_pushed > buffer.acc.n_slots
    np.testing.assert_array_equal(snap.frames, Y[-T:])
    np.testing.assert_array_equal(snap.indices, 1000 + 2 * np.arange(150 - T, 150))
    offline = input_channels(Y[-T:], n_key=3)
    assert snap.channels.shape == offline.shape == (N_SUMMARY + 3, 32, 24)
    assert snap.channels.dtype == np.float32
    np.testing.assert_allclose(snap.channels, offline, atol=2e-4)


def test_summary_images_agree_with_offline_references():
    Y = _noise_movie(120, 24, 28, seed=5)
    acc = SummaryAccumulator(24, 28, 80)
    for frame in Y:
        acc.push(frame)
    window = Y[-80:]
    z = ref.flat_movie(window)
    s = acc.stats()
    np.testing.assert_allclose(s.mean, window.mean(axis=0), rtol=1e-5)
    np.testing.assert_allclose(s.flat_mean, z.mean(axis=0), atol=1e-3)
    np.testing.assert_allclose(s.std, z.std(axis=0), rtol=1e-4)
    np.testing.assert_allclose(s.corr, local_correlation(z), atol=1e-4)
    # Noise: mean |diff| (here) and median |diff| (summary.py) both estimate sigma = 5.
    ratio = np.median(s.noise / noise_std(z.astype(np.float32)))
    assert 0.93 < ratio < 1.07
    assert 4.6 < np.median(s.noise) < 5.4
    np.testing.assert_allclose(s.hp_max, ref.pair_peak(z) - z.mean(axis=0), atol=1e-3)


def _firing_movie(active_frames, n_frames=120, size=48, seed=0):
    """Eight cells; each fires once, two per listed frame, on noise. Returns the movie."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:size, :size]
    centres = rng.uniform(6, size - 6, (8, 2))
    shapes = np.exp(-((yy - centres[:, :1, None]) ** 2 + (xx - centres[:, 1:, None]) ** 2) / 8.0)
    trace = np.zeros((8, n_frames))
    for cell in range(8):
        onset = active_frames[cell % len(active_frames)]
        trace[cell, onset:] = 60.0 * np.exp(-np.arange(n_frames - onset) / 4.0)
    movie = 300.0 + np.einsum("kt,khw->thw", trace, shapes)
    return (movie + rng.normal(0, 5, movie.shape)).astype(np.float32)


def test_key_frames_are_the_active_ones():
    active = [17, 55, 90]
    Y = _firing_movie(active)
    buffer = KeyframeBuffer(48, 48, len(Y), n_key=3)
    for t, frame in enumerate(Y):
        buffer.push(t, frame)
    stats = buffer.acc.stats()
    keys = buffer.key_positions(stats.activity)
    assert sorted(keys.tolist()) == active  # the onsets (transients peak there)
    quiet = np.delete(stats.activity, [a + d for a in active for d in range(8)])
    assert stats.activity[active].min() > 5 * max(quiet.max(), 1.0)


def test_select_key_frames_keeps_its_distance():
    score = np.array([0, 9, 8, 7, 0, 0, 0, 6, 0, 5], float)
    assert select_key_frames(score, 3, 1).tolist() == [1, 2, 3]
    assert select_key_frames(score, 3, 3).tolist() == [1, 7, 4]  # 9 is too close to 7
    # Not enough room at that distance: the best of the rest fill the slots.
    assert select_key_frames(score, 4, 5).tolist() == [1, 7, 2, 3]
    assert select_key_frames(np.zeros(5), 2, 1).tolist() == [0, 1]  # ties: older first


def test_constant_movie_gives_zero_channels():
    buffer = KeyframeBuffer(16, 16, 10, n_key=2)
    for t in range(12):
        buffer.push(t, np.full((16, 16), 7.0, np.float32))
    channels = buffer.channels()
    assert np.isfinite(channels).all()
    assert np.abs(channels).max() == 0.0


def test_bad_input_raises_clear_errors():
    with pytest.raises(KeyframeError, match="capacity_frames"):
        KeyframeBuffer(16, 16, 1)
    with pytest.raises(KeyframeError, match="height"):
        KeyframeBuffer(2, 16, 10)
    with pytest.raises(KeyframeError, match="n_key=5 exceeds"):
        KeyframeBuffer(16, 16, 4, n_key=5)
    with pytest.raises(KeyframeError, match="n_key"):
        KeyframeBuffer(16, 16, 10, n_key=0)
    buffer = KeyframeBuffer(16, 16, 10, n_key=3)
    with pytest.raises(KeyframeError, match=r"shape \(16, 16\)"):
        buffer.push(0, np.zeros((16, 15), np.float32))
    with pytest.raises(KeyframeError, match="float32"):
        buffer.push(0, np.zeros((16, 16)))
    with pytest.raises(KeyframeError, match="NaN"):
        buffer.push(0, np.full((16, 16), np.nan, np.float32))
    with pytest.raises(KeyframeError, match="at least 3"):
        buffer.push(0, np.zeros((16, 16), np.float32))
        buffer.channels()
    with pytest.raises(KeyframeError, match="must increase"):
        buffer.push(0, np.zeros((16, 16), np.float32))
    with pytest.raises(KeyframeError, match="integer"):
        buffer.push(1.5, np.zeros((16, 16), np.float32))
    assert len(buffer) == 1  # the rejected pushes left no trace
    with pytest.raises(KeyframeError, match=r"\(T, H, W\)"):
        input_channels(np.zeros((16, 16), np.float32))
    with pytest.raises(KeyframeError, match="real numeric"):
        input_channels(np.zeros((5, 16, 16), np.complex64))
    with pytest.raises(KeyframeError, match="needs at least 4"):
        input_channels(np.zeros((3, 16, 16), np.float32), n_key=4)
    with pytest.raises(KeyframeError, match="n_key"):
        input_channels(np.zeros((8, 16, 16), np.float32), n_key=2.0)


def test_block_and_band_layout():
    acc = SummaryAccumulator(512, 512, 300)
    assert acc.block == 16 and acc.n_slots == 300 + 16 + 2
    assert len(acc._band_edges) - 1 <= acc.block  # a block's bands finish before the next
    assert fold.coarse_shape(13, 21, fold.BG_SHIFT) == (2, 3)


def test_float32_block_sums_stay_accurate_on_bright_static_structure():
    """Level 1000x the noise: sums of squares in float32 would lose the variance if
    they were not taken about a reference image."""
    rng = np.random.default_rng(9)
    yy, xx = np.mgrid[:24, :24]
    level = 2000.0 + 20000.0 * np.exp(-((yy - 12) ** 2 + (xx - 12) ** 2) / 10.0)
    Y = (level + rng.normal(0, 1.0, (300, 24, 24))).astype(np.float32)
    acc = SummaryAccumulator(24, 24, 100)
    for frame in Y:
        acc.push(frame)
    z = ref.flat_movie(Y[-100:])
    np.testing.assert_allclose(acc.stats().std, z.std(axis=0), rtol=0.02)
