"""The learned detector: Proposal contract, bad windows, footprint weighting, the factory."""

import numpy as np
import pytest
import torch
from detect_tiny import tiny_checkpoint, tiny_model

from rtcal.detect.factory import DetectorChoiceError, make_detector
from rtcal.detect.learned import (
    LearnedDetector,
    LearnedDetectorConfig,
    LearnedDetectorError,
    shipped_weights,
)
from rtcal.detect.runtime import EagerRuntime, RuntimeUnavailableError
from rtcal.detect.seed import SeedDetector
from rtcal.detect.tiling import crop_to_box
from rtcal.detect.weighting import MASK_FLOOR, weighted_footprint
from rtcal.engine.pipeline import pipeline_config

torch.set_num_threads(1)
ANY_SIZE = LearnedDetectorConfig(tile_px=64, overlap_px=16, min_area_frac=0.0,
                                 max_area_frac=1e6, radius_px=4.0)


def _window(T=40, H=80, W=72, seed=0):
    rng = np.random.default_rng(seed)
    return (100 + 5 * rng.standard_normal((T, H, W))).astype(np.float32)


def _check_proposal(p, H, W):
    K = len(p)
    assert p.footprints.shape == (K, H, W) and p.footprints.dtype == np.float32
    assert p.centers.shape == (K, 2) and p.score.shape == (K,)
    assert np.all(p.footprints >= 0)
    np.testing.assert_allclose(p.footprints.max(axis=(1, 2)), 1.0, rtol=1e-6)
    assert np.all((p.centers >= 0) & (p.centers < [H, W]))
    assert np.all((p.score > 0.5) & (p.score <= 1)) and np.all(np.diff(p.score) <= 0)


def test_proposal_is_valid_across_tiles():
    det = LearnedDetector(EagerRuntime(tiny_model(confident=True)), ANY_SIZE)
    p = det.propose(_window())
    assert len(p) > 0
    _check_proposal(p, 80, 72)
    t = det.last_timing
    assert t.n_tiles == 4 and t.channels_s > 0 and t.network_s > 0 and t.total_s > 0
    # No duplicates survive: binarised footprints overlap by less than nms_iou.
    masks = p.footprints >= 0.2
    for i in range(len(p)):
        for j in range(i):
            inter = (masks[i] & masks[j]).sum()
            assert inter / (masks[i] | masks[j]).sum() < ANY_SIZE.nms_iou


def test_sure_marks_the_proposals_scoring_at_least_sure_score():
    from dataclasses import replace

    model, window = tiny_model(confident=True), _window()
    p = LearnedDetector(EagerRuntime(model), ANY_SIZE).propose(window)
    assert len(p) >= 2 and p.score[0] > p.score[-1]  # at least two distinct scores
    cut = float(p.score[0])  # only the best (or those tied with it) are sure
    q = LearnedDetector(EagerRuntime(model), replace(ANY_SIZE, sure_score=cut)).propose(window)
    np.testing.assert_array_equal(q.sure, q.score >= cut)
    assert q.sure[0] and not q.sure[-1]
    # under the threshold: every proposal (each scored over the threshold) is sure
    low = replace(ANY_SIZE, sure_score=0.1)
    assert LearnedDetector(EagerRuntime(model), low).propose(window).sure.all()
    for none in (None, 1.0):
        r = LearnedDetector(EagerRuntime(model), replace(ANY_SIZE, sure_score=none)).propose(
            window)
        assert r.sure is None and not r.sure_mask.any() and r.sure_mask.shape == (len(r),)
    with pytest.raises(LearnedDetectorError, match="sure_score"):
        LearnedDetectorConfig(sure_score=1.5)


def test_nothing_confident_gives_an_empty_proposal():
    det = LearnedDetector(EagerRuntime(tiny_model()), ANY_SIZE)  # class prior 0.01
    p = det.propose(_window(H=40, W=40))
    assert len(p) == 0 and p.footprints.shape == (0, 40, 40) and p.centers.shape == (0, 2)


