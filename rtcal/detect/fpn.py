"""Feature pyramid (Lin et al. 2017) over the backbone maps, as Mask2Former's base
pixel decoder (Cheng et al. 2022): a top-down path of nearest-neighbour
upsampling and lateral 1x1 convolutions, each sum smoothed by 3x3 conv +
GroupNorm + ReLU. It yields

- the per-pixel embedding map at 1/4 (MaskFormer, Cheng et al. 2021): a 1x1
  convolution of the 1/4 features *plus their sine position code*. Neurons look
  alike, and convolutions are translation equivariant, so without the position
  term two neighbouring cells would have the same embedding and no mask
  embedding could pick one of them; with it, e(p) . e(q) peaks at p = q;
- the multi-scale memory for the decoder (1/32, 1/16, 1/8, coarse to fine) and
  its position codes (added to the keys in the decoder, as in DETR).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from rtcal.detect.position_encoding import PositionEmbeddingSine


@dataclass(frozen=True)
class PixelFeatures:
    """What the FPN hands the decoder (D = fpn_dim, h, w = H/4, W/4).

    features4 (B, D, h, w): 1/4 features (no position; the centre head reads them);
    pixel (B, D, h, w): features4 + position code (heatmap queries read their content here);
    mask_features (B, mask_dim, h, w): the per-pixel embedding map;
    memory: maps (B, D, h_l, w_l) at 1/32, 1/16, 1/8; memory_pos: their position codes;
    memory_ratio: each level's stride relative to the 1/4 map (8, 4, 2).
    """

    features4: torch.Tensor
    pixel: torch.Tensor
    mask_features: torch.Tensor
    memory: list[torch.Tensor]
    memory_pos: list[torch.Tensor]
    memory_ratio: tuple[int, ...]


def conv_norm(in_dim: int, out_dim: int, kernel: int, relu: bool = True) -> nn.Sequential:
    """kxk convolution (no bias), GroupNorm of 8 channels per group, then ReLU if asked."""
    layers = [nn.Conv2d(in_dim, out_dim, kernel, padding=kernel // 2, bias=False),
              nn.GroupNorm(max(1, out_dim // 8), out_dim)]
    return nn.Sequential(*layers, nn.ReLU()) if relu else nn.Sequential(*layers)


class FPN(nn.Module):
    """in_dims: channels of the backbone maps, finest (1/4) first; dim: FPN width."""

    def __init__(self, in_dims: tuple[int, ...], dim: int, mask_dim: int) -> None:
        super().__init__()
        self.top = conv_norm(in_dims[-1], dim, 3)
        self.laterals = nn.ModuleList(conv_norm(c, dim, 1, relu=False) for c in in_dims[:-1])
        self.outputs = nn.ModuleList(conv_norm(dim, dim, 3) for _ in in_dims[:-1])
        self.position = PositionEmbeddingSine(dim)
        self.mask_proj = nn.Conv2d(dim, mask_dim, 1)
        for module in self.modules():
            if isinstance(module, nn.Conv2d):
                nn.init.kaiming_uniform_(module.weight, a=1)  # c2_xavier_fill, as Detectron2
                if module.bias is not None:
                    nn.init.zeros_(module.bias)

    def forward(self, features: list[torch.Tensor]) -> PixelFeatures:
        """features: backbone maps (B, C_i, H / 2^(i+2), W / 2^(i+2)), finest first."""
        y = self.top(features[-1])  # (B, D, H/32, W/32)
        pyramid = [y]  # coarse to fine
        for level in range(len(features) - 2, -1, -1):
            lateral = self.laterals[level](features[level])  # (B, D, h_l, w_l)
            y = self.outputs[level](lateral + F.interpolate(y, scale_factor=2.0, mode="nearest"))
            pyramid.append(y)
        features4 = pyramid[-1]  # (B, D, H/4, W/4)
        pixel = features4 + self.position(features4, 1)
        memory = pyramid[:-1]  # 1/32 ... 1/8
        ratios = tuple(2 ** (len(memory) - i) for i in range(len(memory)))  # (8, 4, 2)
        memory_pos = [self.position(m, r) for m, r in zip(memory, ratios, strict=True)]
        return PixelFeatures(features4=features4, pixel=pixel,
                             mask_features=self.mask_proj(pixel), memory=memory,
                             memory_pos=memory_pos, memory_ratio=ratios)
