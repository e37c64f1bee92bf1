"""Hungarian matching of predicted instances to true neurons (DETR, Carion et al. 2020).

The matcher only builds a cost matrix and solves the assignment; the losses
(``losses.SetCriterion``) are handed the matcher and reuse it for every decoder
layer. For batch element b with Q predictions and K true neurons,

    cost[q, k] = w_class  * class_cost(l_q)
               + w_focal  * mean_p focal(x_qp, t_kp)
               + w_dice   * (1 - dice(sigmoid(x_q), t_k))

l_q the "neuron" logit, x_q the mask logits and t_k the target mask, both at
1/4 resolution (P = H/4 * W/4 pixels). The class cost is the focal-loss form of
Deformable DETR (Zhu et al. 2021): the focal cost of calling q a neuron minus
the focal cost of calling it background. ``scipy.optimize.linear_sum_assignment``
then gives min(Q, K) pairs of minimal total cost.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from scipy.optimize import linear_sum_assignment

from rtcal.errors import RtcalError


class MatcherError(RtcalError, ValueError):
    """Matcher weights or inputs are inconsistent; the message names the problem."""


def focal_terms(
    logits: torch.Tensor, alpha: float, gamma: float
) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-element focal loss (Lin et al. 2017) for target 1 and for target 0.

    pos = -alpha (1 - p)^gamma log p,  neg = -(1 - alpha) p^gamma log(1 - p),
    p = sigmoid(logits); both have the shape of ``logits``. alpha < 0 means no
    class weighting (alpha = 0.5 without the factor 2, i.e. weights 1 and 1).
    """
    prob = logits.sigmoid()
    w_pos, w_neg = (1.0, 1.0) if alpha < 0 else (alpha, 1.0 - alpha)
    pos = w_pos * (1 - prob) ** gamma * torch.nn.functional.softplus(-logits)
    neg = w_neg * prob**gamma * torch.nn.functional.softplus(logits)
    return pos, neg


def pairwise_mask_focal(
    logits: torch.Tensor, targets: torch.Tensor, alpha: float, gamma: float
) -> torch.Tensor:
    """Mean focal loss of every prediction against every target: (Q, K).

    logits (Q, P) mask logits; targets (K, P) in [0, 1] (soft targets allowed:
    the loss is linear in t, focal(x, t) = t pos(x) + (1 - t) neg(x)).
    """
    pos, neg = focal_terms(logits, alpha, gamma)
    return (pos @ targets.T + neg @ (1 - targets).T) / logits.shape[1]


def pairwise_dice(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """1 - soft Dice of every prediction against every target (Milletari et al. 2016): (Q, K).

    dice = (2 sum_p s_p t_p + 1) / (sum_p s_p + sum_p t_p + 1), s = sigmoid(logits).
    """
    prob = logits.sigmoid()
    inter = prob @ targets.T
    total = prob.sum(1)[:, None] + targets.sum(1)[None, :]
    return 1 - (2 * inter + 1) / (total + 1)


def class_cost(logits: torch.Tensor, alpha: float, gamma: float) -> torch.Tensor:
    """Cost of calling each prediction a neuron rather than background: (Q,)."""
    pos, neg = focal_terms(logits, alpha, gamma)
    return pos - neg


@dataclass(frozen=True)
class MatchWeights:
    """Weights of the three costs, and the focal-loss parameters of the class cost
    (alpha, gamma) and of the mask cost (mask_alpha, mask_gamma)."""

    w_class: float = 2.0
    w_focal: float = 20.0
    w_dice: float = 2.0
    alpha: float = 0.25
    gamma: float = 2.0
    mask_alpha: float = -1.0  # unweighted: alpha = 0.25 drove the small masks to background
    mask_gamma: float = 2.0

    def __post_init__(self) -> None:
        for name in ("w_class", "w_focal", "w_dice", "gamma", "mask_gamma"):
            value = getattr(self, name)
            if not (np.isfinite(value) and value >= 0):
                raise MatcherError(f"MatchWeights.{name}={value!r}: must be a finite number >= 0")
        if self.w_class == self.w_focal == self.w_dice == 0:
            raise MatcherError("MatchWeights: all cost weights are 0; nothing to match on")
        for name in ("alpha", "mask_alpha"):
            value = getattr(self, name)
            if not (value < 0 or 0 < value < 1):
                raise MatcherError(f"MatchWeights.{name}={value!r}: must lie in (0, 1) or be < 0")


class HungarianMatcher:
    """Pairs predictions with true neurons by minimal total cost, per batch element."""

    def __init__(self, weights: MatchWeights) -> None:
        self.weights = weights

    def cost_matrix(
        self, class_logits: torch.Tensor, mask_logits: torch.Tensor, targets: torch.Tensor
    ) -> torch.Tensor:
        """Cost (Q, K) for one batch element.

        class_logits (Q,); mask_logits (Q, h, w); targets (K, h, w) in [0, 1].
        """
        if mask_logits.shape[1:] != targets.shape[1:]:
            raise MatcherError(
                f"mask logits are {tuple(mask_logits.shape[1:])} but targets are "
                f"{tuple(targets.shape[1:])}: both must be at the same (1/4) resolution"
            )
        w = self.weights
        x = mask_logits.flatten(1).float()
        t = targets.flatten(1).float()
        cost = w.w_class * class_cost(class_logits.float(), w.alpha, w.gamma)[:, None]
        cost = cost + w.w_focal * pairwise_mask_focal(x, t, w.mask_alpha, w.mask_gamma)
        return cost + w.w_dice * pairwise_dice(x, t)

    @torch.no_grad()
    def __call__(
        self, class_logits: torch.Tensor, mask_logits: torch.Tensor, targets: list[torch.Tensor]
    ) -> list[tuple[np.ndarray, np.ndarray]]:
        """Index pairs per batch element.

        class_logits (B, Q); mask_logits (B, Q, h, w); targets: B tensors (K_b, h, w).
        Returns B pairs (pred_index, true_index), int64 arrays of length
        min(Q, K_b), sorted by pred_index.
        """
        if len(targets) != class_logits.shape[0]:
            raise MatcherError(
                f"{len(targets)} target sets for a batch of {class_logits.shape[0]}"
            )
        pairs = []
        for b, target in enumerate(targets):
            if target.shape[0] == 0:
                empty = np.zeros(0, np.int64)
                pairs.append((empty, empty))
                continue
            cost = self.cost_matrix(class_logits[b], mask_logits[b], target)
            rows, cols = linear_sum_assignment(cost.cpu().double().numpy())
            pairs.append((rows.astype(np.int64), cols.astype(np.int64)))
        return pairs


def build_matcher(weights: MatchWeights | None = None) -> HungarianMatcher:
    return HungarianMatcher(weights or MatchWeights())