def test_onnx_runtime_gives_the_same_proposal_as_eager(tmp_path):
    pytest.importorskip("onnxruntime")
    model = tiny_model(seed=3, confident=True)
    window = _window(seed=1)
    eager = LearnedDetector(model, ANY_SIZE, prefer="eager").propose(window)
    det = LearnedDetector(model, ANY_SIZE, prefer="onnx", cache_dir=tmp_path, threads=1)
    assert det.runtime is None  # built for the frame's tile shape on first use
    fast = det.propose(window)
    assert det.runtime.name == "onnxruntime-cpu" and det.runtime.tile_shape == (64, 64)
    assert len(fast) == len(eager) > 0
    np.testing.assert_allclose(fast.footprints, eager.footprints, atol=1e-5)
    np.testing.assert_allclose(fast.score, eager.score, atol=1e-5)


@pytest.mark.parametrize("window, match", [
    (np.zeros((40, 64)), r"\(T, H, W\) array"),
    (np.zeros((3, 64, 64), np.float32), "needs T >= 4"),
    (np.zeros((40, 8, 64), np.float32), "H, W >= 16"),
    (np.full((40, 32, 32), np.nan, np.float32), "NaN or inf"),
    (np.zeros((40, 32, 32), complex), "real numbers"),
    ([[[0.0]]], "array"),
])
def test_bad_windows_raise_clearly(window, match):
    det = LearnedDetector(EagerRuntime(tiny_model()), ANY_SIZE)
    with pytest.raises(LearnedDetectorError, match=match):
        det.propose(window)


def test_bad_settings_and_channels_raise_clearly():
    with pytest.raises(LearnedDetectorError, match="overlap_px"):
        LearnedDetectorConfig(tile_px=64, overlap_px=40)
    with pytest.raises(LearnedDetectorError, match="score_threshold"):
        LearnedDetectorConfig(score_threshold=1.0)
    det = LearnedDetector(EagerRuntime(tiny_model()), ANY_SIZE)
    with pytest.raises(LearnedDetectorError, match="do not fit the network"):
        det.propose_channels(np.zeros((6, 32, 32), np.float32), _window(H=32, W=32))


def test_weights_load_from_a_checkpoint_and_a_missing_one_is_named(tmp_path):
    path = tiny_checkpoint(tmp_path / "tiny.pt")
    det = LearnedDetector.from_weights(path, ANY_SIZE, prefer="eager")
    assert det.n_key == 3 and det.runtime is None
    det.propose(_window(H=32, W=32))
    assert det.runtime.name == "eager-cpu"
    with pytest.raises(RuntimeUnavailableError, match="'compile' on cpu: runs on CUDA only"):
        LearnedDetector.from_weights(path, ANY_SIZE, prefer="compile")
    for mode, name, preset in ((None, "detector_default.pt", "default"),
                               ("1p", "detector_default.pt", "default"),
                               ("2p", "detector_2p.pt", "2p")):
        try:
            shipped = shipped_weights(mode)
        except LearnedDetectorError as err:
            assert f"rtcal train --preset {preset}" in str(err)
        else:
            assert shipped.name == name
    with pytest.raises(LearnedDetectorError, match="no shipped weights for mode '3p'"):
        shipped_weights("3p")


def _blob(shape, centre, sigma):
    yy, xx = np.mgrid[: shape[0], : shape[1]]
    g = np.exp(-((yy - centre[0]) ** 2 + (xx - centre[1]) ** 2) / (2 * sigma**2))
    return np.where(g > 0.05, g, 0.0)


