"""Validation during training: detector F1 and trace correlation on held-out windows.

Each held-out window (``train_data.make_sample`` with validation seeds and
full-resolution trace frames) goes through the network; the queries whose
"neuron" probability reaches ``score_threshold`` become footprints (mask
probabilities upsampled to full resolution, zero below ``mask_threshold``),
their traces are solved on the window's frames as in the trace loss
(``solve_traces``: least squares after a spatial high-pass), and
``rtcal.metrics.evaluate`` scores them against the truth (F1 at IoU >= 0.5,
median trace correlation of the true positives). Counts are pooled over the
windows before F1 is formed.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from rtcal.detect.trace_loss import masks_at, solve_traces
from rtcal.detect.train_data import TrainSample
from rtcal.metrics import EvaluationError, evaluate, truth_from_arrays
from rtcal.store.results import Results


@dataclass(frozen=True)
class ValidationScores:
    """Pooled over the validation windows: counts, precision, recall, F1, and the
    median Pearson r of the true-positive traces (NaN when there is none)."""

    n_true: int
    n_est: int
    n_tp: int
    precision: float
    recall: float
    f1: float
    median_trace_corr: float


def footprints_from_outputs(class_logits: torch.Tensor, mask_logits: torch.Tensor, size: int,
                            score_threshold: float = 0.5, mask_threshold: float = 0.5,
                            nms_iou: float = 0.5) -> tuple[np.ndarray, np.ndarray]:
    """Footprints (N, size, size) float32 and scores (N,) of one window's confident queries.

    class_logits (Q,); mask_logits (Q, size/4, size/4). A footprint is the mask
    probability where it reaches ``mask_threshold`` and 0 elsewhere; empty ones are
    dropped, and so is one whose mask overlaps a surer one's with IoU >= ``nms_iou``
    (the suppression ``LearnedDetector`` applies, so that validation scores what
    the detector would propose).
    """
    scores = class_logits.sigmoid()
    keep = scores >= score_threshold
    probs = masks_at(mask_logits[keep].float(), (size, size))
    probs = torch.where(probs >= mask_threshold, probs, torch.zeros_like(probs))
    scores = scores[keep]
    nonempty = probs.flatten(1).amax(1) > 0
    probs, scores = probs[nonempty], scores[nonempty]
    kept = _suppress((probs > 0).flatten(1).cpu().numpy(), scores.cpu().numpy(), nms_iou)
    return (probs[kept].cpu().numpy().astype(np.float32),
            scores[kept].cpu().numpy().astype(np.float32))


def _suppress(masks: np.ndarray, scores: np.ndarray, iou_threshold: float) -> np.ndarray:
    """Indices of the masks (N, P) bool kept by greedy mask-IoU suppression, surest first."""
    kept: list[int] = []
    area = masks.sum(1)
    for i in np.argsort(-scores, kind="stable"):
        if kept:
            inter = (masks[kept] & masks[i]).sum(1)
            iou = inter / np.maximum(area[kept] + area[i] - inter, 1)
            if iou.max() >= iou_threshold:
                continue
        kept.append(int(i))
    return np.asarray(kept, np.int64)


def _results(footprints: np.ndarray, sample: TrainSample, background_sigma_px: float
             ) -> Results:
    """An in-memory results record: footprints and their traces on the sample's frames."""
    frames = torch.from_numpy(sample.trace_frames).double()
    traces = solve_traces(torch.from_numpy(footprints).double(), frames, 1e-6,
                          background_sigma_px)
    n_t = frames.shape[0]
    size = footprints.shape[-1]
    zeros = np.zeros(n_t, np.int64)
    return Results(
        height=size, width=size, fps_hz=1.0, footprints=footprints,
        traces=traces.numpy().astype(np.float32), spikes=np.zeros_like(traces.numpy(), np.float32),
        born_frame=np.zeros(len(footprints), np.int64), frame_index=np.arange(n_t),
        shifts=np.zeros((n_t, 2), np.float32), t_received_ns=zeros, t_done_ns=zeros,
    )


@torch.no_grad()
def validate(model: torch.nn.Module, samples: list[TrainSample], device: str | torch.device,
             score_threshold: float = 0.5, background_sigma_px: float = 8.0
             ) -> ValidationScores:
    """Scores of ``model`` on ``samples`` (their trace frames must be full resolution);
    traces are solved as in the trace loss, with a background blur of
    ``background_sigma_px``."""
    was_training = model.training
    model.eval()
    n_true = n_est = n_tp = 0
    corrs: list[np.ndarray] = []
    for sample in samples:
        size = sample.inputs.shape[-1]
        if sample.trace_frames.shape[-1] != size:
            raise EvaluationError("validation samples need full-resolution trace frames "
                                  "(trace_downsample=1)")
        out = model(torch.from_numpy(sample.inputs)[None].to(device))
        fp, _ = footprints_from_outputs(out["logits"][0], out["masks"][0], size,
                                        score_threshold)
        n_true += len(sample.footprints)
        if len(fp) == 0 or len(sample.footprints) == 0:
            n_est += len(fp)
            continue
        truth = truth_from_arrays(sample.footprints, sample.calcium)
        report = evaluate(_results(fp, sample, background_sigma_px), truth)
        n_est, n_tp = n_est + report.main.n_est, n_tp + report.main.n_tp
        corrs.append(report.trace_corr[report.matching.is_tp])
    model.train(was_training)
    corr = np.concatenate(corrs) if corrs else np.zeros(0)
    corr = corr[np.isfinite(corr)]
    return ValidationScores(
        n_true=n_true, n_est=n_est, n_tp=n_tp,
        precision=n_tp / n_est if n_est else float("nan"),
        recall=n_tp / n_true if n_true else float("nan"),
        f1=2 * n_tp / (n_est + n_true) if n_est + n_true else float("nan"),
        median_trace_corr=float(np.median(corr)) if corr.size else float("nan"),
    )
