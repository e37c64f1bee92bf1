"""The first-pass pipeline end to end on a small simulated movie."""

import numpy as np
import pytest

from rtcal.engine.firstpass import FirstPassConfig, FirstPassConfigError, run_first_pass, to_results
from rtcal.metrics import evaluate, truth_from_arrays
from rtcal.sim import Simulation, make_config, static_truth


@pytest.fixture(scope="module")
def movie():
    cfg = make_config("2p", height=128, width=128, n_frames=600, n_neurons=25, seed=11,
                      motion_px=2.0)
    sim = Simulation(cfg)
    frames, calcium, shifts = [], [], []
    for f in sim.stream():
        frames.append(f.image)
        calcium.append(f.calcium)
        shifts.append(f.shift)
    return cfg, static_truth(sim), np.stack(frames), np.stack(calcium, 1), np.stack(shifts)


def test_first_pass_recovers_motion_traces_and_some_cells(movie):
    cfg, truth, frames, calcium, shifts = movie
    config = FirstPassConfig(fps_hz=cfg.fps_hz, radius_px=6.0, init_frames=300)
    result = run_first_pass(iter(frames), config)
    T = len(frames)
    assert result.raw.shape == (len(result.footprints), T) == result.spikes.shape
    assert result.shifts.shape == (T, 2)
    # Motion: relative shifts match the truth (the template frame is not the truth frame).
    err = (result.shifts - result.shifts.mean(0)) - (shifts - shifts.mean(0))
    assert np.sqrt((err**2).mean()) < 0.3
    report = evaluate(
        to_results(result, config, cfg.height, cfg.width),
        truth_from_arrays(truth["footprints"], calcium=calcium),
    )
    # The first pass is a baseline (8 of 25 found when this was written, most of the
    # rest never fire in the 10 s the detector sees): it must find the clearly active
    # cells and give them accurate traces.
    assert report.main.n_tp >= 6
    assert report.median_trace_corr > 0.9
    assert (result.spikes >= 0).all() and (result.denoised >= 0).all()


def test_first_pass_rejects_a_movie_shorter_than_ten_frames():
    with pytest.raises(FirstPassConfigError, match="only 5 frames"):
        run_first_pass(iter(np.zeros((5, 32, 32), np.uint16)), FirstPassConfig())


def test_first_pass_config_names_bad_values():
    with pytest.raises(FirstPassConfigError, match="fps_hz"):
        FirstPassConfig(fps_hz=0)
    with pytest.raises(FirstPassConfigError, match="tau_decay_s"):
        FirstPassConfig(fps_hz=1.0, tau_decay_s=0.1)