def test_weighting_recovers_an_active_footprint_and_floors_a_silent_one():
    rng = np.random.default_rng(0)
    T, H, W = 300, 48, 48
    cell, neighbour = _blob((H, W), (20, 20), 2.5), _blob((H, W), (20, 28), 2.5)
    spikes = rng.random((2, T)) < 0.03
    calcium = np.stack([np.convolve(s, np.exp(-np.arange(40) / 8.0))[:T] for s in spikes])
    Y = (50 + 20 * calcium[0, :, None, None] * cell + 20 * calcium[1, :, None, None] * neighbour
         + 10 * cell + rng.standard_normal((T, H, W))).astype(np.float32)
    inst = crop_to_box(cell >= 0.2, 0, 0, 0.9, 0)
    fp = weighted_footprint(Y, inst, dilate_px=1, context_px=4)
    dense = np.zeros((H, W), np.float32)
    h, w = fp.weights.shape
    dense[fp.top : fp.top + h, fp.left : fp.left + w] = fp.weights
    assert fp.weights.max() == pytest.approx(1.0) and fp.weights.min() >= 0
    assert np.corrcoef(dense.ravel(), cell.ravel())[0, 1] > 0.95
    assert np.all(dense[cell >= 0.2] >= MASK_FLOOR)
    assert dense[neighbour > 0.5].max() < 0.3  # the neighbour's pixels are not taken
    silent = (50 + 10 * cell + rng.standard_normal((T, H, W))).astype(np.float32)
    fp = weighted_footprint(silent, inst, dilate_px=1, context_px=4)
    dense[:] = 0
    dense[fp.top : fp.top + fp.weights.shape[0], fp.left : fp.left + fp.weights.shape[1]] = (
        fp.weights)
    assert np.array_equal(dense >= 0.2, cell >= 0.2)  # the mask stays the footprint's extent


def test_factory_makes_each_detector_by_name(tmp_path):
    config = pipeline_config(30.0, 5.0, "2p")
    assert isinstance(make_detector("seed", config), SeedDetector)
    path = tiny_checkpoint(tmp_path / "tiny.pt")
    det = make_detector("learned", config, weights=path, runtime="eager")
    assert isinstance(det, LearnedDetector) and det.config.radius_px == 5.0
    assert det.config.sure_score == LearnedDetectorConfig().sure_score
    det = make_detector("learned", config, weights=path, runtime="eager", sure_score=0.75)
    assert det.config.sure_score == 0.75
    with pytest.raises(DetectorChoiceError, match="known: seed, learned"):
        make_detector("cnn", config)


