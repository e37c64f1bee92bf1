"""CombinedDetector: the first detector's footprints plus the second's new ones, by
the live engine's novelty rule; its place in the factory and the re-run process."""

import numpy as np
import pytest

from rtcal.detect.combined import CombinedDetector
from rtcal.detect.proposal import Proposal

H, W = 40, 48


def _disc(r0, c0, radius):
    rr, cc = np.mgrid[:H, :W]
    return (((rr - r0) ** 2 + (cc - c0) ** 2) <= radius**2).astype(np.float32)


class _Fixed:
    """A proposer that always answers the same footprints (and counts its calls)."""

    def __init__(self, footprints, score=1.0, sure=None):
        self.footprints = np.asarray(footprints, np.float32).reshape(-1, H, W)
        self.score, self.sure, self.calls = score, sure, 0

    def propose(self, window):
        self.calls += 1
        n = len(self.footprints)
        centers = np.array([np.argwhere(f > 0).mean(axis=0) for f in self.footprints],
                           np.float32).reshape(n, 2)
        return Proposal(self.footprints, centers, np.full(n, self.score, np.float32), self.sure)


def test_the_second_detector_adds_only_what_is_new():
    a, b = _disc(10, 10, 5), _disc(28, 30, 5)
    shifted_a = _disc(11, 10, 5)  # the same cell as a (IoU ~0.8): not added
    fragment_b = b * (np.mgrid[:H, :W][1] >= 31)  # half of b: IoU < 0.5 but covered
    c = _disc(12, 38, 5)  # a cell the first detector missed
    first = _Fixed([a, b], 0.9, sure=np.array([False, True]))
    second = _Fixed([shifted_a, fragment_b, c], 7.0)  # says nothing of sureness
    det = CombinedDetector(first, second)
    window = np.zeros((5, H, W), np.float32)
    got = det.propose(window)
    assert first.calls == second.calls == 1
    assert len(got) == 3
    np.testing.assert_array_equal(got.footprints, np.stack([a, b, c]))
    np.testing.assert_allclose(got.centers[2], [12, 38], atol=0.01)
    assert got.score.tolist() == [pytest.approx(0.9)] * 2 + [7.0]
    assert got.sure.tolist() == [False, True, False]
    assert (det.last_counts.first, det.last_counts.second, det.last_counts.added) == (2, 3, 1)


def test_either_detector_may_find_nothing():
    a, c = _disc(10, 10, 5), _disc(12, 38, 5)
    window = np.zeros((5, H, W), np.float32)
    only_second = CombinedDetector(_Fixed([]), _Fixed([a, c])).propose(window)
    np.testing.assert_array_equal(only_second.footprints, np.stack([a, c]))
    only_first = CombinedDetector(_Fixed([a]), _Fixed([])).propose(window)
    np.testing.assert_array_equal(only_first.footprints, a[None])
    assert CombinedDetector(_Fixed([]), _Fixed([])).propose(window).footprints.shape[0] == 0
    with pytest.raises(ValueError, match="min_iou"):
        CombinedDetector(_Fixed([]), _Fixed([]), min_iou=0.0)


def test_factory_builds_learned_plus_seed_with_the_pipeline_threshold(tmp_path):
    from detect_tiny import tiny_model

    from rtcal.detect.factory import describe_detector, detector_from_section, make_detector
    from rtcal.detect.learned import LearnedDetector
    from rtcal.detect.model import save_checkpoint
    from rtcal.detect.seed import SeedDetector
    from rtcal.engine.pipeline import pipeline_config

    weights = tmp_path / "d.pt"
    save_checkpoint(weights, tiny_model(), {"score_threshold_by_mode": {"2p": 0.4},
                                            "pipeline_score_threshold_by_mode": {"2p": 0.6}})
    config = pipeline_config(30.0, 6.0, "2p")
    det = detector_from_section({"name": "learned+seed", "weights": str(weights)}, config)
    assert isinstance(det, CombinedDetector)
    assert isinstance(det.first, LearnedDetector) and isinstance(det.second, SeedDetector)
    assert det.first.score_threshold == 0.6  # the pipeline threshold
    assert describe_detector(det) == "learned (score threshold 0.6) + seed"
    standalone = make_detector("learned+seed", config, weights=weights, score_threshold=0.7)
    assert standalone.first.score_threshold == 0.7


def test_the_rerun_process_runs_a_combined_detector(tmp_path):
    from detect_tiny import tiny_checkpoint

    from rtcal.detect.learned import LearnedDetector, LearnedDetectorConfig
    from rtcal.engine.detect_process import DetectorProcess

    weights = tiny_checkpoint(tmp_path / "tiny.pt")
    learned = LearnedDetector.from_weights(weights, LearnedDetectorConfig(radius_px=4.0))
    det = CombinedDetector(learned, _Fixed([_disc(12, 38, 5)]))
    rng = np.random.default_rng(0)
    window = (100 + 5 * rng.standard_normal((30, H, W))).astype(np.float32)
    expected = det.propose(window).footprints  # the learned runtime is built here
    proc = DetectorProcess(det)
    try:
        got, sure = proc.propose(window)
    finally:
        proc.close()
    np.testing.assert_allclose(got.toarray().reshape(-1, H, W), expected, atol=1e-5)
    np.testing.assert_array_equal(sure, det.propose(window).sure_mask)
