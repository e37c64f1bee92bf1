"""End-to-end trace loss: extract traces with the predicted masks, compare with the truth.

For the K predicted masks matched to true neurons (``matcher.py``) the traces
are solved on the window's frames Y (T frames of P pixels) by regularised least
squares, after removing the temporal mean m = mean_t Y_t and, with a spatial
high-pass H (subtracting a Gaussian blur of width ``background_sigma_px``,
a few soma radii), the smooth background:

    X = [H s_1 .. H s_K]                   (K, P)   s_k = sigmoid(mask logits)
    C = (X X^T + lam I)^-1 X H (Y - m)^T   (K, T),  lam = ridge * mean(diag(X X^T))

H is linear, so H Y = sum_k H(a_k) c_k + H B: smooth background (neuropil,
out-of-focus 1p light, and their fluctuations) mostly vanishes under H, as in
CNMF-E's local background model (Zhou et al. 2018), while masks keep their
cell-scale structure. C_k is the activity of mask k around its mean. (A
mean-image regressor for global gain changes was tried and dropped: the mean
image lies close to the span of the cells' masks, so it traded off against the
traces; on simulated windows median r with true masks fell from 0.81 to 0.73.)
A plain linear solve is exact, differentiable and cheap (K x K); non-negativity
is deliberately not imposed, as C_k is a deviation from the mean.

Losses, over the pairs whose true calcium varies in the window:

    pearson     = mean_k (1 - r(C_k, C*_k))
    contrastive = InfoNCE on R_jk = r(C_j, C*_k) / tau (van den Oord et al. 2018),
                  both directions: each predicted trace must correlate more with
                  its own true trace than with any other (a lower bound on their
                  mutual information), which also pushes neighbours' traces apart.

Gradients flow from both through the solve and the sigmoid into the mask logits.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from rtcal.errors import RtcalError


class TraceLossError(RtcalError, ValueError):
    """Trace-loss settings or inputs are inconsistent; the message names the problem."""


@dataclass(frozen=True)
class TraceLossConfig:
    """ridge: Tikhonov weight relative to the mean Gram diagonal;
    background_sigma_px: width of the background blur, full-resolution pixels;
    min_true_std: true calcium (dF/F) with a smaller std over the frames is left
    out (its correlation is undefined); temperature: InfoNCE temperature tau."""

    ridge: float = 1e-3
    background_sigma_px: float = 8.0
    min_true_std: float = 0.02
    temperature: float = 0.1

    def __post_init__(self) -> None:
        for name in ("ridge", "background_sigma_px", "min_true_std", "temperature"):
            value = getattr(self, name)
            if not (isinstance(value, (int, float)) and value > 0 and value < float("inf")):
                raise TraceLossError(
                    f"TraceLossConfig.{name}={value!r}: must be a finite number > 0")


@dataclass(frozen=True)
class TraceTerms:
    """pearson, contrastive: scalar tensors (0 when nothing is valid);
    n_valid: pairs that entered; corr: (n_valid,) detached Pearson r of those pairs."""

    pearson: torch.Tensor
    contrastive: torch.Tensor
    n_valid: int
    corr: torch.Tensor


def masks_at(mask_logits: torch.Tensor, shape: tuple[int, int]) -> torch.Tensor:
    """Mask probabilities (K, h, w) from logits (K, h4, w4): bilinear upsampling of the
    logits, then sigmoid (as MaskFormer does at inference)."""
    if mask_logits.shape[0] == 0:
        return mask_logits.new_zeros((0, *shape))
    up = F.interpolate(mask_logits[None], size=shape, mode="bilinear", align_corners=False)
    return up[0].sigmoid()


def gaussian_highpass(images: torch.Tensor, sigma_px: float) -> torch.Tensor:
    """images - Gaussian blur of images (..., h, w), separable, reflecting edges."""
    radius = min(int(3 * sigma_px + 0.5), images.shape[-1] - 1, images.shape[-2] - 1)
    x = torch.arange(-radius, radius + 1, dtype=images.dtype, device=images.device)
    kernel = torch.exp(-0.5 * (x / sigma_px) ** 2)
    kernel = kernel / kernel.sum()
    flat = images.reshape(-1, 1, *images.shape[-2:])
    blur = F.conv2d(F.pad(flat, (radius, radius, 0, 0), mode="reflect"), kernel.view(1, 1, 1, -1))
    blur = F.conv2d(F.pad(blur, (0, 0, radius, radius), mode="reflect"), kernel.view(1, 1, -1, 1))
    return images - blur.reshape(images.shape)


def solve_traces(masks: torch.Tensor, frames: torch.Tensor, ridge: float, sigma_px: float
                 ) -> torch.Tensor:
    """Traces C (K, T) of masks (K, h, w) in frames (T, h, w): mean removed, background
    high-passed away at width ``sigma_px`` frame pixels (see the module docstring)."""
    design = gaussian_highpass(masks, sigma_px).flatten(1)  # (K, P)
    target = gaussian_highpass(frames - frames.mean(0, keepdim=True), sigma_px).flatten(1)
    gram = design @ design.T
    lam = ridge * gram.diagonal().mean().clamp(min=1e-12)
    gram = gram + lam * torch.eye(gram.shape[0], dtype=gram.dtype, device=gram.device)
    return torch.linalg.solve(gram, design @ target.T)


def _standardise(x: torch.Tensor, eps: float = 1e-8) -> torch.Tensor:
    """Rows with zero mean and unit norm (rows of (K, T))."""
    x = x - x.mean(1, keepdim=True)
    return x / (x.norm(dim=1, keepdim=True) + eps)


def pearson_rows(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Pearson r of row k of a with row k of b: (K,) from (K, T), (K, T)."""
    return (_standardise(a) * _standardise(b)).sum(1)


