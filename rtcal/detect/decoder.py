"""Set prediction: queries, a DETR-style decoder with masked attention, mask heads.

Queries (``QueryInit``). A CenterNet head (Zhou et al. 2019, "Objects as
Points") on the 1/4 features predicts a centre heatmap; its local maxima (3x3
max-pool non-maximum suppression) ranked by logit give the top-Qh peaks. Each
peak becomes a query: content = a linear map of the 1/4 feature (with position
code) under the peak, position = the sine code of the peak. Ql learned queries
(DETR) follow, with points (-1, -1). Queries come out in row-major order of
their peaks, so the output order does not hinge on near-ties in the heatmap.

Decoder (``MaskDecoder``). Each layer is DETR's (Carion et al. 2020): self-
attention among queries (query = key = content + position), cross-attention to
one level of the multi-scale memory (query + position against memory + position
and level embedding; levels 1/32, 1/16, 1/8 in turn, as Mask2Former), FFN;
post-norm. The cross-attention is masked (Mask2Former, Cheng et al. 2022): a
query sees only the memory cells where its mask from the previous prediction is
on (logit > 0); the 1/4 mask is max-pooled to each level, so a soma smaller than
a cell is not lost; a query whose mask is empty everywhere sees every cell.

Heads (``PredictionHead``, shared by all layers, MaskFormer, Cheng et al. 2021):
LayerNorm, then a "neuron" logit and a mask embedding (3-layer MLP); instance
mask logits = mask embedding . per-pixel embedding at 1/4. A prediction is made
from the initial queries and after every layer (n_layers + 1 in all).

Two priors from the query's peak make a heatmap query's first prediction
already a soma (a fresh model otherwise needs thousands of CPU steps before any
mask reaches IoU 0.5; the default recipe stalled at F1 0.06 after 2000 steps):

- shape: the mask logit gets k (2 exp(-ln 2 |p - mu|^2 / rho^2) - 1): +k at
  mu, 0 at radius rho, -k far away (bounded, so fp16 engines cannot overflow),
  a soft disc of radius rho around mu = peak + offset, with (offset, rho, k)
  regressed from the query (offset within +-2 cells; rho starts at 1.5 cells =
  6 px, a typical soma).
  The dot-product term then only has to learn departures from a disc: relative
  position made explicit, as CondInst's relative coordinates (Tian et al. 2020).
- class: the "neuron" logit is the (detached) heatmap logit at the peak plus a
  residual from the query, zero at initialisation, so detection starts as
  CenterNet's and the decoder learns to veto duplicates and misses. Learned
  queries have neither prior; their class starts at the focal-loss prior.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from rtcal.detect.fpn import PixelFeatures
from rtcal.detect.position_encoding import sine_embedding
from rtcal.detect.swin import MASK_VALUE

CENTRE_PRIOR = 0.1  # initial heatmap probability (CenterNet's bias -2.19)
CLASS_PRIOR = 0.01  # initial "neuron" probability of learned queries (RetinaNet's prior)
RADIUS_CELLS = 1.5  # initial disc radius of the shape prior, 1/4 cells (6 px)
SHARPNESS = 4.0  # initial logit of the shape prior at the disc's centre
MAX_OFFSET_CELLS = 2.0  # the disc's centre moves at most this far from the peak


@dataclass(frozen=True)
class Queries:
    """content, pos (B, Q, D) float; points (B, Q, 2) float: (row, col) of each
    heatmap query's peak at 1/4 resolution, (-1, -1) for learned queries;
    prior_logit (B, Q): the class prior, the detached heatmap logit at the peak
    for heatmap queries, the focal-loss prior's logit for learned ones."""

    content: torch.Tensor
    pos: torch.Tensor
    points: torch.Tensor
    prior_logit: torch.Tensor


@dataclass(frozen=True)
class Prediction:
    """logits (B, Q): "neuron" logit per query; masks (B, Q, H/4, W/4): mask logits."""

    logits: torch.Tensor
    masks: torch.Tensor


