"""Whole movies: determinism, stream vs file, endless streams, 1p background, fast vs reference."""

import dataclasses
import itertools

import numpy as np
import scipy.sparse as sp
import tifffile

from rtcal.sim import BackgroundParams, Simulation, make_config, write_simulation
from rtcal.sim.config import DetectorParams
from rtcal.sim.noise import noise_variance, render_frames, render_reference
from rtcal.sim.scene import compose_scene, compose_scene_reference


def _cfg(**kw):
    base = dict(height=64, width=80, n_frames=70, n_neurons=12, chunk_frames=32, fps_hz=30.0)
    base.update(kw)
    return make_config(kw.pop("mode", "2p"), **{k: v for k, v in base.items() if k != "mode"})


def _movie(cfg):
    return np.concatenate([c.images for c in Simulation(cfg).chunks()])


def test_same_seed_same_bytes_different_seed_differs():
    a, b = _movie(_cfg(seed=5)), _movie(_cfg(seed=5))
    assert a.dtype == np.uint16 and a.shape == (70, 64, 80)
    assert a.tobytes() == b.tobytes()
    c = _movie(_cfg(seed=6))
    assert np.mean(a != c) > 0.5


def test_stream_equals_written_file(tmp_path):
    cfg = _cfg(seed=2, motion_px=1.5)
    frames = list(Simulation(cfg).stream())
    assert [f.index for f in frames] == list(range(70))
    paths = write_simulation(tmp_path / "out", cfg)
    movie = tifffile.imread(paths.movie)
    np.testing.assert_array_equal(movie, np.stack([f.image for f in frames]))
    with np.load(paths.truth) as truth:
        np.testing.assert_array_equal(truth["calcium"], np.stack([f.calcium for f in frames]).T)
        np.testing.assert_array_equal(truth["spikes"], np.stack([f.spikes for f in frames]).T)
        np.testing.assert_array_equal(truth["shifts"], np.stack([f.shift for f in frames]))


def test_endless_stream_keeps_going_with_bounded_values():
    bg = BackgroundParams(bleach_tau_s=2.0, bleach_fraction=0.5)  # reach the floor quickly
    cfg = _cfg(height=32, width=32, n_frames=None, n_neurons=5, chunk_frames=100, background=bg)
    means = []
    for frame in itertools.islice(Simulation(cfg).stream(), 3000):
        assert frame.image.max() < 60000
        assert np.all(np.isfinite(frame.calcium)) and frame.calcium.max() < 100
        means.append(frame.image.mean())
    means = np.array(means)
    assert frame.index == 2999
    early, late = means[:30].mean(), means[-500:].mean()
    assert 0.35 < late / early < 0.8  # bleached towards the floor (0.5), not to zero
    assert np.abs(means[-1000:-500].mean() / late - 1) < 0.1  # and stays there


def test_one_photon_background_much_brighter_than_cells():
    sim = Simulation(_cfg(mode="1p", height=96, width=96, n_neurons=10))
    t = sim.tissue
    bg = t.canvas.crop(t.background.mean.reshape(t.canvas.shape))
    for k in range(t.n_cells):
        cy, cx = t.centers[k].astype(int)
        assert bg[cy, cx] > 5 * t.baseline[k]
    two = Simulation(_cfg(height=96, width=96, n_neurons=10)).tissue
    assert np.median(t.radius_px) > 1.3 * np.median(two.radius_px)


def test_values_realistic_range_for_2p():
    movie = _movie(_cfg(height=96, width=96, n_neurons=20, n_frames=64))
    assert 150 < movie.mean() < 500
    assert np.percentile(movie, 99.9) < 4000


def test_noise_level_zero_is_noiseless_scene_and_noise_scales():
    quiet = _movie(_cfg(noise_level=0.0, motion_px=0.0)).astype(float)
    loud = _movie(_cfg(noise_level=1.0, motion_px=0.0)).astype(float)
    louder = _movie(_cfg(noise_level=2.0, motion_px=0.0)).astype(float)
    assert abs(loud.mean() / quiet.mean() - 1) < 0.05  # same scene, noise is zero-mean
    r1, r2 = np.std(loud - quiet), np.std(louder - quiet)
    assert 1.7 < r2 / r1 < 2.3


def test_compose_scene_fast_matches_reference():
    rng = np.random.default_rng(0)
    mean = rng.uniform(100, 300, 500).astype(np.float32)
    spatial = rng.normal(0, 20, (3, 500)).astype(np.float32)
    temporal = rng.normal(0, 1, (7, 3))
    levels = 1 + rng.exponential(0.3, (7, 9))
    weights = sp.random(9, 500, density=0.05, random_state=1, format="csr", dtype=np.float32)
    np.testing.assert_allclose(compose_scene(mean, spatial, temporal, levels, weights),
                               compose_scene_reference(mean, spatial, temporal, levels, weights),
                               rtol=1e-5, atol=1e-3)


def test_noise_fast_path_matches_reference_statistics():
    det = DetectorParams(dropped_line_prob=0.0)
    margin, level = 2, np.array([20.0, 300.0, 3000.0])
    scene = np.repeat(level, 40 * 64).reshape(3, 40, 64).astype(np.float32)
    scene = np.pad(np.repeat(scene[None], 16, 0).reshape(48, 40, 64),
                   ((0, 0), (margin, margin), (margin, margin)), mode="edge")
    shifts, gain = np.zeros((48, 2)), np.ones(48)
    fast = np.empty((48, 40, 64), np.uint16)
    render_frames(scene, gain, shifts, margin, np.arange(48, dtype=np.uint64), det, 1.0, fast)
    ref = render_reference(scene, gain, shifts, margin, np.random.default_rng(0), det, 1.0)
    for i, e in enumerate(level):
        f, r = fast[i::3].astype(float), ref[i::3].astype(float)
        assert abs(f.mean() - r.mean()) < 0.02 * e + 2
        assert abs(f.std() / r.std() - 1) < 0.06
        expect = det.offset_counts + e
        assert abs(f.mean() / expect - 1) < 0.03
        line_var = (det.line_gain_sd * e) ** 2
        assert abs(f.var() / (noise_variance(np.array(e), det, 1.0) + line_var) - 1) < 0.1


def test_dropped_lines_are_zero_rows():
    cfg = _cfg(detector=DetectorParams(dropped_line_prob=0.05), n_frames=40)
    movie = _movie(cfg)
    zero_rows = np.all(movie == 0, axis=2)
    assert 0.02 < zero_rows.mean() < 0.09
    clean = _movie(dataclasses.replace(cfg, noise_level=0.0))
    assert not np.all(clean == 0, axis=2).any()


def test_noise_of_frames_with_nearby_seeds_is_independent():
    det = DetectorParams(dropped_line_prob=0.0, line_gain_sd=0.0)
    scene = np.full((32, 36, 36), 300.0, np.float32)
    out = np.empty((32, 32, 32), np.uint16)
    render_frames(scene, np.ones(32), np.zeros((32, 2)), 2, np.arange(32, dtype=np.uint64),
                  det, 1.0, out)
    d = out.astype(float) - out.mean()
    assert abs(np.mean(d[1:] * d[:-1]) / np.mean(d * d)) < 0.02  # streams do not overlap
    assert abs(out.mean() / (det.offset_counts + 300) - 1) < 0.01
