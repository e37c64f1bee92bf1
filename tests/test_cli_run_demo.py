"""`rtcal run` and `rtcal demo` through the real entry point, on small movies."""

import base64
import json

import h5py
import numpy as np

from rtcal.cli import main
from rtcal.store import read_results


def test_simulate_run_eval_chain(tmp_path, capsys):
    sim_dir = tmp_path / "sim"
    assert main(["simulate", str(sim_dir), "--size", "96", "96", "--frames", "360",
                 "--neurons", "12", "--seed", "4"]) == 0
    out = tmp_path / "res.h5"
    capsys.readouterr()
    assert main(["run", str(sim_dir / "movie.tif"), "--out", str(out), "--fps", "30",
                 "--init-frames", "200", "--detect-every", "80"]) == 0
    said = " ".join(capsys.readouterr().out.split())  # as one line, however it wrapped
    # which detector ran: the 2p default, with its threshold
    assert "detector: learned (score threshold " in said and "first 200 frames" in said
    # re-runs as the live engine's: before frame 280 (none after the last frame)
    assert "then every 80 frames" in said and "detector re-runs: 1, " in said
    with h5py.File(out, "r") as f:  # readable with h5py alone
        assert f.attrs["detector"].startswith("learned (score threshold ")
        assert f.attrs["format"] == "rtcal-results"
        assert f["traces"].shape[1] == 360
        assert f.attrs["init_frames"] == 200
        assert f.attrs["detect_every_frames"] == 80
    report = tmp_path / "eval.json"
    assert main(["eval", str(out), "--truth", str(sim_dir / "truth.npz"), "--json",
                 str(report)]) == 0
    d = json.loads(report.read_text())
    assert d["n_true"] == 12 and d["n_est"] > 0 and d["n_tp"] >= 1
    assert d["median_trace_corr"] is None or d["median_trace_corr"] > 0.8


def test_run_refuses_a_negative_re_run_period(tmp_path, capsys):
    sim_dir = tmp_path / "sim"
    assert main(["simulate", str(sim_dir), "--size", "64", "64", "--frames", "60"]) == 0
    assert main(["run", str(sim_dir / "movie.tif"), "--out", str(tmp_path / "r.h5"),
                 "--detect-every", "-5"]) == 2
    assert "--detect-every must be >= 0" in capsys.readouterr().err


def test_run_reports_a_missing_movie_clearly(tmp_path, capsys):
    assert main(["run", str(tmp_path / "nope.tif"), "--out", str(tmp_path / "r.h5")]) == 2
    assert "nope.tif" in capsys.readouterr().err


def test_demo_runs_the_live_engine_over_loopback_and_writes_the_report(tmp_path):
    out = tmp_path / "demo"
    n = 400  # long enough after initialisation for steady-state frames on a loaded machine
    # the default detector (2p: the shipped learned one) at initialisation and in the
    # re-runs, which run it in a child process
    assert main(["demo", "--out", str(out), "--frames", str(n), "--size", "128", "128",
                 "--neurons", "15", "--fps", "50", "--seed", "7"]) == 0
    for name in ("truth.npz", "engine.toml", "results.h5", "eval.json", "live.json",
                 "report.png", "report.html"):
        assert (out / name).is_file(), name

    results = read_results(out / "results.h5")
    attrs = results.attrs
    assert results.complete and attrs["pipeline"] == "online-live"  # written by the engine
    assert attrs["detector"].startswith("learned (score threshold ")  # the 2p default
    assert attrs["engine_received"] == n and attrs["engine_malformed_total"] == 0
    assert results.n_frames + attrs["engine_dropped"] == n  # every frame processed or counted
    assert np.all(np.diff(results.frame_index) > 0) and results.frame_index[-1] < n

    live = json.loads((out / "live.json").read_text())
    lat = live["latency_ms"]
    assert live["n_sent"] == n and live["n_results"] == results.n_frames
    # Steady-state frames exist only if the engine caught up before the stream ended
    # (a cold Numba cache on a loaded machine can make initialisation outlast it).
    assert lat["n"] == live["n_results"] - live["n_warmup"]
    if lat["n"]:
        assert 0 < lat["p50_ms"] <= lat["p99_ms"] <= lat["max_ms"] < 1000
    warm = live["warmup_latency_ms"]
    assert warm["n"] == live["n_warmup"] >= live["init_frames"]
    assert 0 < warm["p50_ms"] <= warm["p99_ms"] <= warm["max_ms"]
    assert live["counters"]["processed"] == results.n_frames
    assert live["counters"]["events"] == sum(live["events_by_rule"].values())
    assert live["counters"]["events"] == len(results.events)  # the file has every event
    assert live["redetect"]["runs"] == len(live["redetect"]["frames"]) >= 1
    assert live["redetect"]["failed"] == 0

    d = json.loads((out / "eval.json").read_text())
    alive = int((results.retired_frame < 0).sum())  # merged or retired ones are not scored
    assert d["n_true"] == 15 and d["n_est"] == alive >= 1
    assert d["n_tp"] >= 2  # measured: 5 TP, 0 FP
    page = (out / "report.html").read_text()
    png = base64.b64decode(page.split("data:image/png;base64,")[1].split('"')[0])
    assert png == (out / "report.png").read_bytes()  # self-contained
    assert "p99" in page and "re-runs" in page and "malformed" in page


def test_demo_offline_runs_from_a_file_without_sockets(tmp_path):
    out = tmp_path / "demo"
    assert main(["demo", "--offline", "--out", str(out), "--frames", "300", "--neurons", "12",
                 "--size", "80", "80"]) == 0
    for name in ("results.h5", "eval.json", "report.png", "report.html", "sim/movie.tif",
                 "sim/truth.npz"):
        assert (out / name).is_file(), name
    d = json.loads((out / "eval.json").read_text())
    assert 0.0 <= d["f1"] <= 1.0 and d["n_true"] == 12
    assert np.isfinite(d["offset_px"]).all()
    assert "engine_received" not in read_results(out / "results.h5").attrs


def test_demo_refuses_a_movie_too_short(tmp_path, capsys):
    assert main(["demo", "--out", str(tmp_path), "--frames", "50"]) == 2
    assert "--frames >= 100" in capsys.readouterr().err


def test_demo_offline_with_the_learned_detector(tmp_path):
    out = tmp_path / "demo"
    assert main(["demo", "--offline", "--detector", "learned", "--out", str(out), "--frames",
                 "400", "--neurons", "15", "--size", "128", "128"]) == 0
    results = read_results(out / "results.h5")
    assert results.attrs["detector"].startswith("learned (score threshold ")
    assert results.n_components >= 1
    d = json.loads((out / "eval.json").read_text())
    assert d["n_tp"] >= 1  # the shipped weights find simulated cells (measured: 3 of 15)