def correlation_matrix(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """R[j, k] = Pearson r of a_j and b_k: (K, K') from (K, T), (K', T)."""
    return _standardise(a) @ _standardise(b).T


def info_nce(corr: torch.Tensor, temperature: float) -> torch.Tensor:
    """Symmetric InfoNCE of a square correlation matrix whose diagonal holds the
    true pairs: mean of the row-wise and column-wise cross-entropies."""
    if corr.shape[0] < 2:
        return corr.sum() * 0
    logits = corr / temperature
    target = torch.arange(corr.shape[0], device=corr.device)
    return 0.5 * (F.cross_entropy(logits, target) + F.cross_entropy(logits.T, target))


def trace_terms(
    mask_logits: torch.Tensor, frames: torch.Tensor, calcium: torch.Tensor,
    cfg: TraceLossConfig, frame_px: int = 1,
) -> TraceTerms:
    """Trace losses of one window.

    mask_logits (K, h4, w4): the matched predictions, in the order of their true
    neurons; frames (T, h, w) float, the window's frames (any positive scale),
    each frame pixel ``frame_px`` full-resolution pixels wide; calcium (K, T) the
    true calcium of those neurons over the same frames.
    """
    if calcium.shape[0] != mask_logits.shape[0] or calcium.shape[1] != frames.shape[0]:
        raise TraceLossError(
            f"calcium is {tuple(calcium.shape)} but there are {mask_logits.shape[0]} masks "
            f"and {frames.shape[0]} frames"
        )
    masks = masks_at(mask_logits, tuple(frames.shape[1:])).to(frames.dtype)
    traces = solve_traces(masks, frames, cfg.ridge, cfg.background_sigma_px / frame_px)
    valid = calcium.std(1) >= cfg.min_true_std
    n_valid = int(valid.sum())
    if n_valid == 0:
        zero = mask_logits.sum() * 0
        return TraceTerms(zero, zero, 0, zero.detach().new_zeros(0))
    pred, true = traces[valid], calcium[valid].to(traces.dtype)
    corr = correlation_matrix(pred, true)
    r = corr.diagonal()
    return TraceTerms(
        pearson=(1 - r).mean(),
        contrastive=info_nce(corr, cfg.temperature),
        n_valid=n_valid,
        corr=r.detach(),
    )
