"""Streaming OASIS: Numba against the plain reference, streaming against batch, spikes, NaN."""

import time

import numpy as np
import pytest

from rtcal.deconv.oasis import DeconvError, decay_factor, oasis_ar1
from rtcal.deconv.online import OnlineDeconvolver, OnlineDeconvolverReference
from rtcal.errors import RtcalError

FPS_HZ = 30.0


def _simulate(rng, K, T, *, rate_hz=0.5, sigma=0.15, fps_hz=FPS_HZ):
    """AR(1) calcium with spikes of size 0.5..1.5, plus white noise: (g, S, C, Y) with Y float32."""
    g = np.array([decay_factor(tau, fps_hz) for tau in rng.uniform(0.4, 1.5, K)])
    S = (rng.random((K, T)) < rate_hz / fps_hz) * rng.uniform(0.5, 1.5, (K, T))
    C = np.zeros((K, T))
    for t in range(T):
        C[:, t] = S[:, t] + (g * C[:, t - 1] if t else 0.0)
    Y = (C + sigma * rng.normal(size=C.shape)).astype(np.float32)
    return g, S, C, Y


def _run(stepper, Y):
    out = [stepper.step(Y[:, t]) for t in range(Y.shape[1])]
    return np.stack([c for c, _ in out], 1), np.stack([s for _, s in out], 1)


@pytest.mark.parametrize(
    ("max_pools", "s_min", "lam"), [(3, 0.0, 0.0), (64, 0.0, 0.2), (64, 0.45, 0.0)]
)
def test_numba_equals_reference_exactly(max_pools, s_min, lam):
    rng = np.random.default_rng(0)
    g, _, _, Y = _simulate(rng, 12, 800)
    Y[2, 100:104] = np.nan  # a gap
    Y[5, :3] = np.nan  # a component whose first frames are missing
    Y[7, 400] = np.inf
    kw = {"lam": lam, "max_pools": max_pools}
    fast = _run(OnlineDeconvolver(g, np.full(12, s_min), **kw), Y)
    ref = _run(OnlineDeconvolverReference(g, np.full(12, s_min), **kw), Y)
    np.testing.assert_array_equal(fast[0], ref[0])
    np.testing.assert_array_equal(fast[1], ref[1])


def test_streaming_end_equals_batch_and_realtime_is_close():
    rng = np.random.default_rng(1)
    K, T = 8, 3000
    g, _, C, Y = _simulate(rng, K, T)
    s_min = np.full(K, 3 * 0.15)
    unbounded = OnlineDeconvolver(g, s_min, max_pools=T)
    bounded = OnlineDeconvolver(g, s_min, max_pools=64)
    c_rt, _ = _run(unbounded, Y)
    c_rt64, _ = _run(bounded, Y)
    for k in range(K):
        c_batch, _ = oasis_ar1(Y[k], g[k], s_min=s_min[k])
        first, c_end = unbounded.denoised_tail(k)
        assert first == 0
        np.testing.assert_allclose(c_end, c_batch, atol=1e-5)  # float32 batch output
        first, c_tail = bounded.denoised_tail(k)  # the frames the 64 pools still cover
        assert first < T - 200
        np.testing.assert_allclose(c_tail, c_batch[first:], atol=1e-5)
        # the real-time value (last pool at each frame) against the batch solution and truth
        assert np.corrcoef(c_rt[k], c_batch)[0, 1] > 0.95
        assert np.corrcoef(c_rt[k], C[k])[0, 1] > 0.95
    np.testing.assert_array_equal(c_rt64, c_rt)  # 64 pools never cut a merge here


def test_realtime_spikes_match_true_spike_times():
    rng = np.random.default_rng(2)
    K, T, sigma = 10, 3000, 0.15
    g, S, _, Y = _simulate(rng, K, T, sigma=sigma)
    _, s_rt = _run(OnlineDeconvolver(g, np.full(K, 3 * sigma)), Y)
    n_true = n_found = n_hit = 0
    for k in range(K):
        true, found = np.flatnonzero(S[k]), np.flatnonzero(s_rt[k])
        n_true, n_found = n_true + true.size, n_found + found.size
        n_hit += sum(found.size > 0 and np.abs(found - t).min() <= 1 for t in true)
    # the provisional spike emitted at each frame, within a frame of every true spike
    assert n_hit >= 0.98 * n_true
    assert n_found <= 1.25 * n_true


