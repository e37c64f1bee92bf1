"""Noise and AR-coefficient estimation on simulated AR(1) / AR(2) traces of known kinetics."""

import numpy as np
import pytest

from rtcal.deconv.ar import (
    ar_coefficients,
    autocovariance,
    decay_range,
    estimate_g,
    noise_sigma,
    noise_sigma_psd,
    time_constant_s,
)
from rtcal.deconv.oasis import DeconvError, decay_factor
from rtcal.sim.activity import ar2_coefficients


def _traces(rng, K, T, fps_hz, tau_decay_s, *, tau_rise_s=0.0, rate_hz=0.5, sigma=0.2):
    """AR(2) (AR(1) when tau_rise_s = 0) calcium + noise + a resting level of 3."""
    if tau_rise_s > 0:
        g1, g2 = ar2_coefficients(tau_rise_s, tau_decay_s, fps_hz)
    else:
        g1, g2 = decay_factor(tau_decay_s, fps_hz), 0.0
    S = (rng.random((K, T)) < rate_hz / fps_hz) * rng.uniform(0.5, 1.5, (K, T))
    C = np.zeros((K, T))
    for t in range(T):
        C[:, t] = S[:, t] + (g1 * C[:, t - 1] if t > 0 else 0) + (g2 * C[:, t - 2] if t > 1 else 0)
    return C + 3.0 + sigma * rng.normal(size=C.shape)


def test_noise_sigma_recovers_sigma_despite_spikes():
    rng = np.random.default_rng(0)
    for sigma in (0.1, 0.3):
        Y = _traces(rng, 200, 1500, 30.0, 0.8, sigma=sigma)
        assert np.median(noise_sigma(Y)) == pytest.approx(sigma, rel=0.06)
        assert np.percentile(np.abs(noise_sigma(Y) / sigma - 1), 90) < 0.15
        assert np.median(Y.std(axis=1)) > 1.5 * sigma  # the plain std is fooled


def test_psd_noise_agrees_on_quiet_traces_and_overestimates_with_spikes():
    rng = np.random.default_rng(1)
    quiet = _traces(rng, 100, 1500, 30.0, 0.8, rate_hz=0.05, sigma=0.2)
    assert np.median(noise_sigma_psd(quiet)) == pytest.approx(0.2, rel=0.05)
    busy = _traces(rng, 100, 1500, 30.0, 0.8, rate_hz=1.0, sigma=0.1)
    err_mad = np.median(noise_sigma(busy)) / 0.1 - 1
    err_psd = np.median(noise_sigma_psd(busy)) / 0.1 - 1
    assert err_mad < 0.15 < err_psd  # why the MAD estimator is the default


def test_autocovariance_matches_direct_sum():
    rng = np.random.default_rng(2)
    Y = rng.normal(size=(3, 50))
    Z = Y - Y.mean(1, keepdims=True)
    direct = np.stack([(Z[:, : 50 - k] * Z[:, k:]).sum(1) / 50 for k in range(6)], 1)
    np.testing.assert_allclose(autocovariance(Y, 5), direct, atol=1e-12)


@pytest.mark.parametrize(("fps_hz", "tau_s"), [(7.0, 0.8), (30.0, 0.8), (30.0, 2.0)])
def test_estimate_g_recovers_ar1_time_constant(fps_hz, tau_s):
    rng = np.random.default_rng(3)
    Y = _traces(rng, 100, 2000, fps_hz, tau_s)
    tau = time_constant_s(estimate_g(Y, fps_hz), fps_hz)
    assert np.median(tau) == pytest.approx(tau_s, rel=0.12)


def test_estimate_g_on_ar2_traces_finds_the_decay():
    rng = np.random.default_rng(4)
    Y = _traces(rng, 100, 2000, 15.0, 0.8, tau_rise_s=0.05)
    tau = time_constant_s(estimate_g(Y, 15.0), 15.0)
    assert np.median(tau) == pytest.approx(0.8, rel=0.2)
    # AR(2): the larger root is the decay, the smaller one the rise
    g = ar_coefficients(Y, 2)
    roots = np.sort([np.roots([1, -g1, -g2]).real for g1, g2 in g], axis=1)
    assert np.median(time_constant_s(roots[:, 1], 15.0)) == pytest.approx(0.8, rel=0.2)
    assert np.median(roots[:, 0]) < 0.5


def test_estimate_g_clips_to_the_tau_range():
    rng = np.random.default_rng(5)
    noise_only = rng.normal(size=(20, 500))
    flat = np.full((1, 500), 7.0)
    g_min, g_max = decay_range(30.0, (0.1, 5.0))
    g = estimate_g(np.vstack([noise_only, flat]), 30.0)
    assert ((g >= g_min) & (g <= g_max)).all()
    np.testing.assert_allclose(g, g_min, atol=0.05)  # nothing to fit: the shortest tau
    drift = np.cumsum(rng.normal(size=(5, 500)), axis=1)  # a random walk: g near 1
    g_drift = estimate_g(drift, 30.0)
    assert (g_drift <= g_max).all() and (g_drift > 0.97).all()
    assert estimate_g(drift, 30.0, tau_range_s=(0.1, 1.0)).max() == decay_range(30.0, (0.1, 1.0))[1]


@pytest.mark.parametrize(
    ("call", "match"),
    [
        (lambda: noise_sigma(np.zeros(10)), r"\(K, T\)"),
        (lambda: noise_sigma(np.zeros((2, 2))), "at least 3 frames"),
        (lambda: noise_sigma(np.array([[0.0, np.nan, 1.0, 2.0]])), "finite"),
        (lambda: ar_coefficients(np.zeros((2, 50)), 3), "p must be"),
        (lambda: estimate_g(np.zeros((2, 50)), 0.0), "fps_hz"),
        (lambda: estimate_g(np.zeros((2, 50)), 30.0, tau_range_s=(1.0, 0.5)), "tau_range_s"),
    ],
)
def test_rejects_bad_input(call, match):
    with pytest.raises(DeconvError, match=match):
        call()
