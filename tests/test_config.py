"""Config files: the example loads, dump/load round trips, flags override, every error path."""

from pathlib import Path

import numpy as np
import pytest

from rtcal.cli import main
from rtcal.config import ConfigError, dump_config, load_config
from rtcal.deconv.config import DeconvConfig
from rtcal.engine.pipeline import pipeline_config
from rtcal.store import read_results

EXAMPLE = Path(__file__).resolve().parents[1] / "docs" / "config-example.toml"


def _write(tmp_path, text: str, name: str = "c.toml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def test_example_loads_with_its_values_and_passthrough_sections():
    loaded = load_config(EXAMPLE)
    p = loaded.pipeline
    assert (p.fps_hz, p.radius_px, p.init_frames, loaded.mode) == (30.0, 6.0, 300, "2p")
    assert p.nmf.merge_every == 100 and p.deconv == DeconvConfig(order=1, tau_rise_s=0.05)
    assert loaded.sections["engine"] == {
        "drop_policy": "oldest", "detect_every_frames": 1000, "detect_confirm_runs": 2,
        "realtime_priority": 0,
    }
    assert loaded.sections["triggers"][0]["neurons"] == [3]


def test_no_file_gives_the_pipeline_defaults():
    assert load_config(None).pipeline == pipeline_config(30.0, 6.0)
    assert load_config(None, mode="1p").pipeline == pipeline_config(30.0, 6.0, "1p")


@pytest.mark.parametrize("source", ["example", "defaults", "custom"])
def test_dump_then_load_gives_the_same_config(tmp_path, source):
    if source == "example":
        first = load_config(EXAMPLE)
    elif source == "defaults":
        first = load_config(None)
    else:
        path = _write(
            tmp_path,
            'mode = "1p"\nfps_hz = 7\nradius_px = 4.5\n[motion]\nhighpass_sigma_px = 2.5\n'
            "saturation_level = 4095.0\n[nmf]\nmerge_every = 0\n[deconv]\norder = 1\n"
            'lam = 0.1\n[detector]\nweights = "w.pt"\n[detector.sub]\nx = [1, 2]\n',
        )
        first = load_config(path)
    text = dump_config(first)
    second = load_config(_write(tmp_path, text))
    assert second == first
    assert dump_config(second) == text


def test_the_seed_detector_background_can_be_chosen_in_2p(tmp_path):
    p = load_config(_write(tmp_path, '[seed]\nbackground = "ring"\n')).pipeline
    assert p.nmf.background == "lowrank" and p.seed.background == "ring"
    with pytest.raises(ConfigError, match=r"\[seed\].*background must be one of"):
        load_config(_write(tmp_path, '[seed]\nbackground = "wavelet"\n', "b.toml"))


def test_flags_override_the_file_and_radius_reaches_every_stage(tmp_path):
    path = _write(
        tmp_path, "fps_hz = 30.0\nradius_px = 5.0\ninit_frames = 250\n[seed]\nradius_px = 4.0\n"
    )
    p = load_config(path, fps_hz=7.0, radius_px=8.0, overrides={"init_frames": 100}).pipeline
    assert (p.fps_hz, p.radius_px, p.init_frames) == (7.0, 8.0, 100)
    assert p.motion.radius_px == p.nmf.radius_px == 8.0
    assert p.seed.radius_px == 4.0  # the table's own value wins over the shared radius
    q = load_config(path, mode="1p").pipeline
    assert q.nmf.background == "ring" and q.nmf.refine_per_frame == 0 and q.fps_hz == 30.0
    assert q.seed.background == "ring" and q.seed.local_background and q.seed.radius_px == 4.0
    no_fps = _write(tmp_path, "radius_px = 5\n", "b.toml")
    assert load_config(no_fps, fallback_fps_hz=12.5).pipeline.fps_hz == 12.5  # the movie's
    assert load_config(path, fallback_fps_hz=12.5).pipeline.fps_hz == 30.0
    assert isinstance(
        load_config(_write(tmp_path, "fps_hz = 30\n", "i.toml")).pipeline.fps_hz, float
    )


@pytest.mark.parametrize(
    ("text", "match"),
    [
        ("fps = 30.0\n", r"top level: unknown key 'fps'; valid keys: .*fps_hz"),
        (
            "[nmf]\nmerge_evry = 5\n",
            r"\[nmf\]: unknown key 'merge_evry'; valid keys: .*merge_every",
        ),
        ("[nmff]\nx = 1\n", r"unknown table \[nmff\]; tables are \[motion\]"),
        ("[pipeline]\nfps_hz = 30.0\n", r"\[pipeline\] \(its keys go at the top level\)"),
        ("nmf = 3\n", r"'nmf' must be a table \[nmf\]"),
        ('fps_hz = "30"\n', r"top level: fps_hz must be float, got str '30'"),
        ("init_frames = 300.0\n", r"init_frames must be int, got float"),
        ("cuda_graphs = 1\n", r"cuda_graphs must be bool, got int"),
        ('[motion]\npiecewise = "yes"\n', r"\[motion\]: piecewise must be bool"),
        ("[motion]\nhighpass_sigma_px = true\n", r"highpass_sigma_px must be float, got bool"),
        ("[deconv]\norder = 3\n", r"\[deconv\]: DeconvConfig.order=3"),
        ("[nmf]\nforget = 0.5\n", r"\[nmf\]: OnlineNMFConfig.forget=0.5 is out of range"),
        ("[seed]\nmin_corr = 2.0\n", r"\[seed\]: min_corr must be in"),
        ("init_frames = 5\n", r"init_frames must be >= 20"),
        ('mode = "3p"\n', r"mode must be one of \('2p', '1p'\)"),
        ('[nmf]\nbackground = "ring"\n', r"background is set by the top-level mode"),
        ("fps_hz = = 3\n", r"not valid TOML"),
    ],
)
def test_errors_name_the_file_table_and_key(tmp_path, text, match):
    path = _write(tmp_path, text)
    with pytest.raises(ConfigError, match=match) as err:
        load_config(path)
    assert str(path) in str(err.value)


def test_bad_flags_and_missing_file_are_reported(tmp_path):
    with pytest.raises(ConfigError, match="no such config file"):
        load_config(tmp_path / "missing.toml")
    with pytest.raises(ConfigError, match="unknown key 'init_frame'"):
        load_config(None, overrides={"init_frame": 3})
    with pytest.raises(ConfigError, match="fps_hz must be in"):
        load_config(None, fps_hz=-1.0)


def test_cli_config_and_run_use_the_file(tmp_path, capsys):
    assert main(["config", "--config", str(EXAMPLE), "--fps", "15"]) == 0
    printed = capsys.readouterr().out
    assert load_config(_write(tmp_path, printed)).pipeline.fps_hz == 15.0
    rng = np.random.default_rng(0)
    movie = (100 + 5 * rng.standard_normal((40, 48, 48))).astype(np.float32)
    np.save(tmp_path / "m.npy", movie)
    cfg = _write(tmp_path, "init_frames = 20\n[deconv]\norder = 1\n")
    args = ["run", str(tmp_path / "m.npy"), "--config", str(cfg), "--fps", "20"]
    assert main([*args, "--print-config"]) == 0
    printed = capsys.readouterr().out
    assert "init_frames = 20" in printed and "fps_hz = 20.0" in printed and "order = 1" in printed
    assert main([*args, "--out", str(tmp_path / "r.h5")]) == 0
    r = read_results(tmp_path / "r.h5")
    assert r.n_frames == 40 and r.fps_hz == 20.0 and r.attrs["init_frames"] == 20
    assert (
        main(
            [
                "run",
                str(tmp_path / "m.npy"),
                "--config",
                str(tmp_path / "no.toml"),
                "--out",
                str(tmp_path / "x.h5"),
            ]
        )
        == 2
    )
    assert "no such config file" in capsys.readouterr().err
