"""The declared per-neuron snr against an independent measurement on the movie."""

import numpy as np

from rtcal.sim import BackgroundParams, CellParams, DetectorParams, Simulation, make_config


def _movie_and_sim(noise_level):
    cfg = make_config(
        "2p", height=96, width=96, n_frames=600, n_neurons=20, motion_px=0.0, seed=11,
        noise_level=noise_level,
        cells=CellParams(neurites_per_neuron=0.0),
        background=BackgroundParams(fluct_shared=0.0, fluct_other=0.0, drift_fraction=0.0,
                                    bleach_fraction=0.0),
        detector=DetectorParams(line_gain_sd=0.0, dropped_line_prob=0.0),
    )
    sim = Simulation(cfg)
    chunks = list(sim.chunks())
    movie = np.concatenate([c.images for c in chunks]).astype(np.float64)
    calcium = np.concatenate([c.calcium for c in chunks])
    return movie, calcium, sim


def test_declared_snr_matches_measured():
    from rtcal.sim.snr import single_spike_snr

    noisy, calcium, sim = _movie_and_sim(1.0)
    clean, calcium0, _ = _movie_and_sim(0.0)
    np.testing.assert_array_equal(calcium, calcium0)  # noise does not touch the activity
    declared = single_spike_snr(sim.tissue, sim.cfg)
    a = sim.footprints.reshape(20, -1).astype(np.float64)
    y_noisy = noisy.reshape(600, -1) @ a.T  # (T, K) footprint-weighted traces
    y_clean = clean.reshape(600, -1) @ a.T
    design = np.hstack([np.ones((600, 1)), calcium])  # clean trace = a + sum_j b_j C_j
    coef, *_ = np.linalg.lstsq(design, y_clean, rcond=None)
    per_dff = np.diag(coef[1:])  # trace change per unit dF/F of the cell itself
    active = np.abs(calcium).max(axis=0) > 0.1  # regression needs activity
    residual = y_noisy - y_clean
    # noise at rest: frames where the cell's own calcium is (almost) zero
    noise = np.array([residual[calcium[:, k] < 0.02, k].std() for k in range(20)])
    measured = per_dff * sim.tissue.kinetics.spike_dff / noise
    assert active.sum() >= 5
    ratio = measured[active] / declared[active]
    assert np.all(np.abs(ratio - 1) < 0.08), ratio


def test_default_snr_range_and_noise_scaling():
    cfg = make_config("2p", height=128, width=128, n_frames=10, n_neurons=60)
    from rtcal.sim.snr import single_spike_snr

    sim = Simulation(cfg)
    snr = single_spike_snr(sim.tissue, cfg)
    assert 0.5 < np.median(snr) < 10
    assert snr.max() / snr.min() > 3  # spread: the evaluator splits recall by it
    sim2 = Simulation(make_config("2p", height=128, width=128, n_frames=10, n_neurons=60,
                                  noise_level=2.0))
    np.testing.assert_allclose(single_spike_snr(sim2.tissue, sim2.cfg), snr / 2, rtol=0.02)
