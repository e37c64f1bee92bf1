"""Running baseline and dF/F: Numba against the plain reference, against an exact running
percentile, and against the true baseline of simulated traces."""

import time

import numpy as np
import pytest
from scipy.ndimage import uniform_filter1d

from rtcal.deconv.dff import DffConfig, RunningDff, RunningDffReference, percentile_sorted
from rtcal.deconv.oasis import DeconvError, decay_factor
from rtcal.errors import RtcalError

FPS_HZ = 30.0


def _traces(rng, K, T, *, rate_hz=0.1, sigma=2.0):
    """(baseline, F): a bleaching, slowly wandering resting level + sparse transients + noise."""
    t = np.arange(T) / FPS_HZ
    level = rng.uniform(50, 150, (K, 1))
    base = level * np.exp(-t / 600) + 3 * np.sin(2 * np.pi * t / 240 + rng.uniform(0, 6, (K, 1)))
    S = (rng.random((K, T)) < rate_hz / FPS_HZ) * rng.uniform(10, 40, (K, T))
    g, C = decay_factor(0.8, FPS_HZ), np.zeros((K, T))
    for i in range(T):
        C[:, i] = S[:, i] + (g * C[:, i - 1] if i else 0.0)
    return base, base + C + sigma * rng.normal(size=(K, T))


def _run(stepper, F):
    out = [stepper.step(F[:, t]) for t in range(F.shape[1])]
    return np.stack([f0 for f0, _ in out], 1), np.stack([d for _, d in out], 1)


def test_percentile_rule_is_numpys():
    rng = np.random.default_rng(0)
    for m in (1, 2, 7, 60):
        a = np.sort(rng.normal(size=m))
        for q in (0.0, 8.0, 50.0, 97.5, 100.0):
            assert percentile_sorted(a, m, q) == pytest.approx(np.percentile(a, q), abs=1e-12)


def test_numba_equals_reference_exactly():
    rng = np.random.default_rng(1)
    _, F = _traces(rng, 9, 1500)
    F[2, 100:140] = np.nan  # a whole block missing
    F[4, 3] = np.inf
    F[5, :50] = np.nan  # nothing seen at first
    cfg = DffConfig(fps_hz=FPS_HZ, window_s=10.0, block_s=0.5, quantile_pct=10.0)
    offset = rng.uniform(0, 20, 9)
    fast = _run(RunningDff(cfg, offset), F)
    ref = _run(RunningDffReference(cfg, offset), F)
    np.testing.assert_array_equal(fast[0], ref[0])
    np.testing.assert_array_equal(fast[1], ref[1])


