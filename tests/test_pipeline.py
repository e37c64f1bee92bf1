"""The online pipeline end to end on small simulated movies, and bad-frame handling."""

import numpy as np
import pytest

from rtcal.deconv.config import DeconvConfig
from rtcal.engine.pipeline import Pipeline, PipelineConfigError, pipeline_config
from rtcal.engine.run import run_frames
from rtcal.metrics import evaluate, truth_from_arrays
from rtcal.sim import ActivityParams, Simulation, make_config, static_truth
from rtcal.store import read_results


@pytest.fixture(scope="module")
def movie():
    cfg = make_config("2p", height=128, width=128, n_frames=900, n_neurons=25, seed=11,
                      motion_px=2.0)
    sim = Simulation(cfg)
    frames, calcium, shifts = [], [], []
    for f in sim.stream():
        frames.append(f.image)
        calcium.append(f.calcium)
        shifts.append(f.shift)
    return cfg, static_truth(sim), np.stack(frames), np.stack(calcium, 1), np.stack(shifts)


def _config(cfg, **kw):
    return pipeline_config(cfg.fps_hz, 6.0, init_frames=300, **kw)


def test_run_writes_results_that_score_and_track_motion(movie, tmp_path):
    cfg, truth, frames, calcium, shifts = movie
    out = tmp_path / "r.h5"
    summary = run_frames(iter(frames), out, _config(cfg), height=128, width=128)
    r = read_results(out)
    assert r.complete and r.n_frames == len(frames) == summary.n_frames
    assert r.n_components == summary.n_components
    np.testing.assert_array_equal(r.frame_index, np.arange(len(frames)))
    err = (r.shifts - r.shifts.mean(0)) - (shifts - shifts.mean(0))
    assert np.sqrt((err**2).mean()) < 0.3
    # components added after initialisation are NaN before their birth, finite after
    for k in np.flatnonzero(r.born_frame > 0):
        assert np.isnan(r.traces[k, : r.born_frame[k]]).all()
        assert np.isfinite(r.traces[k, r.born_frame[k]:]).all()
    report = evaluate(r, truth_from_arrays(truth["footprints"], calcium=calcium))
    # Measured when written: 8 of 25 found, precision 0.40, median trace corr 0.87.
    # On 2026-11-25: 10 of 25 (F1 0.57, P 1.0), trace corr 0.943 (the same movie with
    # seeds 12 and 13: F1 0.61, P 1.0, corr 0.99 / 0.97). Most of the 25 cells fire
    # rarely in 900 frames: recall is the online core's known gap (issue 3).
    assert report.main.f1 >= 0.5, report.main
    assert report.main.precision >= 0.8, report.main
    assert report.median_trace_corr >= 0.9


def test_one_photon_run_scores(tmp_path):
    """Mode 1p end to end on a small simulated microendoscope movie (128 x 128,
    14 cells, 900 frames at 20 Hz). Measured when written (ring-residual seeds,
    2026-11-25): F1 0.64 (P 0.88, R 0.50), median trace corr 0.95; the commit
    before them: F1 0.38 (P 0.42), corr 0.75. Seeds 8 and 10 gave 0.60 / 0.78
    (0.48 / 0.58 before). With the first ring fit's stronger ridge and the
    thresholded correlation image: 0.73 (P 1.0, R 0.57), corr 0.94; seeds 8 and
    10: 0.73 / 0.83."""
    cfg = make_config("1p", height=128, width=128, n_frames=900, n_neurons=14, seed=9,
                      activity=ActivityParams(rate_median_hz=0.5))
    sim = Simulation(cfg)
    frames, calcium = [], []
    for f in sim.stream():
        frames.append(f.image)
        calcium.append(f.calcium)
    truth = static_truth(sim)
    radius = float(np.median(truth["radius_px"]))
    out = tmp_path / "r1p.h5"
    run_frames(iter(frames), out, pipeline_config(cfg.fps_hz, radius, "1p", init_frames=300),
               height=128, width=128)
    report = evaluate(read_results(out),
                      truth_from_arrays(truth["footprints"], calcium=np.stack(calcium, 1)))
    assert report.main.f1 >= 0.68, report.main
    assert report.main.precision >= 0.8, report.main
    assert report.median_trace_corr >= 0.9


