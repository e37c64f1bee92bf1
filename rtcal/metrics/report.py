"""The JSON form of an evaluation report (what ``rtcal eval --json`` writes).

Top level (main convention, after alignment)::

    precision, recall, f1, n_true, n_est, n_tp, n_fp, n_fn, median_iou,
    median_trace_corr (null without true calcium), n_trace_corr,
    offset_px [dy, dx] (estimates relative to truth; estimates are moved by
    -offset before the aligned matching), offset_clamped, offset_n_pairs,
    max_offset_px, alignment_worse,
    convention {binarise_fraction, min_iou, iou_rule, max_centroid_px},
    caiman {precision, recall, f1, n_true, n_est, n_tp, n_fp, n_fn, median_iou,
            convention {...}},
    unaligned {... as the top-level scores ..., median_trace_corr, caiman {...}},
    recall_by_snr [{snr_lo, snr_hi, n_true, n_tp, recall}] or null
        (snr_lo / snr_hi null for an open end, recall null for an empty bin),
    recall_by_spikes [{spikes_lo, spikes_hi, n_true, n_tp, recall}] or null
        (spikes in the frames the results cover; spikes_hi null for the open end),
    activity_ceiling {f1, n_active, n_true} or null (F1 of finding exactly the
        neurons that spike in those frames),
    truth {kind, n_clipped_px, n_dropped_regions}, warnings [str],
    matches (only with details) {est_index, true_index, true_id, iou, is_tp, trace_corr}

NaN and infinities are written as null.
"""

from __future__ import annotations

import math

import numpy as np

from rtcal.metrics.evaluate import EvalReport
from rtcal.metrics.matching import BINARISE_FRACTION, CAIMAN, MAIN, Convention, Scores


def finite_or_none(value: float | None) -> float | None:
    """A float for JSON: NaN, +-inf and None become None."""
    if value is None or not math.isfinite(value):
        return None
    return float(value)


def convention_summary(convention: Convention) -> dict:
    """The matching rule, so a reader of the JSON knows what was counted."""
    return {
        "binarise_fraction": BINARISE_FRACTION,
        "min_iou": convention.min_iou,
        "iou_rule": ">" if convention.strict else ">=",
        "max_centroid_px": convention.max_centroid_px,
    }


def scores_to_dict(scores: Scores) -> dict:
    return {
        "precision": finite_or_none(scores.precision),
        "recall": finite_or_none(scores.recall),
        "f1": finite_or_none(scores.f1),
        "n_true": scores.n_true,
        "n_est": scores.n_est,
        "n_tp": scores.n_tp,
        "n_fp": scores.n_fp,
        "n_fn": scores.n_fn,
        "median_iou": finite_or_none(scores.median_iou),
    }


def _matches_to_dict(report: EvalReport) -> dict:
    m = report.matching
    ids = report.truth_ids if report.truth_ids is not None else np.arange(m.n_true)
    return {
        "est_index": m.est_index.tolist(),
        "true_index": m.true_index.tolist(),
        "true_id": np.asarray(ids)[m.true_index].tolist(),
        "iou": m.iou.tolist(),
        "is_tp": m.is_tp.tolist(),
        "trace_corr": [finite_or_none(v) for v in report.trace_corr.tolist()],
    }


def report_to_dict(report: EvalReport, details: bool = False) -> dict:
    """The report as plain JSON types; ``matches`` only when details is True."""
    out = scores_to_dict(report.main)
    tp_corr = report.trace_corr[report.matching.is_tp]
    out |= {
        "median_trace_corr": finite_or_none(report.median_trace_corr),
        "n_trace_corr": int(np.count_nonzero(np.isfinite(tp_corr))),
        "offset_px": [float(report.offset.dy), float(report.offset.dx)],
        "offset_clamped": report.offset.clamped,
        "offset_n_pairs": report.offset.n_pairs,
        "max_offset_px": float(report.offset.max_px),
        "alignment_worse": report.alignment_worse,
        "convention": convention_summary(MAIN),
        "caiman": scores_to_dict(report.caiman) | {"convention": convention_summary(CAIMAN)},
        "unaligned": scores_to_dict(report.unaligned) | {
            "median_trace_corr": finite_or_none(report.unaligned_median_trace_corr),
            "caiman": scores_to_dict(report.unaligned_caiman),
        },
        "recall_by_snr": None if report.recall_by_snr is None else [
            {"snr_lo": finite_or_none(b.snr_lo), "snr_hi": finite_or_none(b.snr_hi),
             "n_true": b.n_true, "n_tp": b.n_tp, "recall": finite_or_none(b.recall)}
            for b in report.recall_by_snr
        ],
        "recall_by_spikes": None if report.recall_by_spikes is None else [
            {"spikes_lo": b.lo, "spikes_hi": b.hi, "n_true": b.n_true, "n_tp": b.n_tp,
             "recall": finite_or_none(b.recall)}
            for b in report.recall_by_spikes
        ],
        "activity_ceiling": None if report.ceiling is None else {
            "f1": finite_or_none(report.ceiling.f1), "n_active": report.ceiling.n_active,
            "n_true": report.ceiling.n_true},
        "spike_inference": None if report.spikes is None else {
            "n_pairs": report.spikes.n_pairs, "n_est": report.spikes.n_est,
            "n_true": report.spikes.n_true, "n_matched": report.spikes.n_matched,
            "precision": finite_or_none(report.spikes.precision),
            "recall": finite_or_none(report.spikes.recall),
            "f1_median": finite_or_none(report.spikes.f1_median),
            "tolerance_frames": report.spikes.tolerance},
        "truth": {"kind": report.truth_kind, "n_clipped_px": report.n_clipped_px,
                  "n_dropped_regions": report.n_dropped_regions},
        "warnings": list(report.warnings),
    }
    if details:
        out["matches"] = _matches_to_dict(report)
    return out
