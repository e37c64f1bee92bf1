"""Evaluation: score extracted footprints and traces against ground truth.

Conventions (DESIGN.md): footprints binarised at 0.2 x their maximum, Hungarian
matching on IoU, a true positive at IoU >= 0.5; also the CaImAn convention
(IoU > 0.3 and centroids < 10 px apart). A global sub-pixel offset (|d| <= 3 px
per axis) between the results' template frame and the truth frame is estimated
and removed first; scores without it are reported too.

Entry points: ``load_truth`` -> ``Truth``; ``evaluate(results, truth)`` ->
``EvalReport``; ``report_to_dict`` for its JSON form.
"""

from rtcal.metrics.ceiling import Ceiling, activity_ceiling
from rtcal.metrics.evaluate import EvalReport, EvaluationError, evaluate, score_footprints
from rtcal.metrics.matching import (
    CAIMAN,
    MAIN,
    Convention,
    Matching,
    Scores,
    binarise,
    iou_pairs,
    match_masks,
    score,
)
from rtcal.metrics.offset import Offset, estimate_offset, footprint_image, shift_footprints
from rtcal.metrics.report import report_to_dict
from rtcal.metrics.snr import SnrBin, recall_by_snr
from rtcal.metrics.spikes import SpikeScore, spike_scores
from rtcal.metrics.traces import pearson, trace_correlations
from rtcal.metrics.truth import Truth, TruthError, dense_to_csr, load_truth, truth_from_arrays

__all__ = [
    "CAIMAN",
    "Ceiling",
    "MAIN",
    "Convention",
    "EvalReport",
    "EvaluationError",
    "Matching",
    "Offset",
    "Scores",
    "SnrBin",
    "SpikeScore",
    "Truth",
    "activity_ceiling",
    "TruthError",
    "binarise",
    "dense_to_csr",
    "estimate_offset",
    "evaluate",
    "footprint_image",
    "iou_pairs",
    "load_truth",
    "match_masks",
    "pearson",
    "recall_by_snr",
    "report_to_dict",
    "score",
    "score_footprints",
    "shift_footprints",
    "spike_scores",
    "trace_correlations",
    "truth_from_arrays",
]