def test_nan_frame_decays_and_leaves_state_intact():
    rng = np.random.default_rng(3)
    g, _, _, Y = _simulate(rng, 4, 400)
    Y_gap = Y.copy()
    Y_gap[1, 200] = np.nan
    a, b = OnlineDeconvolver(g, np.full(4, 0.45)), OnlineDeconvolver(g, np.full(4, 0.45))
    c_a, _ = _run(a, Y[:, :200])
    _run(b, Y_gap[:, :200])
    c, s = b.step(Y_gap[:, 200])
    assert np.isfinite(c).all() and s[1] == 0
    assert c[1] == pytest.approx(c_a[1, -1] * g[1], rel=1e-6)  # the previous value, decayed
    c_after, _ = _run(b, Y_gap[:, 201:])
    assert np.isfinite(c_after).all()
    # the other components are untouched; component 1 is the batch solution with the gap
    c_ref, _ = _run(a, Y[:, 200:])
    np.testing.assert_array_equal(c_after[[0, 2, 3]], c_ref[[0, 2, 3], 1:])
    first, tail = b.denoised_tail(1)
    assert first == 0 and np.isfinite(tail).all()
    assert np.corrcoef(tail, oasis_ar1(Y[1], g[1], s_min=0.45)[0])[0, 1] > 0.999


def test_components_added_mid_stream_run_their_own_clock():
    rng = np.random.default_rng(4)
    g, _, _, Y = _simulate(rng, 6, 600)
    s_min = np.full(6, 0.45)
    dec = OnlineDeconvolver(g[:3], s_min[:3], max_pools=16)
    ref = OnlineDeconvolverReference(g[:3], s_min[:3], max_pools=16)
    for t in range(600):
        if t == 250:
            for x in (dec, ref):
                x.add_components(g[3:], s_min[3:])
        K = dec.n_components
        c, s = dec.step(Y[:K, t])
        c_ref, s_ref = ref.step(Y[:K, t])
        np.testing.assert_array_equal(c, c_ref)
        np.testing.assert_array_equal(s, s_ref)
    alone = OnlineDeconvolver(g[3:], s_min[3:], max_pools=16)
    c_alone, _ = _run(alone, Y[3:, 250:])
    np.testing.assert_array_equal(c[3:], c_alone[:, -1])  # growth did not disturb anybody
    assert dec.denoised_tail(4)[1].size == alone.denoised_tail(1)[1].size


def test_remove_components_keeps_the_others():
    rng = np.random.default_rng(5)
    g, _, _, Y = _simulate(rng, 5, 300)
    dec, full = OnlineDeconvolver(g, np.full(5, 0.45)), OnlineDeconvolver(g, np.full(5, 0.45))
    _run(dec, Y[:, :150])
    dec.remove_components([1, 3])
    c, _ = _run(dec, Y[[0, 2, 4], 150:])
    c_full, _ = _run(full, Y)
    np.testing.assert_array_equal(c, c_full[[0, 2, 4], 150:])


def test_set_params_continues_without_a_spurious_spike():
    rng = np.random.default_rng(6)
    g, _, _, Y = _simulate(rng, 3, 400)
    dec = OnlineDeconvolver(g, np.full(3, 0.45))
    c_before, _ = _run(dec, Y[:, :200])
    dec.set_params(0, g=decay_factor(2.0, FPS_HZ))
    dec.set_params([1, 2], s_min=0.6)
    c, s = dec.step(np.full(3, np.nan, np.float32))
    assert c[0] == pytest.approx(c_before[0, -1] * decay_factor(2.0, FPS_HZ), rel=1e-6)
    assert s[0] == 0
    with pytest.raises(DeconvError, match="k_index"):
        dec.set_params(3, s_min=0.1)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"g": [0.9, 1.0], "s_min": [0, 0]}, "g must be in"),
        ({"g": [0.9], "s_min": [-1.0]}, "s_min"),
        ({"g": [0.9, 0.8], "s_min": [0.1]}, "equal length"),
        ({"g": [0.9], "s_min": [0.1], "max_pools": 1}, "max_pools"),
        ({"g": [0.9], "s_min": [0.1], "lam": -1.0}, "lam"),
    ],
)
def test_rejects_bad_arguments(kwargs, match):
    with pytest.raises(DeconvError, match=match) as err:
        OnlineDeconvolver(**kwargs)
    assert isinstance(err.value, RtcalError)


def test_rejects_wrong_frame_shape():
    dec = OnlineDeconvolver(np.full(3, 0.9), np.zeros(3))
    with pytest.raises(DeconvError, match=r"shape \(3,\)"):
        dec.step(np.zeros(4, np.float32))


def test_report_step_cost():
    """Per-frame cost of the Numba step (printed with -s; no assertion on time)."""
    rng = np.random.default_rng(7)
    for K in (60, 300, 1000, 1500):
        g, _, _, Y = _simulate(rng, K, 600)
        dec = OnlineDeconvolver(g, np.full(K, 0.45))
        frames = np.ascontiguousarray(Y.T)
        dec.step(frames[0])
        times = []
        for y in frames[1:]:
            t0 = time.perf_counter_ns()
            dec.step(y)
            times.append(time.perf_counter_ns() - t0)
        us = np.asarray(times) / 1e3
        print(f"OnlineDeconvolver.step K={K}: median {np.median(us):.1f} us, "
              f"p99 {np.percentile(us, 99):.1f} us")
