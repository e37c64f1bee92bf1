"""``rtcal simulate`` writes readable files of the right shapes and dtypes."""

import argparse

import numpy as np
import pytest
import tifffile

from rtcal.cli import simulate
from rtcal.sim import SimConfigError


def _parse(argv):
    parser = argparse.ArgumentParser(prog="rtcal")
    sub = parser.add_subparsers(dest="command")
    simulate.add_parser(sub, "simulate", "write a simulated movie")
    return parser.parse_args(["simulate", *argv])


def test_cli_writes_movie_and_truth(tmp_path, capsys):
    out = tmp_path / "sim"
    args = _parse([str(out), "--size", "48", "64", "--frames", "40", "--neurons", "7",
                   "--fps", "10", "--seed", "3", "--motion", "0.5", "--radius", "4"])
    assert simulate.run(args) == 0
    printed = capsys.readouterr().out
    assert "K=7" in printed and "T=40" in printed and "movie.tif" in printed
    movie = tifffile.imread(out / "movie.tif")
    assert movie.shape == (40, 48, 64) and movie.dtype == np.uint16
    with np.load(out / "truth.npz") as t:
        assert t["footprints"].shape == (7, 48, 64) and t["footprints"].dtype == np.float32
        for key in ("calcium", "spikes"):
            assert t[key].shape == (7, 40) and t[key].dtype == np.float32
        assert t["shifts"].shape == (40, 2) and t["shifts"].dtype == np.float32
        assert float(t["fps"]) == 10.0
        for key in ("snr", "rate_hz", "baseline", "radius_px", "tau_rise_s", "tau_decay_s"):
            assert t[key].shape == (7,), key
        assert t["is_donut"].dtype == bool and t["centers"].shape == (7, 2)
        assert t["background_mean"].shape == (48, 64)
        assert str(t["mode"]) == "2p" and int(t["seed"]) == 3
        assert np.all((t["radius_px"] >= 3.0) & (t["radius_px"] <= 5.0))
        assert np.abs(t["shifts"]).max() > 0


def test_cli_one_photon_and_bad_values(tmp_path):
    args = _parse([str(tmp_path / "p1"), "--mode", "1p", "--size", "64", "64", "--frames", "8",
                   "--neurons", "3", "--noise", "0"])
    assert simulate.run(args) == 0
    with np.load(tmp_path / "p1" / "truth.npz") as t:
        assert str(t["mode"]) == "1p"
    with pytest.raises(SimConfigError, match="fps_hz"):
        simulate.run(_parse([str(tmp_path / "bad"), "--fps", "-5"]))
    with pytest.raises(SimConfigError, match="n_frames"):
        simulate.run(_parse([str(tmp_path / "bad"), "--frames", "0"]))