def test_baseline_tracks_exact_running_percentile_and_ignores_transients():
    rng = np.random.default_rng(2)
    K, T, sigma = 12, 9000, 2.0
    base, F = _traces(rng, K, T, sigma=sigma)
    cfg = DffConfig(fps_hz=FPS_HZ, window_s=30.0, block_s=1.0)
    f0, dff = _run(RunningDff(cfg, np.zeros(K)), F)
    B, W = cfg.block_frames, cfg.n_blocks * cfg.block_frames
    smooth = uniform_filter1d(F, B, axis=1, origin=(B - 1) // 2)  # mean of the last B frames
    exact = np.stack(
        [np.percentile(smooth[:, t - W + 1 : t + 1], 8, axis=1) for t in range(W, T)], 1
    )
    err = np.abs(f0[:, W:] - exact)
    # the block version of the exact running percentile of the smoothed trace
    assert np.median(err) < 0.2 * sigma and np.percentile(err, 99) < 1.0 * sigma
    # and close to the true resting level: transients (up to 20 sigma) do not lift it
    bias = f0[:, W:] - base[:, W:]
    assert abs(np.median(bias)) < 0.5 * sigma and np.percentile(np.abs(bias), 99) < 2.0 * sigma
    raw = np.stack([np.percentile(F[:, t - W + 1 : t + 1], 8, axis=1) for t in range(W, T, 30)], 1)
    # the same percentile of raw samples is pulled under the resting level by the noise
    # (measured: -0.53 sigma here, against +0.25 sigma for the block baseline)
    raw_bias = np.median(raw - base[:, W:T:30])
    assert raw_bias < -0.3 * sigma and abs(np.median(bias)) < abs(raw_bias)
    # at rest dF/F is about 0, with the noise of one frame
    quiet = np.abs(F - base)[:, W:] < 2 * sigma
    assert abs(np.median(dff[:, W:][quiet])) < 0.01


def test_offset_enters_the_denominator_and_nan_gives_nan():
    rng = np.random.default_rng(3)
    _, F = _traces(rng, 3, 900)
    cfg = DffConfig(fps_hz=FPS_HZ, window_s=10.0)
    plain, shifted = RunningDff(cfg, np.zeros(3)), RunningDff(cfg, np.full(3, 100.0))
    f0_a, d_a = _run(plain, F)
    f0_b, d_b = _run(shifted, F)
    np.testing.assert_array_equal(f0_a, f0_b)
    np.testing.assert_allclose(d_b * (f0_b + 100), d_a * f0_a, rtol=1e-4, atol=1e-4)
    f0, dff = plain.step(np.array([np.nan, 1.0, 2.0], np.float32))
    assert np.isnan(dff[0]) and np.isfinite(dff[1:]).all() and f0[0] == f0_a[0, -1]
    shifted.set_offset([0, 2], [0.0, 0.0])
    assert shifted.step(F[:, 0])[1][0] == pytest.approx(plain.step(F[:, 0])[1][0])


def test_components_added_and_removed_mid_stream():
    rng = np.random.default_rng(4)
    _, F = _traces(rng, 6, 1200)
    cfg = DffConfig(fps_hz=FPS_HZ, window_s=10.0)
    fast, ref = RunningDff(cfg, np.zeros(4)), RunningDffReference(cfg, np.zeros(4))
    for t in range(1200):
        if t == 500:
            fast.add_components(np.zeros(2))
            ref = _grown_reference(cfg, ref, 2)
        K = fast.n_components
        np.testing.assert_array_equal(fast.step(F[:K, t]), ref.step(F[:K, t]))
    alone = RunningDff(cfg, np.zeros(6))
    _run(alone, F[:, :700])
    alone.remove_components([1, 4])
    f0_removed, _ = _run(alone, F[[0, 2, 3, 5], 700:])
    f0_full, _ = _run(RunningDff(cfg, np.zeros(6)), F)
    np.testing.assert_array_equal(f0_removed, f0_full[[0, 2, 3, 5], 700:])


def _grown_reference(cfg, ref, n_new):
    """The reference has no add_components: a fresh one for the new rows, stitched on."""
    new = RunningDffReference(cfg, np.zeros(len(ref.offset) + n_new))
    for name in ("offset", "left", "sums", "means", "f0"):
        old_rows = getattr(ref, name)
        setattr(new, name, old_rows + getattr(new, name)[len(old_rows) :])
    return new


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"fps_hz": 0.0}, "fps_hz"),
        ({"fps_hz": 30.0, "block_s": 0.0}, "block_s"),
        ({"fps_hz": 30.0, "window_s": 0.5}, "window_s"),
        ({"fps_hz": 30.0, "window_s": 3600.0, "block_s": 0.1}, "blocks"),
        ({"fps_hz": 30.0, "quantile_pct": 101.0}, "quantile_pct"),
        ({"fps_hz": 30.0, "eps": 0.0}, "eps"),
    ],
)
def test_config_rejects_bad_values(kwargs, match):
    with pytest.raises(DeconvError, match=match) as err:
        DffConfig(**kwargs)
    assert isinstance(err.value, RtcalError)


def test_rejects_bad_offset_and_frame_shape():
    cfg = DffConfig(fps_hz=FPS_HZ)
    with pytest.raises(DeconvError, match="offset"):
        RunningDff(cfg, np.array([0.0, np.nan]))
    with pytest.raises(DeconvError, match=r"shape \(2,\)"):
        RunningDff(cfg, np.zeros(2)).step(np.zeros(3))


def test_report_step_cost():
    """Per-frame cost of the Numba step (printed with -s; no assertion on time)."""
    rng = np.random.default_rng(5)
    for K in (60, 300, 1000, 1500):
        stepper = RunningDff(DffConfig(fps_hz=FPS_HZ), np.zeros(K))
        frames = (100 + rng.normal(size=(600, K))).astype(np.float32)
        stepper.step(frames[0])
        times = []
        for F in frames[1:]:
            t0 = time.perf_counter_ns()
            stepper.step(F)
            times.append(time.perf_counter_ns() - t0)
        us = np.asarray(times) / 1e3
        print(f"RunningDff.step K={K}: median {np.median(us):.1f} us, "
              f"p99 {np.percentile(us, 99):.1f} us")