def test_bad_frames_are_skipped_counted_and_leave_state_untouched(movie):
    cfg, _, frames, _, _ = movie
    frames = frames[:420].astype(np.float32)
    clean = Pipeline(_config(cfg))
    ref = [o for i, f in enumerate(frames) for o in clean.push(i, f)]
    bad = Pipeline(_config(cfg))
    saturated = np.full_like(frames[0], np.iinfo(np.uint16).max).astype(np.uint16)
    nan = frames[0].copy()
    nan[3, 4] = np.nan
    junk = {50: np.full_like(frames[0], np.nan), 150: frames[0][:-1], 350: nan, 360: saturated,
            370: np.zeros((2, 2, 2), np.float32)}
    got = []
    for i, f in enumerate(frames):
        if i in junk:
            assert bad.push(-1, junk[i]) == []
        got += bad.push(i, f)
    assert dict(bad.skipped) == {"NaN or inf": 2, "wrong shape": 1, "saturated": 1,
                                 "not 2-D": 1}
    assert [o.index for o in got] == [o.index for o in ref]
    for a, b in zip(got, ref, strict=True):
        np.testing.assert_array_equal(a.traces, b.traces)
        np.testing.assert_array_equal(a.spikes, b.spikes)
        assert a.shift == b.shift


def test_short_stream_initialises_at_finish(movie):
    cfg, _, frames, _, _ = movie
    p = Pipeline(_config(cfg))
    assert all(p.push(i, f) == [] for i, f in enumerate(frames[:100]))
    out = p.finish()
    assert len(out) == 100 and p.initialised


def test_pipeline_config_names_bad_values():
    with pytest.raises(PipelineConfigError, match="init_frames"):
        pipeline_config(30.0, 6.0, init_frames=5)
    with pytest.raises(PipelineConfigError, match="fps_hz"):
        pipeline_config(-1.0, 6.0)


def test_decay_prior_is_used_for_short_traces_and_estimated_for_long_ones():
    p = Pipeline(pipeline_config(30.0, 6.0, tau_decay_s=0.5, deconv=DeconvConfig(order=1)))
    rng = np.random.default_rng(0)
    g_true = np.exp(-1 / (1.5 * 30.0))
    x = np.zeros((3, 3000))
    spikes = (rng.random((3, 3000)) < 0.02) * 1.0
    for t in range(1, 3000):
        x[:, t] = g_true * x[:, t - 1] + spikes[:, t]
    x += 0.05 * rng.normal(size=x.shape)
    g_short, _ = p._kinetics(x[:, :60])
    np.testing.assert_allclose(g_short, np.exp(-1 / (0.5 * 30.0)))
    g_long, s_min = p._kinetics(x)
    tau = -1 / (30.0 * np.log(g_long))
    assert (tau > 0.75).all()  # estimated from the data, not the 0.5 s prior
    assert abs(np.median(tau) - 1.5) < 0.25 * 1.5
    assert (s_min > 0).all()


def test_warm_up_runs_on_copies_and_changes_no_output(movie, monkeypatch):
    cfg, _, frames, _, _ = movie
    frames = frames[:360]
    calls = []
    warm = Pipeline._warm_up
    monkeypatch.setattr(Pipeline, "_warm_up", lambda self, *a: calls.append(1) or warm(self, *a))
    warmed = Pipeline(_config(cfg))
    got = [o for i, f in enumerate(frames) for o in warmed.push(i, f)]
    assert calls == [1]
    monkeypatch.setattr(Pipeline, "_warm_up", lambda self, *a: None)
    cold = Pipeline(_config(cfg))
    want = [o for i, f in enumerate(frames) for o in cold.push(i, f)]
    assert len(got) == len(want) == len(frames)
    for a, b in zip(got, want, strict=True):
        np.testing.assert_array_equal(a.traces, b.traces)
        np.testing.assert_array_equal(a.denoised, b.denoised)  # the running baseline too
        np.testing.assert_array_equal(a.spikes, b.spikes)
        np.testing.assert_array_equal(a.added, b.added)
    assert warmed.footprints.shape == cold.footprints.shape
    np.testing.assert_array_equal(warmed.footprints, cold.footprints)


def test_a_failing_warm_up_is_reported_and_the_run_goes_on(movie, monkeypatch):
    cfg, _, frames, _, _ = movie

    def broken(self, *a):
        raise ValueError("boom")

    monkeypatch.setattr(Pipeline, "_warm_up", broken)
    p = Pipeline(_config(cfg))
    with pytest.warns(RuntimeWarning, match="warm-up failed.*boom"):
        out = [o for i, f in enumerate(frames[:310]) for o in p.push(i, f)]
    assert p.initialised and len(out) == 310
