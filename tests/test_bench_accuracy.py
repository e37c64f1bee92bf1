"""bench/accuracy.py: its movies are `rtcal simulate`'s, its runs are `rtcal run`'s
and its summary is the median and range over seeds."""

import importlib.util
import sys
from pathlib import Path

import numpy as np
import pytest
import tifffile

from rtcal.detect.factory import detector_from_section
from rtcal.engine.pipeline import pipeline_config
from rtcal.engine.run import run_frames
from rtcal.metrics import evaluate, truth_from_arrays
from rtcal.sim import make_config, write_simulation
from rtcal.store import read_results

BENCH = Path(__file__).resolve().parents[1] / "bench" / "accuracy.py"


def _bench():
    spec = importlib.util.spec_from_file_location("bench_accuracy", BENCH)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


def _tiny_suite(bench, mode="2p", frames=120):
    return bench.Suite("tiny", mode, (64, 64), 6, frames, 30.0 if mode == "2p" else 20.0,
                       6.0 if mode == "2p" else 9.0, (5,), 0.9, 0.9)


@pytest.mark.parametrize("mode", ["2p", "1p"])
def test_simulated_movie_is_the_one_rtcal_simulate_writes(tmp_path, mode):
    bench = _bench()
    suite = _tiny_suite(bench, mode)
    trains = []
    frames, footprints, calcium = bench.simulate(suite, 5, trains)
    # what `rtcal simulate OUT --mode M --size 64 64 --frames 120 --neurons 6 --seed 5` writes
    paths = write_simulation(tmp_path, make_config(mode, height=64, width=64, n_neurons=6,
                                                   n_frames=120, fps_hz=suite.fps, seed=5))
    np.testing.assert_array_equal(frames, tifffile.imread(paths.movie))
    with np.load(paths.truth) as truth:
        np.testing.assert_array_equal(footprints, truth["footprints"])
        np.testing.assert_array_equal(calcium, truth["calcium"])
        np.testing.assert_array_equal(trains[0], truth["spikes"] > 0)


def test_run_and_score_matches_a_plain_run_and_eval(tmp_path):
    bench = _bench()
    frames, footprints, calcium = bench.simulate(_tiny_suite(bench, frames=400), 5)
    truth = truth_from_arrays(footprints, calcium=calcium)
    row = bench.run_and_score(frames, truth, fps=30.0, radius=6.0, mode="2p")
    # the same run as `rtcal run --fps 30 --neuron-radius 6` (its default detector for
    # 2p: the shipped learned one), scored as `rtcal eval` does
    out = tmp_path / "r.h5"
    config = pipeline_config(30.0, 6.0)
    run_frames(iter(frames), out, config, height=64, width=64,
               detector=detector_from_section(None, config))
    report = evaluate(read_results(out), truth)
    assert row["f1"] == pytest.approx(report.main.f1)
    assert row["tp"] == report.main.n_tp > 0  # past initialisation (300 frames)
    assert row["tp"] + row["fp"] == report.main.n_est
    assert row["tp"] + row["fn"] == report.main.n_true == 6
    if report.median_trace_corr is None:
        assert row["trace_corr"] is None
    else:
        assert row["trace_corr"] == pytest.approx(report.median_trace_corr)
    # no re-run in 100 frames after initialisation at the default period (1000) ...
    assert row["redetect"] == {"runs": 0, "failed": 0, "added": 0, "add_failed": 0,
                               "seconds": []}
    assert report.spikes is None and row["spikes_est"] is None  # a truth without spikes
    # ... and one at a period of 50 (before frame 350; none after the last frame)
    row = bench.run_and_score(frames, truth, fps=30.0, radius=6.0, mode="2p", detect_every=50)
    assert row["redetect"]["runs"] == 1 and row["redetect"]["failed"] == 0


def test_summary_is_median_and_range_against_the_target():
    bench = _bench()
    rows = [{"f1": f, "trace_corr": c} for f, c in ((0.80, 0.96), (0.90, 0.94), (0.86, None))]
    s = bench.summarise("x", rows, 0.85, 0.95)
    assert s["movies"] == 3
    assert s["f1"]["median"] == pytest.approx(0.86)
    assert (s["f1"]["min"], s["f1"]["max"]) == (0.80, 0.90)
    assert s["f1_met"] is True  # median 0.86 >= 0.85, though one movie is under
    assert s["trace_corr"]["median"] == pytest.approx(0.95)  # the None row is left out
    assert s["corr_met"] is True
    assert s["ceiling_f1"] is None  # no row carried one
    with_ceiling = [dict(r, ceiling_f1=v) for r, v in zip(rows, (0.9, 0.8, 0.95), strict=True)]
    s = bench.summarise("x", with_ceiling, 0.85, 0.95)
    assert s["ceiling_f1"]["median"] == pytest.approx(0.9)
    assert bench.summarise("x", rows, 0.87, 0.96)["f1_met"] is False
    assert bench.summarise("x", rows, 0.87, 0.96)["corr_met"] is False
    no_target = bench.summarise("real", [{"f1": 0.3, "trace_corr": None}], None, None)
    assert no_target["f1_met"] is None and no_target["trace_corr"] is None


def test_run_and_score_reads_a_config_file_as_rtcal_run_does(tmp_path):
    """--config: the file's settings and its [detector] table, as `rtcal run --config`
    applies them: a learned detector (a tiny checkpoint) gives the row that
    run_frames with that detector gives."""
    from detect_tiny import tiny_checkpoint

    from rtcal.detect.factory import make_detector

    bench = _bench()
    frames, footprints, calcium = bench.simulate(_tiny_suite(bench, frames=400), 5)
    truth = truth_from_arrays(footprints, calcium=calcium)
    weights = tiny_checkpoint(tmp_path / "tiny.pt")
    config = tmp_path / "c.toml"
    config.write_text(f'init_frames = 200\n[detector]\nname = "learned"\n'
                      f'weights = "{weights}"\nscore_threshold = 0.5\n')
    row = bench.run_and_score(frames, truth, fps=30.0, radius=6.0, mode="2p",
                              config_path=config)
    pipeline = pipeline_config(30.0, 6.0, init_frames=200)
    out = tmp_path / "r.h5"
    run_frames(iter(frames), out, pipeline, height=64, width=64,
               detector=make_detector("learned", pipeline, weights=weights,
                                      score_threshold=0.5))
    report = evaluate(read_results(out), truth)
    assert row["f1"] == pytest.approx(report.main.f1)
    assert row["tp"] + row["fp"] == report.main.n_est
    plain = bench.run_and_score(frames, truth, fps=30.0, radius=6.0, mode="2p")
    # the file made a difference (measured: 3 TP / 7 FP with it, 1 / 0 with the default,
    # the shipped weights)
    assert (row["tp"], row["fp"]) != (plain["tp"], plain["fp"])
