"""The running baseline under the deconvolution: follows slow drifts, not transients."""

import numpy as np
import pytest

from rtcal.deconv.baseline import RunningBaseline
from rtcal.deconv.config import DeconvConfig
from rtcal.deconv.oasis import DeconvError
from rtcal.engine.pipeline import pipeline_config


def test_it_follows_a_slow_drift_and_ignores_a_transient():
    fps, T = 30.0, 6000
    rng = np.random.default_rng(0)
    t = np.arange(T) / fps
    drift = 0.05 * t  # a ramp of 0.05 sigma/s: 10 sigma in 200 s
    y = np.stack([drift + rng.normal(size=T), rng.normal(size=T)])  # sigma 1
    y[1, 3000:3030] += 8.0  # a one-second transient of 8 sigma
    b = RunningBaseline(np.zeros(2), np.ones(2), speed_sd=0.3, fps_hz=fps)
    out = np.stack([b.step(col) for col in y.T], axis=1)
    assert out.dtype == np.float32
    # after the first minute the corrected trace is centred within 0.7 sigma: at
    # 0.05 sigma/s the tracker lags by d with 0.3 (0.5 - Phi(-d)) = 0.05, d = 0.43
    blocks = np.median(out[0, 1800:].reshape(-1, 300), axis=1)
    assert np.abs(blocks).max() < 0.7 and np.median(blocks) == pytest.approx(0.43, abs=0.2)
    # without it the drift would be all there
    assert np.median(y[0, 1800:].reshape(-1, 300), axis=1).min() > 3.0
    # the transient survives almost whole (the baseline rose by < 0.2 sigma)
    lift = y[1, 3000:3030] - out[1, 3000:3030]
    assert lift.max() < 0.3 and lift[-1] > lift[0]  # it rose, by less than 0.3 sigma
    assert abs(b.level[1]) < 0.3


def test_nan_passes_and_new_components_join():
    b = RunningBaseline(np.array([1.0]), np.array([2.0]), speed_sd=3.0, fps_hz=10.0)
    before = b.level.copy()
    out = b.step(np.array([np.nan]))
    assert np.isnan(out[0]) and b.level == before  # a missing value does not move it
    b.step(np.array([5.0]))
    assert b.level[0] == pytest.approx(1.0 + 0.3 * 2.0 * 0.5)  # eta sigma (q - 0)
    b.add_components(np.zeros(2), np.ones(2))
    assert b.n_components == 3
    with pytest.raises(DeconvError, match="shape"):
        b.step(np.zeros(1))
    for bad in ({"speed_sd": 0.0}, {"fps_hz": -1.0}, {"quantile": 1.0}):
        kw = {"speed_sd": 1.0, "fps_hz": 30.0, "quantile": 0.5, **bad}
        with pytest.raises(DeconvError):
            RunningBaseline(np.zeros(1), np.ones(1), **kw)


def test_on_in_2p_off_in_1p_and_configurable():
    assert pipeline_config(30.0, 6.0).deconv.baseline_speed_sd == 0.3
    assert pipeline_config(20.0, 9.0, "1p").deconv.baseline_speed_sd == 0.0
    one_p = pipeline_config(20.0, 9.0, "1p", deconv=DeconvConfig(baseline_speed_sd=0.5))
    assert one_p.deconv.baseline_speed_sd == 0.5
    with pytest.raises(DeconvError, match="baseline_quantile"):
        DeconvConfig(baseline_quantile=0.0)
