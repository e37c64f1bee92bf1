"""2D sine position embedding (DETR, Carion et al. 2020; Vaswani et al. 2017).

A point (y, x) maps to ``dim`` numbers: the first half encode y, the second x,
each as interleaved sin/cos pairs at geometrically spaced frequencies,

    e_y[2i] = sin(y / T^(2i/d)),  e_y[2i+1] = cos(y / T^(2i/d)),  d = dim / 2,

T the temperature. Unlike DETR's ``normalize=True``, coordinates are not
rescaled to the image: they are in pixels of the 1/4-resolution map at every
feature level (a cell of a 1/s map sits at its centre, ((i + 0.5) s/4 - 0.5)).
So a query at a heatmap peak and the memory cell under it get the same code, and
e(p) . e(q) = sum_i cos(w_i (p - q)) depends only on the offset in pixels, the
same at 128 x 128 as at 2048 x 2048.
"""

from __future__ import annotations

import torch
from torch import nn


def sine_embedding(points: torch.Tensor, dim: int, temperature: float = 10000.0) -> torch.Tensor:
    """Sine embedding of (row, col) points: (..., 2) float -> (..., dim) float.

    ``dim`` must be a multiple of 4 (sin/cos pairs for each of the two axes).
    """
    half = dim // 2
    i = torch.arange(half, dtype=torch.float32, device=points.device)
    inv_freq = temperature ** (-2.0 * torch.div(i, 2, rounding_mode="floor") / half)  # (half,)
    angles = points.float()[..., None] * inv_freq  # (..., 2, half)
    sin, cos = angles[..., 0::2].sin(), angles[..., 1::2].cos()  # (..., 2, half/2) each
    codes = torch.stack((sin, cos), dim=-1).flatten(-2)  # (..., 2, half) interleaved sin, cos
    return codes.flatten(-2)  # (..., dim): y code then x code


def grid_points(height: int, width: int, stride_ratio: int, device: torch.device) -> torch.Tensor:
    """Centres of the cells of a (height, width) map that is ``stride_ratio`` times
    coarser than the 1/4 map, in 1/4-map pixels: (height, width, 2) float (row, col)."""
    rows = (torch.arange(height, dtype=torch.float32, device=device) + 0.5) * stride_ratio - 0.5
    cols = (torch.arange(width, dtype=torch.float32, device=device) + 0.5) * stride_ratio - 0.5
    return torch.stack(torch.meshgrid(rows, cols, indexing="ij"), dim=-1)


class PositionEmbeddingSine(nn.Module):
    """Position embedding of a feature map: (B, C, h, w) -> (B, dim, h, w).

    No parameters; the code depends only on the map's size and its stride
    relative to the 1/4 map, so at a fixed input size it is a constant.
    """

    def __init__(self, dim: int, temperature: float = 10000.0) -> None:
        super().__init__()
        if dim % 4:
            raise ValueError(f"sine embedding dim must be a multiple of 4, got {dim}")
        self.dim = dim
        self.temperature = temperature

    def forward(self, feature: torch.Tensor, stride_ratio: int) -> torch.Tensor:
        batch, _, height, width = feature.shape
        points = grid_points(height, width, stride_ratio, feature.device)  # (h, w, 2)
        codes = sine_embedding(points, self.dim, self.temperature)  # (h, w, dim)
        codes = codes.permute(2, 0, 1).to(feature.dtype)  # (dim, h, w)
        return codes[None].expand(batch, -1, -1, -1)  # (B, dim, h, w)
