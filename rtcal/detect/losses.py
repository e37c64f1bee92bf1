"""Training losses of the detector (DETR's SetCriterion, Carion et al. 2020).

``SetCriterion`` is handed the matcher and, for the final decoder layer and each
auxiliary one, matches predictions to true neurons and adds

    class   sigmoid focal loss on every query's "neuron" logit (target 1 if matched)
    focal   mean-over-pixels sigmoid focal loss of each matched mask at 1/4 resolution
    dice    1 - soft Dice of each matched mask
            (each summed over the batch and divided by the number of true neurons)

plus, once per batch, the centre-heatmap loss (the penalty-reduced pixel focal
loss of CenterNet, Zhou et al. 2019) and, on the final layer only, the trace
terms of ``trace_loss.py`` (1 - Pearson and InfoNCE of the traces the matched
masks yield). ``mode`` picks which trace terms enter ("mask" for none), so the
ablation changes one setting.
"""

from __future__ import annotations

from dataclasses import dataclass, fields

import numpy as np
import torch
import torch.nn.functional as F

from rtcal.detect.matcher import (
    HungarianMatcher,
    MatcherError,
    focal_terms,
    pairwise_dice,
)
from rtcal.detect.trace_loss import TraceLossConfig, trace_terms

LOSS_MODES = ("mask", "mask+trace", "mask+trace+contrastive")


@dataclass(frozen=True)
class LossWeights:
    """Weight of each term in the total; alpha, gamma: focal-loss parameters of the class
    loss, mask_alpha, mask_gamma: of the mask loss (alpha < 0: no class weighting)."""

    w_class: float = 2.0
    w_focal: float = 20.0
    w_dice: float = 2.0
    w_centre: float = 1.0
    w_trace: float = 1.0
    w_contrastive: float = 0.5
    alpha: float = 0.25
    gamma: float = 2.0
    mask_alpha: float = -1.0  # unweighted: alpha = 0.25 drove the small masks to background
    mask_gamma: float = 2.0

    def __post_init__(self) -> None:
        for f in fields(self):
            value = getattr(self, f.name)
            if f.name not in ("alpha", "mask_alpha") and not (np.isfinite(value) and value >= 0):
                raise MatcherError(f"LossWeights.{f.name}={value!r}: must be a finite number >= 0")


@dataclass(frozen=True)
class WindowTargets:
    """Truth of one training window (tensors on the training device).

    masks (K, h4, w4) float in [0, 1]: true masks at 1/4 resolution;
    frames (T, h, w) float: frames for the trace loss (any resolution);
    calcium (K, T) float: true calcium (dF/F) of the K neurons over those frames;
    frame_px: full-resolution pixels per frame pixel (the frames' downsampling).
    """

    masks: torch.Tensor
    frames: torch.Tensor
    calcium: torch.Tensor
    frame_px: int = 1


@dataclass(frozen=True)
class LossTerms:
    """Scalar tensors: total (what is minimised) and its weighted parts, for logging.

    aux: class + focal + dice of the auxiliary layers, already weighted;
    trace_corr: detached Pearson r of every valid matched pair (empty if none).
    """

    total: torch.Tensor
    class_: torch.Tensor
    focal: torch.Tensor
    dice: torch.Tensor
    centre: torch.Tensor
    trace: torch.Tensor
    contrastive: torch.Tensor
    aux: torch.Tensor
    trace_corr: torch.Tensor

    def as_floats(self) -> dict[str, float]:
        """Every scalar term as a float, for the progress bar and the CSV."""
        return {f.name.rstrip("_"): float(getattr(self, f.name).detach()) for f in fields(self)
                if f.name != "trace_corr"}


def sigmoid_focal(logits: torch.Tensor, targets: torch.Tensor, alpha: float, gamma: float
                  ) -> torch.Tensor:
    """Element-wise focal loss for targets in [0, 1] (same shape as logits)."""
    pos, neg = focal_terms(logits, alpha, gamma)
    return targets * pos + (1 - targets) * neg


def centre_focal(logits: torch.Tensor, target: torch.Tensor, alpha: float = 2.0,
                 beta: float = 4.0) -> torch.Tensor:
    """CenterNet's penalty-reduced focal loss, summed and divided by the number of peaks.

    logits, target (B, 1, h, w); target is a max of Gaussians, exactly 1 at each
    centre pixel. -(1-p)^a log p at peaks, -(1-Y)^b p^a log(1-p) elsewhere.
    """
    prob = logits.sigmoid()
    peak = target >= 1.0
    pos = (1 - prob) ** alpha * F.softplus(-logits)
    neg = (1 - target) ** beta * prob**alpha * F.softplus(logits)
    loss = torch.where(peak, pos, neg).sum()
    return loss / peak.sum().clamp(min=1)


