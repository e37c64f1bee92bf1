"""`rtcal run` and `rtcal demo` through the real entry point, on small movies."""

import json

import h5py
import numpy as np

from rtcal.cli import main


def test_simulate_run_eval_chain(tmp_path):
    sim_dir = tmp_path / "sim"
    assert main(["simulate", str(sim_dir), "--size", "96", "96", "--frames", "360",
                 "--neurons", "12", "--seed", "4"]) == 0
    out = tmp_path / "res.h5"
    assert main(["run", str(sim_dir / "movie.tif"), "--out", str(out), "--fps", "30",
                 "--init-frames", "200"]) == 0
    with h5py.File(out, "r") as f:  # readable with h5py alone
        assert f.attrs["format"] == "rtcal-results"
        assert f["traces"].shape[1] == 360
        assert f.attrs["init_frames"] == 200
    report = tmp_path / "eval.json"
    assert main(["eval", str(out), "--truth", str(sim_dir / "truth.npz"), "--json",
                 str(report)]) == 0
    d = json.loads(report.read_text())
    assert d["n_true"] == 12 and d["n_est"] > 0 and d["n_tp"] >= 1
    assert d["median_trace_corr"] is None or d["median_trace_corr"] > 0.8


def test_run_reports_a_missing_movie_clearly(tmp_path, capsys):
    assert main(["run", str(tmp_path / "nope.tif"), "--out", str(tmp_path / "r.h5")]) == 2
    assert "nope.tif" in capsys.readouterr().err


def test_demo_writes_results_eval_and_report(tmp_path):
    out = tmp_path / "demo"
    assert main(["demo", "--out", str(out), "--frames", "400", "--neurons", "15",
                 "--size", "96", "96"]) == 0
    for name in ("results.h5", "eval.json", "report.png", "sim/movie.tif", "sim/truth.npz"):
        assert (out / name).is_file(), name
    d = json.loads((out / "eval.json").read_text())
    assert 0.0 <= d["f1"] <= 1.0 and d["n_true"] == 15
    assert np.isfinite(d["offset_px"]).all()
