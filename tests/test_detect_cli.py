"""`rtcal detect` end to end on a tiny simulated movie, scored by `rtcal eval`; `rtcal export`."""

import numpy as np
import pytest
import torch
from detect_tiny import tiny_checkpoint

from rtcal.cli import main
from rtcal.cli.detect import RUNTIME_CHOICES, parse_frames
from rtcal.detect.runtime import RUNTIME_NAMES
from rtcal.errors import RtcalError
from rtcal.sim import make_config, write_simulation
from rtcal.store import read_results

torch.set_num_threads(1)


@pytest.fixture(scope="module")
def movie(tmp_path_factory):
    root = tmp_path_factory.mktemp("sim")
    cfg = make_config("2p", height=64, width=64, n_neurons=6, n_frames=60, seed=11)
    return write_simulation(root, cfg)


def test_detect_writes_results_that_eval_scores(movie, tmp_path, capsys):
    weights = tiny_checkpoint(tmp_path / "tiny.pt")
    out = tmp_path / "detect.h5"
    rc = main(["detect", str(movie.movie), "--frames", "5:55", "--out", str(out),
               "--weights", str(weights), "--runtime", "eager", "--neuron-radius", "6",
               "--fps", "30"])
    printed = capsys.readouterr().out
    assert rc == 0
    assert "runtime eager-cpu" in printed and "detector learned:" in printed
    results = read_results(out)
    assert results.n_components > 0 and results.complete
    assert results.frame_index.tolist() == list(range(5, 55))
    assert results.traces.shape == (results.n_components, 50)
    assert np.isfinite(results.traces).all() and np.isfinite(results.spikes).all()
    assert results.attrs["detector"] == "learned" and results.attrs["runtime"] == "eager-cpu"
    assert main(["eval", str(out), "--truth", str(movie.truth)]) == 0
    assert "rtcal eval" in capsys.readouterr().out


def test_detect_with_the_seed_detector(movie, tmp_path, capsys):
    out = tmp_path / "seed.h5"
    assert main(["detect", str(movie.movie), "--frames", "0:", "--out", str(out),
                 "--detector", "seed", "--neuron-radius", "4"]) == 0
    assert "detector seed:" in capsys.readouterr().out
    assert read_results(out).n_frames == 60


def test_bad_arguments_are_named(movie, tmp_path, capsys):
    assert main(["detect", str(movie.movie), "--frames", "0:500", "--out",
                 str(tmp_path / "x.h5"), "--detector", "seed"]) == 2
    assert "0 <= A < B <= 60" in capsys.readouterr().err
    assert main(["detect", str(movie.movie), "--out", str(tmp_path / "x.h5"),
                 "--weights", str(tmp_path / "none.pt"), "--frames", "0:40"]) == 2
    assert "no detector checkpoint" in capsys.readouterr().err
    with pytest.raises(RtcalError, match="integers"):
        parse_frames("a:b", 10)
    with pytest.raises(RtcalError, match="at least 20 frames"):
        parse_frames("0:10", 100)
    assert parse_frames(":", 60) == (0, 60)
    assert RUNTIME_CHOICES == ("auto", *RUNTIME_NAMES)


def test_export_checks_the_onnx_file_against_eager(tmp_path, capsys):
    pytest.importorskip("onnxruntime")
    weights = tiny_checkpoint(tmp_path / "tiny.pt")
    assert main(["export", "--weights", str(weights), "--out", str(tmp_path / "out"),
                 "--size", "64", "64"]) == 0
    printed = capsys.readouterr().out
    assert "onnxruntime vs eager PyTorch: max abs diff logits" in printed
    assert len(list((tmp_path / "out").glob("detector-*-64x64.onnx"))) == 1
    assert main(["export", "--weights", str(weights), "--out", str(tmp_path / "out"),
                 "--runtime", "tensorrt", "--size", "64", "64"]) == 2  # no CUDA / TensorRT here
    assert "tensorrt" in capsys.readouterr().err
