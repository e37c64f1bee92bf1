"""End-to-end evaluation of Results objects against Truth, and the JSON report."""

from __future__ import annotations

import importlib
import json

import numpy as np
import pytest

from rtcal.metrics import EvaluationError, evaluate, report_to_dict, truth_from_arrays
from rtcal.metrics.offset import Offset
from rtcal.store.results import Results

H, W, T = 80, 96, 120
# the module, not the function ``rtcal.metrics.evaluate`` that shadows it
evaluate_module = importlib.import_module("rtcal.metrics.evaluate")


def gaussian_cells(centres, sigma: float = 2.5) -> np.ndarray:
    """float32 (K, H, W) Gaussian footprints truncated below 0.01."""
    yy, xx = np.mgrid[0:H, 0:W]
    out = np.zeros((len(centres), H, W), np.float32)
    for k, (cy, cx) in enumerate(centres):
        g = np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / (2 * sigma**2))
        out[k] = np.where(g < 0.01, 0.0, g)
    return out


def grid_centres(n: int) -> np.ndarray:
    """n cell centres on a 14 px grid with sub-pixel jitter (no two cells overlap)."""
    rng = np.random.default_rng(n)
    k = np.arange(n)
    base = np.column_stack([10 + 14 * (k // 6), 10 + 14 * (k % 6)]).astype(float)
    return base + rng.uniform(-0.5, 0.5, base.shape)


def true_calcium(k: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    s = (rng.random((k, T)) < 0.06).astype(np.float64)
    c = np.zeros((k, T))
    for t in range(1, T):
        c[:, t] = 0.85 * c[:, t - 1] + s[:, t]
    return c.astype(np.float32)


def make_results(footprints: np.ndarray, traces: np.ndarray | None = None,
                 frame_index: np.ndarray | None = None) -> Results:
    k = footprints.shape[0]
    if frame_index is None:
        frame_index = np.arange(T, dtype=np.int64)
    n = frame_index.size
    if traces is None:
        traces = np.zeros((k, n), np.float32)
    ns = np.arange(n, dtype=np.int64) * 33_000_000
    return Results(
        height=H, width=W, fps_hz=30.0, footprints=footprints.astype(np.float32),
        traces=traces.astype(np.float32), spikes=np.zeros((k, n), np.float32),
        born_frame=np.zeros(k, np.int64), frame_index=frame_index,
        shifts=np.zeros((n, 2), np.float32), t_received_ns=ns, t_done_ns=ns + 1000,
    )


def scenario(n: int = 30, seed: int = 0):
    c = grid_centres(n)
    cal = true_calcium(n, seed)
    return c, cal, truth_from_arrays(gaussian_cells(c), cal, snr=np.linspace(0.5, 20, n))


def test_perfect_estimates_score_exactly_one():
    c, cal, truth = scenario()
    rep = evaluate(make_results(gaussian_cells(c), 2.0 * cal + 0.5), truth)
    assert (rep.main.f1, rep.main.precision, rep.main.recall) == (1.0, 1.0, 1.0)
    assert rep.caiman.f1 == 1.0 and rep.unaligned.f1 == 1.0
    assert rep.median_trace_corr == pytest.approx(1.0, abs=1e-6)
    assert (rep.offset.dy, rep.offset.dx) == pytest.approx((0.0, 0.0), abs=0.05)
    assert not rep.alignment_worse and rep.warnings == ()


def test_shifted_estimates_are_recovered_by_alignment():
    c, cal, truth = scenario()
    rep = evaluate(make_results(gaussian_cells(c + (1.5, -2.0)), cal), truth)
    assert abs(rep.offset.dy - 1.5) <= 0.2 and abs(rep.offset.dx + 2.0) <= 0.2
    assert rep.main.f1 == 1.0 and rep.caiman.f1 == 1.0
    assert rep.unaligned.f1 < 0.5  # a 2.5 px shift of a ~5 px cell
    assert rep.unaligned.median_iou < rep.main.median_iou
    d = report_to_dict(rep)
    assert d["f1"] == 1.0 and d["unaligned"]["f1"] == rep.unaligned.f1
    assert d["offset_px"] == pytest.approx([1.5, -2.0], abs=0.2)
    assert d["offset_clamped"] is False


def test_shift_beyond_bound_is_clamped_and_reported():
    c, cal, truth = scenario()
    rep = evaluate(make_results(gaussian_cells(c + (4.5, 0.0)), cal), truth)
    assert rep.offset.clamped and rep.offset.dy == pytest.approx(3.0)
    assert any("clamped" in w for w in rep.warnings)
    assert report_to_dict(rep)["offset_clamped"] is True


def test_mixed_errors_give_exact_counts():
    # 30 cells: 4 dropped, 1 split into two thin halves, 3 false-positive blobs
    c, cal, truth = scenario()
    est = list(gaussian_cells(np.delete(c, [0, 1, 2, 3, 10], axis=0)))
    cell = gaussian_cells(c[[10]])[0]
    mask = cell >= 0.2
    cols = np.nonzero(mask.any(axis=0))[0]
    mid = (cols[0] + cols[-1]) // 2
    left, right = cell.copy(), cell.copy()
    left[:, mid:] = 0  # left half, centre column removed from both
    right[:, : mid + 1] = 0
    blobs = gaussian_cells(np.array([[75.0, 90.0], [3.0, 90.0], [75.0, 3.0]]), sigma=1.0)
    rep = evaluate(make_results(np.stack(est + [left, right] + list(blobs))), truth)
    assert (rep.main.n_true, rep.main.n_est) == (30, 25 + 2 + 3)
    assert (rep.main.n_tp, rep.main.n_fp, rep.main.n_fn) == (25, 5, 5)
    assert rep.main.precision == 25 / 30 and rep.main.recall == 25 / 30


def test_recall_by_snr_bins_add_up():
    n = 30
    c = grid_centres(n)
    snr = np.array([0.5] * 6 + [1.5] * 6 + [3.0] * 6 + [6.0] * 6 + [12.0] * 3 + [30.0] * 3)
    truth = truth_from_arrays(gaussian_cells(c), true_calcium(n), snr=snr)
    drop = [0, 1, 2, 7, 13, 29]  # 3 from bin 0, 1 from bin 1, 1 from bin 2, 1 from the last
    rep = evaluate(make_results(gaussian_cells(np.delete(c, drop, axis=0))), truth)
    bins = report_to_dict(rep)["recall_by_snr"]
    assert [b["n_true"] for b in bins] == [6, 6, 6, 6, 3, 3]
    assert [b["n_tp"] for b in bins] == [3, 5, 5, 6, 3, 2]
    assert sum(b["n_tp"] for b in bins) == rep.main.n_tp == 24
    assert bins[0]["snr_lo"] is None and bins[-1]["snr_hi"] is None
    assert bins[0]["recall"] == 0.5 and bins[3]["recall"] == 1.0


def test_recall_by_spikes_and_the_ceiling_count_the_frames_the_results_cover():
    n = 12
    c = grid_centres(n)
    spikes = np.zeros((n, T), np.float32)
    spikes[0, 5] = spikes[1, [5, 70]] = 1.0  # cell 1 spikes again after frame 60
    spikes[2, [3, 8, 12, 20, 30, 40]] = 2.0  # counts as 6 frames with a spike
    spikes[3, 100] = 1.0  # only after frame 60
    truth = truth_from_arrays(gaussian_cells(c), true_calcium(n), spikes=spikes)
    found = [0, 2, 3, 4]  # cells 0, 2, 3 and silent 4
    res = make_results(gaussian_cells(c[found]), frame_index=np.arange(60))
    rep = evaluate(res, truth)
    bins = report_to_dict(rep)["recall_by_spikes"]
    # frames 0-59: cell 0 and cell 1 once, cell 2 six times, cells 3-11 never
    assert [(b["spikes_lo"], b["spikes_hi"]) for b in bins] == [
        (0, 1), (1, 2), (2, 5), (5, 10), (10, None)]
    assert [b["n_true"] for b in bins] == [9, 2, 0, 1, 0]
    assert [b["n_tp"] for b in bins] == [2, 1, 0, 1, 0]
    assert bins[2]["recall"] is None and bins[3]["recall"] == 1.0
    assert report_to_dict(rep)["activity_ceiling"] == {
        "f1": pytest.approx(2 * 3 / (3 + 12)), "n_active": 3, "n_true": 12}
    whole = evaluate(make_results(gaussian_cells(c[found]), frame_index=np.arange(T)), truth)
    assert whole.ceiling.n_active == 4  # cell 3's spike at frame 100 now counts
    no_spikes = evaluate(res, truth_from_arrays(gaussian_cells(c), true_calcium(n)))
    assert no_spikes.recall_by_spikes is None and no_spikes.ceiling is None
    d = report_to_dict(no_spikes)
    assert d["recall_by_spikes"] is None and d["activity_ceiling"] is None
    assert no_spikes.spikes is None and d["spike_inference"] is None


def test_trace_correlation_uses_tp_pairs_and_skips_unborn_frames():
    c, cal, truth = scenario()
    traces = (3.0 * cal + 1.0).copy()
    traces[:, :40] = np.nan  # all born at column 40
    traces[5, 40:] = np.random.default_rng(3).normal(size=T - 40)  # one bad trace
    rep = evaluate(make_results(gaussian_cells(c), traces), truth)
    tp = rep.matching.is_tp
    assert tp.all()
    r = rep.trace_corr[rep.matching.est_index == 5][0]
    assert abs(r) < 0.5
    assert rep.median_trace_corr == pytest.approx(1.0, abs=1e-6)
    d = report_to_dict(rep, details=True)
    assert d["n_trace_corr"] == 30
    assert len(d["matches"]["trace_corr"]) == len(d["matches"]["iou"]) == 30


def test_results_columns_map_to_movie_frames():
    c, cal, truth = scenario()
    frames = np.arange(50, 110)
    rep = evaluate(make_results(gaussian_cells(c), cal[:, 50:110], frames), truth)
    assert rep.median_trace_corr == pytest.approx(1.0, abs=1e-6)
    shifted = evaluate(make_results(gaussian_cells(c), cal[:, 50:110], frames - 10), truth)
    assert shifted.median_trace_corr < 0.9


def test_truth_without_calcium_gives_null_trace_corr():
    c = grid_centres(12)
    truth = truth_from_arrays(gaussian_cells(c) >= 0.3)
    rep = evaluate(make_results(gaussian_cells(c)), truth)
    d = report_to_dict(rep)
    assert d["median_trace_corr"] is None and d["recall_by_snr"] is None
    assert d["n_tp"] == 12


def test_alignment_that_hurts_is_reported_not_hidden(monkeypatch):
    c, cal, truth = scenario()

    def bad_offset(*args, **kwargs):
        return Offset(2.5, 2.5, clamped=False, max_px=3.0, n_pairs=0)

    monkeypatch.setattr(evaluate_module, "estimate_offset", bad_offset)
    rep = evaluate(make_results(gaussian_cells(c), cal), truth)
    assert rep.unaligned.f1 == 1.0 and rep.main.f1 < 1.0  # headline stays aligned
    assert rep.alignment_worse
    assert any("alignment lowered main F1" in w for w in rep.warnings)
    assert report_to_dict(rep)["alignment_worse"] is True


def test_errors_are_clear():
    c, cal, truth = scenario()
    with pytest.raises(EvaluationError, match="no components"):
        evaluate(make_results(np.zeros((0, H, W), np.float32)), truth)
    small = truth_from_arrays(np.ones((2, H, W - 1), np.float32))
    with pytest.raises(EvaluationError, match="frame"):
        evaluate(make_results(gaussian_cells(c)), small)
    empty = truth_from_arrays(np.zeros((0, H, W), np.float32))
    with pytest.raises(EvaluationError, match="no neurons"):
        evaluate(make_results(gaussian_cells(c)), empty)


def test_json_report_is_strict_json_with_the_documented_keys():
    c, cal, truth = scenario()
    rep = evaluate(make_results(gaussian_cells(c[:20]), cal[:20]), truth)
    d = report_to_dict(rep, details=True)
    text = json.dumps(d, allow_nan=False)
    back = json.loads(text)
    for key in ("precision", "recall", "f1", "n_true", "n_est", "n_tp", "median_iou",
                "median_trace_corr", "offset_px", "recall_by_snr", "caiman", "unaligned"):
        assert key in back
    for key in ("precision", "recall", "f1", "n_tp", "n_fp", "n_fn"):
        assert key in back["caiman"] and key in back["unaligned"]
    assert back["caiman"]["convention"]["max_centroid_px"] == 10.0
    assert back["convention"]["iou_rule"] == ">="
    assert (back["n_true"], back["n_est"], back["n_tp"]) == (30, 20, 20)
    assert back["recall"] == 20 / 30
    assert "matches" not in report_to_dict(rep)


def test_snr_bins_are_half_open_and_skip_non_finite():
    from rtcal.metrics.snr import recall_by_snr

    snr = np.array([0.99, 1.0, 2.0, 3.99, 4.0, 16.0, np.nan, 100.0])
    bins = recall_by_snr(snr, np.array([1, 4, 7]), edges=(1.0, 4.0, 16.0))
    assert [(b.snr_lo, b.snr_hi) for b in bins] == [
        (-np.inf, 1.0), (1.0, 4.0), (4.0, 16.0), (16.0, np.inf)]
    assert [b.n_true for b in bins] == [1, 3, 1, 2]  # the NaN is in no bin
    assert [b.n_tp for b in bins] == [0, 1, 1, 1]
    with pytest.raises(ValueError, match="increase"):
        recall_by_snr(snr, np.array([0]), edges=(2.0, 1.0))


def test_median_trace_corr_counts_only_true_positives():
    # 10 exact estimates with perfect traces; 20 estimates that are a 2-column
    # sliver of their cell (matched, IoU < 0.5, not TP) with unrelated traces
    c, cal, truth = scenario()
    fp = gaussian_cells(c)
    for k in range(10, 30):
        col = int(round(c[k, 1]))
        fp[k, :, : col - 1] = 0
        fp[k, :, col + 1 :] = 0
    traces = cal.copy()
    traces[10:] = np.random.default_rng(9).normal(size=(20, T))
    rep = evaluate(make_results(fp, traces), truth)
    assert rep.main.n_tp == 10 and len(rep.matching.iou) == 30
    assert rep.median_trace_corr == pytest.approx(1.0, abs=1e-6)
    assert np.nanmedian(rep.trace_corr) < 0.5  # over all matched pairs it would be low


def test_incomplete_results_are_flagged():
    from dataclasses import replace

    c, cal, truth = scenario()
    rep = evaluate(replace(make_results(gaussian_cells(c), cal), complete=False), truth)
    assert rep.main.f1 == 1.0
    assert any("not closed cleanly" in w for w in rep.warnings)


def test_retired_components_are_not_scored():
    """A duplicate merged away (retired) is not a false positive; without its
    retired mark the same duplicate is one."""
    import dataclasses

    c, cal, truth = scenario()
    fp = gaussian_cells(c)
    traces = 2.0 * cal + 0.5
    dup = np.concatenate([fp, fp[:3]])
    dup_traces = np.concatenate([traces, traces[:3]])
    counted = evaluate(make_results(dup, dup_traces), truth)
    assert counted.main.precision < 1.0
    retired = np.r_[np.full(len(fp), -1), np.full(3, 50)].astype(np.int64)
    res = dataclasses.replace(make_results(dup, dup_traces), retired_frame=retired)
    rep = evaluate(res, truth)
    assert (rep.main.f1, rep.main.precision, rep.main.recall) == (1.0, 1.0, 1.0)
    assert rep.median_trace_corr == pytest.approx(1.0, abs=1e-6)
    assert any("3 retired" in w for w in rep.warnings)
