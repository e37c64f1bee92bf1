"""Spike trains and calcium kinetics against the requested parameters."""

import dataclasses

import numpy as np

from rtcal.sim.activity import ActivityModel, ar2_coefficients, draw_kinetics
from rtcal.sim.config import ActivityParams

FPS = 30.0


def _run(params, n_cells, n_frames, seed=0):
    kin = draw_kinetics(np.random.default_rng(seed), n_cells, params, FPS)
    model = ActivityModel(kin, params, FPS)
    chunks = [model.step(np.random.default_rng([seed, c]), 1000) for c in range(n_frames // 1000)]
    spikes = np.concatenate([c.spikes for c in chunks])
    calcium = np.concatenate([c.calcium for c in chunks])
    return kin, spikes, calcium


def test_realised_rates_match_requested():
    params = ActivityParams(rate_median_hz=0.5, rate_log_sigma=0.8)
    kin, spikes, _ = _run(params, 150, 60_000)
    duration_s = spikes.shape[0] / FPS
    realised = spikes.sum(axis=0) / duration_s
    # population total: tight (many cells)
    assert abs(realised.sum() / kin.rate_hz.sum() - 1) < 0.1
    # single cells: bursts and shared modulation make counts overdispersed
    busy = kin.rate_hz > 0.5
    ratio = realised[busy] / kin.rate_hz[busy]
    assert np.median(np.abs(ratio - 1)) < 0.2
    assert np.corrcoef(np.log(realised[busy]), np.log(kin.rate_hz[busy]))[0, 1] > 0.8


def test_rates_spread_and_many_cells_rarely_fire():
    params = ActivityParams()  # defaults
    kin, spikes, _ = _run(params, 300, 3000)  # 100 s
    assert np.mean(kin.rate_hz < 0.05) > 0.2
    assert kin.rate_hz.max() / np.median(kin.rate_hz) > 10
    assert np.mean(spikes.sum(axis=0) <= 2) > 0.2  # silent-ish for 100 s
    assert np.mean(spikes.sum(axis=0) >= 20) > 0.05  # and some busy cells


def test_spikes_are_bursty():
    params = ActivityParams(rate_median_hz=1.0, rate_log_sigma=0.0, shared_log_sigma=0.0,
                            cell_log_sigma=0.0, burst_branching=0.6)
    _, spikes, _ = _run(params, 40, 30_000)
    counts = spikes.reshape(-1, 15, 40).sum(axis=1)  # 0.5 s bins
    fano = counts.var(axis=0) / counts.mean(axis=0)
    assert np.median(fano) > 1.5  # Poisson would give 1
    no_burst = dataclasses.replace(params, burst_branching=0.0)
    _, spikes0, _ = _run(no_burst, 40, 30_000)
    counts0 = spikes0.reshape(-1, 15, 40).sum(axis=1)
    assert abs(np.median(counts0.var(axis=0) / counts0.mean(axis=0)) - 1) < 0.15


def test_decay_of_isolated_transients_recovers_tau():
    params = ActivityParams(rate_median_hz=0.05, rate_log_sigma=0.0, burst_branching=0.0,
                            tau_decay_min_s=0.4, tau_decay_max_s=1.5)
    kin, spikes, calcium = _run(params, 30, 30_000, seed=3)
    n_fit = int(2.0 * FPS)
    checked = 0
    for k in range(30):
        times = np.flatnonzero(spikes[:, k])
        isolated = [t for t in times if t > 5 and t + n_fit < len(spikes)
                    and spikes[t - 5 : t + n_fit, k].sum() == spikes[t, k]]
        if len(isolated) < 3:
            continue
        # tail after 5 rise times: log-linear fit of the exponential decay
        tail = np.arange(int(5 * 0.05 * FPS) + 1, int(1.5 * kin.tau_decay_s[k] * FPS))
        slopes = []
        for t in isolated:
            seg = calcium[t + tail, k]
            slopes.append(np.polyfit(tail / FPS, np.log(seg), 1)[0])
        tau_fit = -1 / np.median(slopes)
        assert abs(tau_fit / kin.tau_decay_s[k] - 1) < 0.05, (k, tau_fit, kin.tau_decay_s[k])
        peaks = [calcium[t : t + 10, k].max() / spikes[t, k] for t in isolated]
        assert abs(np.mean(peaks) / kin.spike_dff[k] - 1) < 0.3
        checked += 1
    assert checked >= 10


def test_ar2_coefficients_formula():
    g1, g2 = ar2_coefficients(np.array([0.05]), np.array([1.0]), 30.0)
    d, r = np.exp(-1 / 30), np.exp(-1 / 1.5)
    np.testing.assert_allclose([g1[0], g2[0]], [d + r, -d * r])
    kin = draw_kinetics(np.random.default_rng(0), 500, ActivityParams(), 30.0)
    assert kin.tau_decay_s.min() >= 0.4 and kin.tau_decay_s.max() <= 1.5
    assert kin.spike_dff.min() >= 0.2 and kin.spike_dff.max() <= 1.0
