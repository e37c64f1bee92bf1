"""Score a results file against ground truth.

Steps: (1) binarise and match the estimated footprints to the truth as they
are ("unaligned"); (2) estimate the global offset between the two frames
(``offset.py``), shift the float estimates back by it and match again
("aligned", the headline numbers); (3) correlate the traces of the aligned
true-positive pairs with the true calcium; (4) recall per SNR bin when the
truth has SNRs. Each matching is done under the main convention (IoU >= 0.5)
and the CaImAn convention (IoU > 0.3, centroids < 10 px apart).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp

from rtcal.errors import RtcalError
from rtcal.metrics.ceiling import Ceiling, SpikeBin, activity_ceiling, recall_by_spikes
from rtcal.metrics.matching import (
    CAIMAN,
    MAIN,
    Matching,
    Scores,
    binarise,
    match_masks,
    score,
)
from rtcal.metrics.offset import Offset, estimate_offset, shift_footprints
from rtcal.metrics.snr import DEFAULT_SNR_EDGES, SnrBin, recall_by_snr
from rtcal.metrics.spikes import SpikeScore, spike_scores
from rtcal.metrics.traces import median_or_none, trace_correlations
from rtcal.metrics.truth import Truth, dense_to_csr
from rtcal.store.results import Results


class EvaluationError(RtcalError):
    """The results cannot be scored against this truth (empty, wrong frame size)."""


@dataclass(frozen=True)
class FootprintEval:
    """Matchings of one set of estimated footprints against the truth.

    offset: the global offset applied before the aligned matchings
    main, caiman: aligned matchings; unaligned_main, unaligned_caiman: without the shift
    """

    offset: Offset
    main: Matching
    caiman: Matching
    unaligned_main: Matching
    unaligned_caiman: Matching


def score_footprints(
    est_footprints: sp.csr_array, truth: Truth, max_offset_px: float = 3.0
) -> FootprintEval:
    """Match est_footprints (csr_array (K_est, H*W), float) to the truth, with and
    without the estimated global offset."""
    h, w = truth.height, truth.width
    true_masks = binarise(truth.footprints)
    offset = estimate_offset(truth.footprints, est_footprints, h, w, max_px=max_offset_px)
    raw_masks = binarise(est_footprints)
    aligned_masks = binarise(shift_footprints(est_footprints, h, w, -offset.dy, -offset.dx))
    return FootprintEval(
        offset=offset,
        main=match_masks(aligned_masks, true_masks, w, MAIN),
        caiman=match_masks(aligned_masks, true_masks, w, CAIMAN),
        unaligned_main=match_masks(raw_masks, true_masks, w, MAIN),
        unaligned_caiman=match_masks(raw_masks, true_masks, w, CAIMAN),
    )


@dataclass(frozen=True)
class EvalReport:
    """Everything ``rtcal eval`` reports.

    main, caiman: aligned scores (main = the headline numbers)
    unaligned, unaligned_caiman: the same without the offset
    matching: the aligned main-convention pairs
    trace_corr: float64 (M,) Pearson r of each pair in ``matching`` (NaN without calcium)
    median_trace_corr: median r over the true-positive pairs (None without calcium)
    unaligned_median_trace_corr: the same for the unaligned matching
    recall_by_snr: per-bin recall (None when the truth has no SNR)
    recall_by_spikes: recall per bin of spike count in the frames the results cover
        (None when the truth has no spikes)
    ceiling: the activity ceiling over those frames (rtcal.metrics.ceiling: F1 of
        finding exactly the neurons that spike there), or None
    spikes: spike inference of the true-positive pairs (rtcal.metrics.spikes), or
        None without true spikes
    alignment_worse: True if aligning lowered F1 under either convention
    warnings: human-readable notes (clamped offset, clipped regions, ...)
    truth_ids: int64 (K_true,) ids of the true neurons (regions.json ids), or None
    n_clipped_px, n_dropped_regions, truth_kind: as in ``Truth``
    """

    main: Scores
    caiman: Scores
    unaligned: Scores
    unaligned_caiman: Scores
    offset: Offset
    matching: Matching
    trace_corr: np.ndarray
    median_trace_corr: float | None
    unaligned_median_trace_corr: float | None
    recall_by_snr: tuple[SnrBin, ...] | None
    alignment_worse: bool
    warnings: tuple[str, ...]
    recall_by_spikes: tuple[SpikeBin, ...] | None = None
    ceiling: Ceiling | None = None
    spikes: SpikeScore | None = None
    truth_ids: np.ndarray | None = None
    n_clipped_px: int = 0
    n_dropped_regions: int = 0
    truth_kind: str = "arrays"


def _check_inputs(results: Results, truth: Truth) -> None:
    fp = results.footprints
    if fp.ndim != 3 or fp.shape[1:] != (results.height, results.width):
        raise EvaluationError(
            f"results footprints have shape {fp.shape}, expected "
            f"(K, {results.height}, {results.width})"
        )
    if (truth.height, truth.width) != (results.height, results.width):
        raise EvaluationError(
            f"truth frame is {truth.height}x{truth.width} but the results frame is "
            f"{results.height}x{results.width}"
        )
    if fp.shape[0] == 0:
        raise EvaluationError("results have no components (K = 0); nothing to evaluate")
    if truth.n_neurons == 0:
        raise EvaluationError("truth has no neurons inside the frame; nothing to evaluate")


def _trace_corr(results: Results, truth: Truth, matching: Matching) -> np.ndarray:
    if truth.calcium is None or results.n_frames == 0:
        return np.full(len(matching.est_index), np.nan)
    return trace_correlations(
        results.traces, results.frame_index, truth.calcium,
        matching.est_index, matching.true_index,
    )


def _f1_drops(fe: FootprintEval) -> list[str]:
    """Notes for each convention whose F1 aligning lowered (it should not)."""
    drops = []
    for name, aligned, raw in (("main", fe.main, fe.unaligned_main),
                               ("caiman", fe.caiman, fe.unaligned_caiman)):
        f_aligned, f_raw = score(aligned).f1, score(raw).f1
        if f_aligned < f_raw:
            drops.append(f"alignment lowered {name} F1 from {f_raw:.4f} to {f_aligned:.4f}")
    return drops


def _warnings(results: Results, truth: Truth, fe: FootprintEval) -> list[str]:
    notes = _f1_drops(fe)
    if fe.offset.clamped:
        notes.append(
            f"offset reached the +-{fe.offset.max_px:g} px bound and was clamped; the "
            "frames may be further apart than the evaluator corrects"
        )
    if truth.n_clipped_px:
        notes.append(f"{truth.n_clipped_px} region coordinates lay outside the frame "
                     "and were clipped")
    if truth.n_dropped_regions:
        notes.append(f"{truth.n_dropped_regions} regions lay wholly outside the frame "
                     "and were dropped")
    if not results.complete:
        notes.append("results file was not closed cleanly (incomplete run)")
    if truth.snr is not None and not np.all(np.isfinite(truth.snr)):
        notes.append("some true neurons have a non-finite SNR; left out of recall_by_snr")
    return notes


def spike_counts(results: Results, truth: Truth) -> np.ndarray | None:
    """Each true neuron's spikes in the movie frames the results cover (all of the
    truth's frames when the results hold none), or None without true spikes."""
    if truth.spikes is None:
        return None
    index = np.asarray(results.frame_index, np.int64)
    index = index[(index >= 0) & (index < truth.spikes.shape[1])]
    spikes = truth.spikes[:, index] if results.n_frames else truth.spikes
    return spikes.sum(axis=1).astype(np.int64)


