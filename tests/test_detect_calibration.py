"""Per-mode score thresholds of the learned detector: how a checkpoint's value is
chosen for a recording's kind, the calibration that finds them, and the script
that adds them to an existing checkpoint."""

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from detect_tiny import tiny_model

from rtcal.detect.factory import detector_from_section, make_detector
from rtcal.detect.learned import LearnedDetector, LearnedDetectorConfig, calibrated_threshold
from rtcal.detect.model import load_detector, save_checkpoint
from rtcal.detect.presets import get_preset
from rtcal.detect.train import best_threshold, calibrate_by_mode, calibration_samples
from rtcal.detect.train_data import validation_seeds
from rtcal.engine.pipeline import pipeline_config

TOOLS = Path(__file__).resolve().parents[1] / "tools"


def test_calibrated_threshold_prefers_the_value_of_the_mode():
    both = {"score_threshold": 0.35, "score_threshold_by_mode": {"2p": 0.4, "1p": 0.3}}
    assert calibrated_threshold(both, "2p") == 0.4
    assert calibrated_threshold(both, "1p") == 0.3
    only_2p = {"score_threshold": 0.35, "score_threshold_by_mode": {"2p": 0.4}}
    assert calibrated_threshold(only_2p, "1p") == 0.35  # falls back to the pooled value
    assert calibrated_threshold({"score_threshold": 0.35}, "1p") == 0.35
    assert calibrated_threshold({}, "2p") is None


def test_a_pipeline_detector_prefers_the_pipeline_threshold_of_its_mode():
    extra = {"score_threshold": 0.35, "score_threshold_by_mode": {"2p": 0.4, "1p": 0.3},
             "pipeline_score_threshold_by_mode": {"2p": 0.6}}
    assert calibrated_threshold(extra, "2p", in_pipeline=True) == 0.6
    assert calibrated_threshold(extra, "2p") == 0.4  # a standalone window: the window value
    assert calibrated_threshold(extra, "1p", in_pipeline=True) == 0.3  # none for 1p


def test_the_pipelines_default_detector_depends_on_the_mode(tmp_path):
    from rtcal.detect.seed import SeedDetector

    weights = tmp_path / "d.pt"
    save_checkpoint(weights, tiny_model(), {"score_threshold_by_mode": {"2p": 0.4, "1p": 0.3},
                                            "pipeline_score_threshold_by_mode": {"2p": 0.6}})
    two_p = pipeline_config(30.0, 6.0, "2p")
    learned = detector_from_section({"weights": str(weights)}, two_p)  # no name: 2p default
    assert isinstance(learned, LearnedDetector) and learned.config.in_pipeline
    assert learned.score_threshold == 0.6
    standalone = make_detector("learned", two_p, weights=weights)  # rtcal detect's detector
    assert not standalone.config.in_pipeline and standalone.score_threshold == 0.4
    assert isinstance(detector_from_section(None, pipeline_config(20.0, 9.0, "1p")),
                      SeedDetector)
    named = detector_from_section({"name": "seed"}, two_p)
    assert isinstance(named, SeedDetector)


def test_the_detector_takes_the_threshold_of_the_recordings_mode(tmp_path):
    weights = tmp_path / "d.pt"
    save_checkpoint(weights, tiny_model(), {"score_threshold": 0.35,
                                            "score_threshold_by_mode": {"2p": 0.45, "1p": 0.25}})
    for mode, want in (("2p", 0.45), ("1p", 0.25)):
        det = LearnedDetector.from_weights(weights, LearnedDetectorConfig(mode=mode))
        assert det.score_threshold == want
        via_config = make_detector("learned", pipeline_config(20.0, 9.0, mode), weights=weights)
        assert via_config.score_threshold == want and via_config.config.mode == mode
    explicit = LearnedDetectorConfig(mode="1p", score_threshold=0.6)  # the config's value wins
    assert LearnedDetector.from_weights(weights, explicit).score_threshold == 0.6
    section = {"name": "learned", "weights": str(weights), "score_threshold": 0.6}
    from_file = detector_from_section(section, pipeline_config(30.0, 6.0, "2p"))
    assert from_file.score_threshold == 0.6


def test_calibration_by_mode_scores_each_kind_on_its_own_windows():
    torch.manual_seed(0)
    preset = get_preset("smoke")
    model = tiny_model(confident=True)
    candidates = (0.3, 0.6, 0.9, 0.99)
    got = calibrate_by_mode(model, preset, "cpu", windows_per_mode=2, candidates=candidates)
    assert set(got) == {"2p", "1p"}
    for mode, (threshold, scores) in got.items():
        samples = calibration_samples(preset, mode, 2)
        assert {s.mode for s in samples} == {mode}
        assert [s.seed for s in samples] == validation_seeds(2)
        want = best_threshold(model, samples, "cpu", preset.trace.background_sigma_px,
                              candidates)
        assert threshold == want[0] and threshold in candidates
        assert scores.n_true == want[1].n_true > 0 and scores.f1 == want[1].f1


def test_pipeline_threshold_script_picks_the_best_mean_and_refuses_held_out_seeds():
    sys.path.insert(0, str(TOOLS))
    try:
        import pipeline_threshold as tool
    finally:
        sys.path.remove(str(TOOLS))
    # means 0.5, 0.625, 0.625, 0.375 (exact in binary): the best, and the lower of a tie
    table = {0.4: [0.25, 0.75], 0.5: [0.5, 0.75], 0.6: [0.625, 0.625], 0.7: [0.5, 0.25]}
    assert tool.best_threshold(table) == 0.5
    assert tool.best_threshold({0.6: [0.5, 1.0], 0.4: [0.25, 0.5]}) == 0.6
    held_out = tool.SUITES["2p-256"].seeds[0]
    with pytest.raises(SystemExit, match="held-out"):
        tool.measure(Path("unused.pt"), "2p", [held_out], [0.5])
    assert not set(tool.DEV_SEEDS["2p"]) & set(tool.SUITES["2p-256"].seeds)
    assert not set(tool.DEV_SEEDS["1p"]) & set(tool.SUITES["1p-256"].seeds)


def test_calibrate_script_adds_the_thresholds_and_keeps_the_weights(tmp_path):
    src, out = tmp_path / "d.pt", tmp_path / "cal.pt"
    save_checkpoint(src, tiny_model(confident=True), {"preset": "smoke", "score_threshold": 0.3})
    done = subprocess.run([sys.executable, str(TOOLS / "calibrate_detector.py"), str(src),
                           "--out", str(out), "--windows-per-mode", "1"],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert "| 2p |" in done.stdout and "| 1p |" in done.stdout
    model, extra = load_detector(out)
    assert set(extra["score_threshold_by_mode"]) == {"2p", "1p"}
    assert extra["score_threshold"] == 0.3 and extra["calibration_windows_per_mode"] == 1
    before = load_detector(src)[0].state_dict()
    for key, value in model.state_dict().items():
        np.testing.assert_array_equal(value.numpy(), before[key].numpy())