class SetCriterion:
    """Matches, then computes the losses of the module docstring."""

    def __init__(self, matcher: HungarianMatcher, weights: LossWeights, mode: str = "mask",
                 trace: TraceLossConfig | None = None) -> None:
        if mode not in LOSS_MODES:
            raise MatcherError(f"loss mode {mode!r}: must be one of {LOSS_MODES}")
        self.matcher, self.weights, self.mode = matcher, weights, mode
        self.trace_cfg = trace or TraceLossConfig()

    def set_losses(self, class_logits: torch.Tensor, mask_logits: torch.Tensor,
                   targets: list[WindowTargets], n_true: float
                   ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, list]:
        """Weighted class, focal and dice losses of one decoder layer, and its matching.

        class_logits (B, Q); mask_logits (B, Q, h4, w4).
        """
        w = self.weights
        pairs = self.matcher(class_logits, mask_logits, [t.masks for t in targets])
        class_target = torch.zeros_like(class_logits)
        focal = dice = class_logits.sum() * 0
        for b, (pred, true) in enumerate(pairs):
            if len(pred) == 0:
                continue
            class_target[b, pred] = 1.0
            x = mask_logits[b, pred].flatten(1)
            t = targets[b].masks[true].flatten(1).to(x.dtype)
            focal = focal + sigmoid_focal(x, t, w.mask_alpha, w.mask_gamma).mean(1).sum()
            dice = dice + pairwise_dice(x, t).diagonal().sum()
        cls = sigmoid_focal(class_logits, class_target, w.alpha, w.gamma).sum()
        return (w.w_class * cls / n_true, w.w_focal * focal / n_true,
                w.w_dice * dice / n_true, pairs)

    def trace_losses(self, mask_logits: torch.Tensor, targets: list[WindowTargets],
                     pairs: list) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Pearson and InfoNCE terms over the batch (unweighted) and all pairs' r."""
        pearson = contrast = mask_logits.sum() * 0
        n_valid, corrs = 0, []
        for b, (pred, true) in enumerate(pairs):
            if len(pred) == 0:
                continue
            order = np.argsort(true)  # matched masks in the order of their true neurons
            tgt = targets[b]
            terms = trace_terms(mask_logits[b, pred[order]], tgt.frames,
                                tgt.calcium[true[order]], self.trace_cfg, tgt.frame_px)
            pearson = pearson + terms.pearson * terms.n_valid
            contrast = contrast + terms.contrastive * terms.n_valid
            n_valid += terms.n_valid
            corrs.append(terms.corr)
        scale = max(n_valid, 1)
        corr = torch.cat(corrs) if corrs else mask_logits.new_zeros(0)
        return pearson / scale, contrast / scale, corr

    def __call__(self, outputs: dict, centre_target: torch.Tensor,
                 targets: list[WindowTargets], trace_scale: float = 1.0) -> LossTerms:
        """Losses of a batch.

        outputs: the network's dict ("logits" (B, Q), "masks" (B, Q, h4, w4),
        "aux" list of {"logits", "masks"}, "centre" (B, 1, h4, w4));
        centre_target (B, 1, h4, w4); trace_scale multiplies the trace weights
        (a warm-up ramp from the training loop).
        """
        w = self.weights
        n_true = float(max(sum(int(t.masks.shape[0]) for t in targets), 1))
        cls, focal, dice, pairs = self.set_losses(outputs["logits"], outputs["masks"],
                                                  targets, n_true)
        aux = cls * 0
        for layer in outputs.get("aux", []):
            a_cls, a_focal, a_dice, _ = self.set_losses(layer["logits"], layer["masks"],
                                                        targets, n_true)
            aux = aux + a_cls + a_focal + a_dice
        centre = w.w_centre * centre_focal(outputs["centre"], centre_target)
        trace = contrast = cls * 0
        corr = cls.new_zeros(0)
        if self.mode != "mask":
            pearson, info, corr = self.trace_losses(outputs["masks"], targets, pairs)
            trace = trace_scale * w.w_trace * pearson
            if self.mode == "mask+trace+contrastive":
                contrast = trace_scale * w.w_contrastive * info
        total = cls + focal + dice + aux + centre + trace + contrast
        return LossTerms(total, cls, focal, dice, centre, trace, contrast, aux, corr)