def _alive(results: Results) -> tuple[Results, int]:
    """``results`` without its retired components, and how many there were."""
    alive = results.retired_frame < 0
    if alive.all():
        return results, 0
    sub = dataclasses.replace(
        results,
        footprints=results.footprints[alive],
        traces=results.traces[alive],
        spikes=results.spikes[alive],
        born_frame=results.born_frame[alive],
        retired_frame=results.retired_frame[alive],
    )
    return sub, int((~alive).sum())


def evaluate(
    results: Results,
    truth: Truth,
    *,
    max_offset_px: float = 3.0,
    snr_edges: tuple[float, ...] = DEFAULT_SNR_EDGES,
) -> EvalReport:
    """Score ``results`` against ``truth`` (same frame size). See the module docstring.

    Components the online NMF retired (merged into another or dead; their
    ``retired_frame`` >= 0) are not part of the answer and are not scored."""
    _check_inputs(results, truth)
    results, n_retired = _alive(results)
    fe = score_footprints(dense_to_csr(results.footprints), truth, max_offset_px)
    corr = _trace_corr(results, truth, fe.main)
    corr_raw = _trace_corr(results, truth, fe.unaligned_main)
    by_snr = None
    if truth.snr is not None:
        by_snr = recall_by_snr(truth.snr, fe.main.true_index[fe.main.is_tp], snr_edges)
    counts = spike_counts(results, truth)
    by_spikes = ceiling = spikes = None
    if counts is not None:
        by_spikes = recall_by_spikes(counts, fe.main.true_index[fe.main.is_tp])
        ceiling = activity_ceiling(counts)
        tp = fe.main.is_tp
        spikes = spike_scores(results.spikes, results.frame_index, truth.spikes,
                              fe.main.est_index[tp], fe.main.true_index[tp])
    notes = _warnings(results, truth, fe)
    if n_retired:
        notes.append(f"{n_retired} retired components (merged or dead) not scored")
    return EvalReport(
        main=score(fe.main),
        caiman=score(fe.caiman),
        unaligned=score(fe.unaligned_main),
        unaligned_caiman=score(fe.unaligned_caiman),
        offset=fe.offset,
        matching=fe.main,
        trace_corr=corr,
        median_trace_corr=median_or_none(corr[fe.main.is_tp]),
        unaligned_median_trace_corr=median_or_none(corr_raw[fe.unaligned_main.is_tp]),
        recall_by_snr=by_snr,
        alignment_worse=bool(_f1_drops(fe)),
        warnings=tuple(notes),
        recall_by_spikes=by_spikes,
        ceiling=ceiling,
        spikes=spikes,
        truth_ids=truth.ids,
        n_clipped_px=truth.n_clipped_px,
        n_dropped_regions=truth.n_dropped_regions,
        truth_kind=truth.kind,
    )