class _OracleRuntime:
    """A stand-in network that reads cell labels from input channel 0 and answers with
    their masks at 1/4 resolution (logit +6 where a 4x4 block is mostly the cell)."""

    name, in_channels, tile_shape, min_side, max_batch = "oracle", 8, (96, 96), 32, 4

    def infer(self, x):
        B, _, h, w = x.shape
        logits = np.full((B, 40), -6.0, np.float32)
        masks = np.full((B, 40, h // 4, w // 4), -6.0, np.float32)
        for b in range(B):
            labels = np.rint(x[b, 0]).astype(int)
            for q, lab in enumerate(np.unique(labels[labels > 0])):
                frac = (labels == lab).reshape(h // 4, 4, w // 4, 4).mean(axis=(1, 3))
                logits[b, q], masks[b, q] = 6.0, np.where(frac >= 0.5, 6.0, -6.0)
        return logits, masks


@pytest.mark.parametrize("fit", [False, True])
def test_true_masks_through_tiles_and_fits_recover_the_cells(fit):
    """The whole chain after the network (tiles, upsampling, ownership, merge, fit, NMS)
    on a simulated window whose 'network' knows the truth: F1 and traces stay high."""
    from rtcal.detect.standalone import WindowDetection, to_results
    from rtcal.detect.window_traces import denoise, window_traces
    from rtcal.metrics import evaluate, truth_from_arrays
    from rtcal.sim import Simulation, make_config, static_truth

    cfg = make_config("2p", height=160, width=176, n_neurons=25, n_frames=150, seed=5,
                      motion_px=0.0)
    sim = Simulation(cfg)
    chunks = list(sim.chunks())
    window = np.concatenate([c.images for c in chunks]).astype(np.float32)
    calcium = np.concatenate([c.calcium for c in chunks]).T
    truth = static_truth(sim)["footprints"]
    peak = truth.max(axis=(1, 2), keepdims=True)
    on = truth >= 0.2 * peak
    labels = np.where(on.any(axis=0), 1 + np.argmax(truth / peak * on, axis=0), 0)
    channels = np.zeros((8, 160, 176), np.float32)
    channels[0] = labels
    config = LearnedDetectorConfig(radius_px=6.0, overlap_px=32, fit_footprints=fit)
    det = LearnedDetector(_OracleRuntime(), config)
    p = det.propose_channels(channels, window)
    assert det.last_timing.n_tiles == 2 * 3
    _check_proposal(p, 160, 176)
    raw = window_traces(p.footprints, window, pipeline_config(cfg.fps_hz, 6.0).nmf, cfg.fps_hz)
    result = WindowDetection(p, np.zeros((150, 2), np.float32), raw,
                             *denoise(raw, cfg.fps_hz), 0.0, 0.0, 0.0)
    report = evaluate(to_results(result, np.arange(150), cfg.fps_hz),
                      truth_from_arrays(truth, calcium))
    assert report.main.f1 >= 0.95, report.main
    assert report.median_trace_corr >= 0.9, report.median_trace_corr


@pytest.mark.parametrize("mode,preset", [("1p", "default"), ("2p", "2p")])
def test_the_shipped_weights_carry_their_recipe_and_thresholds(mode, preset):
    """Each checkpoint in the package: its recipe, per-mode window thresholds and, for
    the 2p one, the pipeline threshold that tools/pipeline_threshold.py chose from its
    stored table (the best mean F1 over the development movies)."""
    from rtcal.detect.model import load_detector

    _, extra = load_detector(shipped_weights(mode))
    assert extra["preset"] == preset and 0 < extra["score_threshold"] < 1
    by_mode = extra["score_threshold_by_mode"]  # calibrated per kind of recording
    assert set(by_mode) == {"2p", "1p"} and all(0 < t < 1 for t in by_mode.values())
    in_pipeline = extra.get("pipeline_score_threshold_by_mode", {})
    if preset == "2p":
        assert set(in_pipeline) == {"2p"} and 0 < in_pipeline["2p"] < 1
        scores = extra["pipeline_threshold_scores"]["2p"]  # the table it was chosen from
        means = {float(t): np.mean(f1) for t, f1 in scores["f1"].items()}
        assert max(means, key=means.get) == in_pipeline["2p"]
        assert scores["seeds"] == [11, 12, 13, 14, 61, 62]  # development movies only


def test_the_shipped_2p_weights_find_simulated_cells():
    """On a held-out simulated 2p window (random weights find none)."""
    from rtcal.detect.model import load_detector
    from rtcal.detect.standalone import detect_window, to_results
    from rtcal.metrics import evaluate, truth_from_arrays
    from rtcal.sim import Simulation, make_config, static_truth

    _, extra = load_detector(shipped_weights("2p"))
    sim = Simulation(make_config("2p", height=128, width=128, n_neurons=15, n_frames=300,
                                 seed=2_000_000_123))
    chunks = list(sim.chunks())
    frames = np.concatenate([c.images for c in chunks])
    calcium = np.concatenate([c.calcium for c in chunks]).T
    truth = static_truth(sim)
    det = LearnedDetector.from_weights(None, LearnedDetectorConfig(radius_px=6.0))
    assert det.score_threshold == extra["score_threshold_by_mode"]["2p"]  # the 2p weights
    found = detect_window(frames, det, pipeline_config(30.0, 6.0, "2p"))
    report = evaluate(to_results(found, np.arange(len(frames)), 30.0),
                      truth_from_arrays(truth["footprints"], calcium))
    assert report.main.n_tp >= 4, report.main  # measured: 5 of 15 (8 proposed); random weights: 0
