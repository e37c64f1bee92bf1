"""Simulated training windows: determinism, shapes, target conventions, seed ranges."""

import dataclasses

import numpy as np
import pytest
import torch

from rtcal.detect.train_data import (
    VALIDATION_SEED_BASE,
    TrainDataConfig,
    TrainDataError,
    block_mean,
    centre_heatmap,
    collate,
    draw_sim_config,
    make_sample,
    training_seeds,
    transform_sample,
    validation_seeds,
    window_plan,
)

CFG = TrainDataConfig(size_px=64, window_frames=(60, 80), trace_frames=24, max_neurons=12)


def test_same_seed_same_sample_and_shapes():
    a, b = make_sample(CFG, 11), make_sample(CFG, 11)
    for f in dataclasses.fields(a):
        x, y = getattr(a, f.name), getattr(b, f.name)
        if isinstance(x, np.ndarray):
            assert x.tobytes() == y.tobytes(), f.name
        else:
            assert x == y, f.name
    k = len(a.radius_px)
    assert 1 <= k <= 12 and 60 <= a.n_frames <= 80
    assert a.inputs.shape[1:] == (64, 64) and a.inputs.dtype == np.float32
    assert a.footprints.shape == (k, 64, 64) and a.masks4.shape == (k, 16, 16)
    assert a.centre.shape == (1, 16, 16) and a.centres.shape == (k, 2)
    assert a.trace_frames.shape == (24, 32, 32) and a.calcium.shape == (k, 24)
    assert a.frame_index[0] == 0 and a.frame_index[-1] == a.n_frames - 1
    assert abs(a.trace_frames.mean() - 1) < 1e-4
    c = make_sample(CFG, 12)
    assert c.inputs.shape != a.inputs.shape or not np.array_equal(c.inputs, a.inputs)


def test_both_modes_and_randomised_settings_are_drawn():
    cfgs = [draw_sim_config(TrainDataConfig(), s) for s in range(40)]
    modes = [c.mode for c in cfgs]
    assert 5 <= modes.count("1p") <= 20  # p_one_photon = 0.3
    assert len({c.n_neurons for c in cfgs}) > 10
    assert min(c.fps_hz for c in cfgs) < 12 and max(c.fps_hz for c in cfgs) > 25
    assert len({c.noise_level for c in cfgs}) == 40
    assert all(0.4 <= c.noise_level <= 2.0 for c in cfgs)


def test_targets_follow_the_conventions():
    s = make_sample(CFG, 3)
    full = s.footprints >= 0.2 * s.footprints.max(axis=(1, 2), keepdims=True)
    np.testing.assert_allclose(s.masks4, block_mean(full.astype(np.float32), 4), atol=1e-6)
    assert np.isclose(s.centre.max(), 1.0) and (s.centre >= 1).sum() <= len(s.centres)
    heat = centre_heatmap(np.array([[10.0, 21.0]]), np.array([8.0]), 16)
    peak = np.unravel_index(np.argmax(heat[0]), (16, 16))
    assert peak == (2, 5)  # (10.5 / 4 - 0.5, 21.5 / 4 - 0.5) rounded
    assert heat[0, 2, 7] == pytest.approx(np.exp(-4 / 8))  # sigma = radius / 4 = 2


def test_collate_and_seed_ranges():
    batch = collate([make_sample(CFG, 1), make_sample(CFG, 2)])
    assert batch.inputs.shape[0] == 2 and batch.inputs.dtype == torch.float32
    assert batch.centre.shape == (2, 1, 16, 16)
    assert [t.masks.shape[0] for t in batch.targets] == [len(s.radius_px) for s in batch.samples]
    train = training_seeds(3, 1000, 4)
    assert train == list(range(30_004_000, 30_004_004))
    assert min(validation_seeds(5)) == VALIDATION_SEED_BASE > max(training_seeds(99, 10**5, 8))
    with pytest.raises(TrainDataError, match="validation"):
        training_seeds(100, 0, 1)


def test_bad_settings_are_named():
    with pytest.raises(TrainDataError, match="size_px"):
        TrainDataConfig(size_px=100)
    with pytest.raises(TrainDataError, match="trace_frames"):
        TrainDataConfig(window_frames=(50, 60), trace_frames=64)
    with pytest.raises(TrainDataError, match="coverage"):
        TrainDataConfig(coverage=(0.3, 0.1))


def test_symmetries_move_pixels_and_points_alike():
    s = make_sample(CFG, 5)
    point = np.array([[3.0, 50.0]])
    one = dataclasses.replace(s, footprints=np.zeros((1, 64, 64), np.float32), centres=point)
    one.footprints[0, 3, 50] = 1
    views = {transform_sample(one, v).footprints.tobytes() for v in range(8)}
    assert len(views) == 8  # all eight symmetries differ
    for view in range(8):
        t = transform_sample(one, view)
        assert np.argwhere(t.footprints[0]).tolist() == t.centres.astype(int).tolist()
        assert t.calcium is one.calcium
        same = transform_sample(s, view)
        assert same.masks4.shape == s.masks4.shape
        assert same.trace_frames.shape == s.trace_frames.shape
        assert np.array_equal(np.sort(same.inputs, axis=None), np.sort(s.inputs, axis=None))


def test_window_plan_reuses_windows_under_different_views():
    plans = [window_plan(0, step, 2, 4) for step in range(8)]
    assert {seed for plan in plans[:4] for seed, _ in plan} == {0, 1}
    assert {seed for plan in plans[4:] for seed, _ in plan} == {2, 3}
    assert len({plan[0][1] for plan in plans[:4]}) == 4  # four distinct views of window 0
    assert [seed for seed, _ in window_plan(0, 5, 2, 1)] == [10, 11]


def test_window_source_with_workers_gives_the_same_windows():
    from rtcal.detect.window_source import WindowSource

    inline = WindowSource(CFG, base_seed=1, batch_size=2, views_per_window=2)
    pooled = WindowSource(CFG, base_seed=1, batch_size=2, views_per_window=2, workers=1)
    try:
        for step in range(3):
            for a, b in zip(inline.samples(step), pooled.samples(step), strict=True):
                assert a.seed == b.seed and np.array_equal(a.inputs, b.inputs)
                assert np.array_equal(a.calcium, b.calcium)
    finally:
        pooled.close()
    assert [s.seed for s in inline.samples(0)] == [s.seed for s in inline.samples(1)]