class CentreHead(nn.Module):
    """(B, D, h, w) features -> (B, 1, h, w) centre-heatmap logits."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(dim, dim // 2, 3, padding=1)
        self.out = nn.Conv2d(dim // 2, 1, 1)
        nn.init.constant_(self.out.bias, -math.log((1 - CENTRE_PRIOR) / CENTRE_PRIOR))

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        # float32 under fp16 autocast: the heatmap's top-k picks the queries, and
        # fp16 rounding (~1e-3) turns near-ties into different picks (measured on
        # the H200: the first layer that departs from float32 is the query init)
        with torch.autocast(features.device.type, enabled=False):
            return self.out(F.relu(self.conv(features.float())))


def peak_indices(centre_logits: torch.Tensor, k: int) -> torch.Tensor:
    """Flat indices (row * w + col) of the k highest local maxima of the heatmap,
    ascending: (B, 1, h, w) -> (B, k) int64. If there are fewer than k maxima the
    highest other pixels fill up. No gradient flows through the choice."""
    logits = centre_logits.detach()
    is_peak = logits == F.max_pool2d(logits, 3, stride=1, padding=1)
    score = torch.where(is_peak, logits, logits + MASK_VALUE)  # peaks rank first
    top = score.flatten(1).topk(k, dim=1).indices  # (B, k)
    return top.sort(dim=1).values


class QueryInit(nn.Module):
    """n_heatmap queries at heatmap peaks, then n_learned learned queries."""

    def __init__(self, dim: int, n_heatmap: int, n_learned: int) -> None:
        super().__init__()
        self.n_heatmap = n_heatmap
        self.content_proj = nn.Linear(dim, dim)
        self.learned_content = nn.Embedding(n_learned, dim)
        self.learned_pos = nn.Embedding(n_learned, dim)

    def forward(self, centre_logits: torch.Tensor, pixel: torch.Tensor) -> Queries:
        """centre_logits (B, 1, h, w); pixel (B, D, h, w) features + position code."""
        batch, dim, _, width = pixel.shape
        idx = peak_indices(centre_logits, self.n_heatmap)  # (B, Qh)
        rows = torch.div(idx, width, rounding_mode="floor")
        points = torch.stack((rows, idx - rows * width), dim=-1).float()  # (B, Qh, 2)
        under = pixel.flatten(2).gather(2, idx[:, None].expand(-1, dim, -1))  # (B, D, Qh)
        content = self.content_proj(under.transpose(1, 2))  # (B, Qh, D)
        pos = sine_embedding(points, dim)  # (B, Qh, D)
        n_learned = self.learned_content.num_embeddings
        learned = self.learned_content.weight[None].expand(batch, -1, -1)  # (B, Ql, D)
        learned_pos = self.learned_pos.weight[None].expand(batch, -1, -1)
        no_point = torch.full((batch, n_learned, 2), -1.0, device=pixel.device)
        peak_logit = centre_logits.detach().flatten(1).gather(1, idx)  # (B, Qh)
        learned_logit = torch.full((batch, n_learned), -math.log((1 - CLASS_PRIOR) / CLASS_PRIOR),
                                   device=pixel.device, dtype=peak_logit.dtype)
        return Queries(content=torch.cat((content, learned), dim=1),
                       pos=torch.cat((pos, learned_pos), dim=1),
                       points=torch.cat((points, no_point), dim=1),
                       prior_logit=torch.cat((peak_logit, learned_logit), dim=1))


def attention_mask(mask_logits: torch.Tensor, ratio: int, n_heads: int) -> torch.Tensor:
    """Mask2Former's masked attention at one memory level, as an additive mask.

    mask_logits (B, Q, h, w) at 1/4 -> (B * n_heads, Q, (h / ratio) * (w / ratio)):
    0 where the max-pooled mask logit is >= 0, ``MASK_VALUE`` elsewhere; a query
    blocked everywhere is blocked nowhere (no empty softmax, no NaN).
    """
    pooled = mask_logits.detach()
    if ratio > 1:
        pooled = F.max_pool2d(pooled, ratio)
    pooled = pooled.flatten(2)  # (B, Q, L)
    blocked = (pooled < 0) & (pooled.amax(dim=-1, keepdim=True) >= 0)
    bias = blocked.float() * MASK_VALUE  # (B, Q, L)
    return bias[:, None].expand(-1, n_heads, -1, -1).flatten(0, 1)  # (B * nH, Q, L)


class DecoderLayer(nn.Module):
    """Self-attention, masked cross-attention, FFN; each residual + LayerNorm (post-norm)."""

    def __init__(self, dim: int, n_heads: int, ffn_dim: int, dropout: float = 0.0) -> None:
        super().__init__()
        self.self_attn = nn.MultiheadAttention(dim, n_heads, dropout=dropout, batch_first=True)
        self.cross_attn = nn.MultiheadAttention(dim, n_heads, dropout=dropout, batch_first=True)
        self.ffn = nn.Sequential(nn.Linear(dim, ffn_dim), nn.ReLU(), nn.Dropout(dropout),
                                 nn.Linear(ffn_dim, dim))
        self.norms = nn.ModuleList(nn.LayerNorm(dim) for _ in range(3))
        self.dropout = nn.Dropout(dropout)

    def forward(self, tgt: torch.Tensor, query_pos: torch.Tensor, memory: torch.Tensor,
                memory_pos: torch.Tensor, attn_mask: torch.Tensor | None) -> torch.Tensor:
        """tgt, query_pos (B, Q, D); memory, memory_pos (B, L, D);
        attn_mask (B * nH, Q, L) additive or None -> (B, Q, D)."""
        q = tgt + query_pos
        tgt = self.norms[0](tgt + self.dropout(self.self_attn(q, q, tgt, need_weights=False)[0]))
        cross = self.cross_attn(tgt + query_pos, memory + memory_pos, memory,
                                attn_mask=attn_mask, need_weights=False)[0]
        tgt = self.norms[1](tgt + self.dropout(cross))
        return self.norms[2](tgt + self.dropout(self.ffn(tgt)))


class PredictionHead(nn.Module):
    """Queries (B, Q, D) + per-pixel embedding (B, M, h, w) -> ``Prediction``, with
    the shape and class priors of the module docstring."""

    def __init__(self, dim: int, mask_dim: int) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(dim)
        self.class_embed = nn.Linear(dim, 1)
        self.mask_embed = nn.Sequential(nn.Linear(dim, dim), nn.ReLU(), nn.Linear(dim, dim),
                                        nn.ReLU(), nn.Linear(dim, mask_dim))
        self.shape_embed = nn.Linear(dim, 4)  # offset (2), log radius, log sharpness
        for layer in (self.class_embed, self.shape_embed):
            nn.init.zeros_(layer.weight)  # the priors alone at initialisation
            nn.init.zeros_(layer.bias)

    def shape_prior(self, q: torch.Tensor, points: torch.Tensor, height: int, width: int
                    ) -> torch.Tensor:
        """(B, Q, h, w) logits k (2 exp(-ln 2 |p - mu|^2 / rho^2) - 1); 0 for queries
        without a point."""
        geom = self.shape_embed(q)  # (B, Q, 4)
        centre = points + MAX_OFFSET_CELLS * torch.tanh(geom[..., :2])
        radius = RADIUS_CELLS * torch.exp(geom[..., 2].clamp(-2.0, 2.0))
        sharp = SHARPNESS * torch.exp(geom[..., 3].clamp(-2.0, 2.0))
        sharp = sharp * (points[..., 0] >= 0).to(q.dtype)  # learned queries: no prior
        rows = torch.arange(height, device=q.device, dtype=q.dtype)
        cols = torch.arange(width, device=q.device, dtype=q.dtype)
        d2 = ((rows[None, None, :, None] - centre[..., 0, None, None]) ** 2
              + (cols[None, None, None, :] - centre[..., 1, None, None]) ** 2)
        bump = torch.exp(-math.log(2.0) * d2 / (radius[..., None, None] ** 2))
        return sharp[..., None, None] * (2 * bump - 1)

    def forward(self, queries: torch.Tensor, mask_features: torch.Tensor,
                points: torch.Tensor, prior_logit: torch.Tensor) -> Prediction:
        # float32 even under fp16 autocast: the mask logits' signs gate the next
        # layer's masked attention, and the dot product sums mask_dim terms
        with torch.autocast(queries.device.type, enabled=False):
            q = self.norm(queries.float())
            mask_features = mask_features.float()
            batch, _, height, width = mask_features.shape
            embed = self.mask_embed(q)  # (B, Q, M)
            masks = (embed @ mask_features.flatten(2)).view(batch, -1, height, width)
            masks = masks + self.shape_prior(q, points.float(), height, width)
            logits = prior_logit.float() + self.class_embed(q)[..., 0]
        return Prediction(logits=logits, masks=masks)


class MaskDecoder(nn.Module):
    """n_layers decoder layers over n_levels memory levels in turn, coarse first."""

    def __init__(self, dim: int, n_heads: int, ffn_dim: int, n_layers: int, n_levels: int,
                 mask_dim: int, dropout: float = 0.0) -> None:
        super().__init__()
        self.n_heads = n_heads
        self.layers = nn.ModuleList(DecoderLayer(dim, n_heads, ffn_dim, dropout)
                                    for _ in range(n_layers))
        for p in self.layers.parameters():
            if p.dim() > 1:
                nn.init.xavier_uniform_(p)  # DETR's transformer initialisation
        self.level_embed = nn.Embedding(n_levels, dim)
        self.head = PredictionHead(dim, mask_dim)

    def forward(self, queries: Queries, pix: PixelFeatures) -> list[Prediction]:
        """The prediction of the initial queries, then one after each layer."""
        memory = [m.flatten(2).transpose(1, 2) + self.level_embed.weight[i]
                  for i, m in enumerate(pix.memory)]  # (B, L_i, D) each
        memory_pos = [p.flatten(2).transpose(1, 2) for p in pix.memory_pos]
        tgt = queries.content
        predictions = [self.head(tgt, pix.mask_features, queries.points, queries.prior_logit)]
        for i, layer in enumerate(self.layers):
            level = i % len(memory)
            mask = attention_mask(predictions[-1].masks, pix.memory_ratio[level], self.n_heads)
            tgt = layer(tgt, queries.pos, memory[level], memory_pos[level], mask)
            predictions.append(self.head(tgt, pix.mask_features, queries.points,
                                         queries.prior_logit))
        return predictions
