"""Rigid motion: statistics follow motion_px, sign convention, fast kernel vs reference."""

import numpy as np

from rtcal.sim.config import DetectorParams
from rtcal.sim.motion import MotionModel, max_shift_px, shift_bilinear
from rtcal.sim.noise import render_frames

NOISELESS = DetectorParams(offset_counts=0.0)


def _shifts(m, n=60_000, fps=30.0, seed=0):
    model = MotionModel(m, fps)
    return np.concatenate([model.step(np.random.default_rng([seed, c]), 1000)
                           for c in range(n // 1000)])


def test_no_motion_gives_zero_shifts():
    assert not _shifts(0.0, n=2000).any()


def test_shift_statistics_follow_motion_px():
    s1 = _shifts(1.0)
    # RMS of jitter + drift is motion_px per axis; twitches add a little
    rms = np.sqrt(np.mean(s1**2, axis=0))
    assert np.all((rms > 0.75) & (rms < 1.4)), rms
    # frame-to-frame jitter is sub-pixel but present
    step = np.abs(np.diff(s1, axis=0))
    assert 0.05 < np.median(step) < 0.6
    # occasional twitches: brief large displacements
    assert np.abs(s1).max() > 3.0
    assert np.mean(np.hypot(*s1.T) > 3.0) < 0.05
    # linear in motion_px for the same seed (until clipping)
    np.testing.assert_allclose(_shifts(2.5, n=5000), 2.5 * _shifts(1.0, n=5000), rtol=1e-5,
                               atol=1e-5)
    assert np.abs(s1).max() <= max_shift_px(1.0)


def test_shift_sign_content_moves_by_plus_shift():
    margin = 6
    scene = np.zeros((1, 32 + 2 * margin, 32 + 2 * margin), np.float32)
    scene[0, 10 + margin, 20 + margin] = 1000.0  # truth feature at (10, 20)
    out = np.empty((1, 32, 32), np.uint16)
    render_frames(scene, np.ones(1), np.array([[2.0, -3.0]]), margin, np.zeros(1, np.uint64),
                  NOISELESS, 0.0, out)
    assert np.unravel_index(out[0].argmax(), (32, 32)) == (12, 17)


def test_fast_shift_matches_reference_bilinear():
    rng = np.random.default_rng(0)
    margin = 5
    scene = rng.uniform(0, 500, (3, 40 + 2 * margin, 30 + 2 * margin)).astype(np.float32)
    shifts = np.array([[0.3, -1.7], [-2.25, 0.5], [4.0, -4.9]])
    out = np.empty((3, 40, 30), np.uint16)
    render_frames(scene, np.ones(3), shifts, margin, np.zeros(3, np.uint64), NOISELESS, 0.0, out)
    for t in range(3):
        ref = np.floor(shift_bilinear(scene[t], shifts[t], margin) + 0.5)
        assert np.abs(out[t].astype(float) - ref).max() <= 1
