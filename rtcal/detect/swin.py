"""Swin Transformer backbone (Liu et al. 2021, "Swin Transformer: Hierarchical Vision
Transformer using Shifted Windows", ICCV), written small enough to run on a CPU.

Built from the smallest piece up, as in microsoft/Swin-Transformer:
``window_partition`` / ``window_reverse`` (pure reshapes), ``WindowAttention``
(multi-head self-attention inside a ws x ws window with a learned relative
position bias), ``SwinTransformerBlock`` (shift is a parameter), ``PatchMerging``,
``SwinStage`` and ``SwinBackbone`` (features at 1/4, 1/8, 1/16, 1/32).

Two departures, both for small simulated data and any input size:

- The stem is two 3x3 stride-2 convolutions instead of one 4x4 patchify
  convolution ("Early convolutions help transformers see better", Xiao et al.
  2021: faster, more stable optimisation at the same cost).
- A map whose side is not a multiple of the window is padded inside each block
  (as Swin's detection code does), but the padded tokens are masked out of the
  attention like the wrapped-around tokens of a shifted window, so real tokens
  never see them. The mask depends only on the map size and is cached per size.

Tensors inside a stage are channels-last, (B, H, W, C).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

MASK_VALUE = -1.0e4  # added to blocked attention logits: exp() underflows to exactly 0


def window_partition(x: torch.Tensor, window_size: int) -> torch.Tensor:
    """(B, H, W, C) -> (B * nW, ws * ws, C), windows in row-major order; H, W multiples of ws."""
    batch, height, width, channels = x.shape
    ws = window_size
    x = x.view(batch, height // ws, ws, width // ws, ws, channels)  # (B, nh, ws, nw, ws, C)
    x = x.permute(0, 1, 3, 2, 4, 5)  # (B, nh, nw, ws, ws, C)
    return x.reshape(-1, ws * ws, channels)  # (B * nh * nw, ws * ws, C)


def window_reverse(windows: torch.Tensor, window_size: int, height: int, width: int
                   ) -> torch.Tensor:
    """Inverse of ``window_partition``: (B * nW, ws * ws, C) -> (B, H, W, C)."""
    ws = window_size
    channels = windows.shape[-1]
    x = windows.view(-1, height // ws, width // ws, ws, ws, channels)  # (B, nh, nw, ws, ws, C)
    x = x.permute(0, 1, 3, 2, 4, 5)  # (B, nh, ws, nw, ws, C)
    return x.reshape(-1, height, width, channels)  # (B, H, W, C)


def relative_position_index(window_size: int) -> torch.Tensor:
    """(N, N) int64, N = ws^2: row of the bias table for the offset between tokens i and j.

    Offset (dy, dx) in [-(ws-1), ws-1]^2 maps to (dy + ws - 1) * (2 ws - 1) + dx + ws - 1.
    """
    ws = window_size
    coords = torch.stack(torch.meshgrid(torch.arange(ws), torch.arange(ws), indexing="ij"))
    coords = coords.flatten(1)  # (2, N): (row, col) of each token
    offsets = coords[:, :, None] - coords[:, None, :] + ws - 1  # (2, N, N), in [0, 2ws - 2]
    return offsets[0] * (2 * ws - 1) + offsets[1]  # (N, N)


def shifted_window_mask(height: int, width: int, window_size: int, shift: int) -> torch.Tensor:
    """Additive attention mask for the windows of a (height, width) map padded to
    multiples of ws and rolled by -shift: (nW, N, N) float, 0 or ``MASK_VALUE``.

    Each token gets a region label in the unrolled map: rows [0, shift), the other
    real rows and the padding rows are three bands (likewise columns), and every
    padded token is one region of its own kind. Tokens in one window attend to each
    other only if they share a label, i.e. they are adjacent in the real map
    (not wrapped around by the roll) and neither is padding.
    """
    ws = window_size
    pad_h, pad_w = -height % ws, -width % ws
    rows = torch.arange(height + pad_h)
    cols = torch.arange(width + pad_w)
    row_band = (rows >= shift).long() + (rows >= height).long()  # 0 wrapped, 1 real, 2 pad
    col_band = (cols >= shift).long() + (cols >= width).long()
    labels = row_band[:, None] * 3 + col_band[None, :]  # (Hp, Wp)
    is_pad = (rows >= height)[:, None] | (cols >= width)[None, :]
    labels = torch.where(is_pad, torch.full_like(labels, -1), labels)
    labels = torch.roll(labels, shifts=(-shift, -shift), dims=(0, 1))  # as the features
    windows = window_partition(labels[None, :, :, None], ws)[..., 0]  # (nW, N)
    blocked = windows[:, :, None] != windows[:, None, :]  # (nW, N, N)
    return blocked.float() * MASK_VALUE


class WindowAttention(nn.Module):
    """Multi-head self-attention within windows, with a relative position bias.

    softmax(q k^T / sqrt(d) + B + M) v per head: B[h, i, j] is a learned table entry
    for the offset between tokens i and j, M the (optional) window mask.
    """

    def __init__(self, dim: int, window_size: int, num_heads: int, dropout: float = 0.0) -> None:
        super().__init__()
        self.window_size = window_size
        self.num_heads = num_heads
        self.scale = (dim // num_heads) ** -0.5
        self.relative_position_bias_table = nn.Parameter(
            torch.zeros((2 * window_size - 1) ** 2, num_heads))
        nn.init.trunc_normal_(self.relative_position_bias_table, std=0.02)
        self.register_buffer("relative_position_index", relative_position_index(window_size),
                             persistent=False)
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)
        self.dropout = nn.Dropout(dropout)

    def position_bias(self) -> torch.Tensor:
        """(num_heads, N, N) relative position bias."""
        n = self.window_size**2
        bias = self.relative_position_bias_table[self.relative_position_index.view(-1)]
        return bias.view(n, n, self.num_heads).permute(2, 0, 1)  # (nH, N, N)

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        """x (B * nW, N, C); mask (nW, N, N) additive or None -> (B * nW, N, C)."""
        b_windows, n, channels = x.shape
        head_dim = channels // self.num_heads
        qkv = self.qkv(x).view(b_windows, n, 3, self.num_heads, head_dim)
        q, k, v = qkv.permute(2, 0, 3, 1, 4).unbind(0)  # (B * nW, nH, N, hd) each
        attn = (q * self.scale) @ k.transpose(-2, -1)  # (B * nW, nH, N, N)
        attn = attn + self.position_bias()[None]
        if mask is not None:
            n_windows = mask.shape[0]
            attn = attn.view(-1, n_windows, self.num_heads, n, n) + mask[None, :, None]
            attn = attn.view(b_windows, self.num_heads, n, n)
        attn = self.dropout(attn.softmax(dim=-1))
        out = (attn @ v).transpose(1, 2).reshape(b_windows, n, channels)  # (B * nW, N, C)
        return self.proj(out)


class Mlp(nn.Module):
    """Linear -> GELU -> Linear, the transformer feed-forward block."""

    def __init__(self, dim: int, hidden_dim: int, dropout: float = 0.0) -> None:
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden_dim)
        self.fc2 = nn.Linear(hidden_dim, dim)
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.dropout(self.fc2(self.dropout(F.gelu(self.fc1(x)))))


class SwinTransformerBlock(nn.Module):
    """Pre-norm (shifted-)window attention and MLP, each with a residual.

    shift: 0 for regular windows, ws // 2 for shifted ones. A map no larger than
    one window is not shifted (the shift could only cut it apart). The attention
    mask is built on the first call at each map size and cached.
    """

    def __init__(self, dim: int, num_heads: int, window_size: int, shift: int,
                 mlp_ratio: float = 4.0, dropout: float = 0.0) -> None:
        super().__init__()
        if not 0 <= shift < window_size:
            raise ValueError(f"shift must lie in [0, window_size), got {shift}")
        self.window_size = window_size
        self.shift = shift
        self.norm1 = nn.LayerNorm(dim)
        self.attn = WindowAttention(dim, window_size, num_heads, dropout)
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = Mlp(dim, int(dim * mlp_ratio), dropout)
        self._masks: dict[tuple[int, int, int, str], torch.Tensor | None] = {}

    def effective_shift(self, height: int, width: int) -> int:
        return 0 if max(height, width) <= self.window_size else self.shift

    def attention_mask(self, height: int, width: int, device: torch.device
                       ) -> torch.Tensor | None:
        """(nW, N, N) mask for a (height, width) map, None when nothing is blocked."""
        shift = self.effective_shift(height, width)
        key = (height, width, shift, str(device))
        if key not in self._masks:
            padded = height % self.window_size or width % self.window_size
            mask = None
            if shift or padded:
                mask = shifted_window_mask(height, width, self.window_size, shift).to(device)
            self._masks[key] = mask
        return self._masks[key]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, H, W, C) -> (B, H, W, C)."""
        _, height, width, _ = x.shape
        ws = self.window_size
        shift = self.effective_shift(height, width)
        mask = self.attention_mask(height, width, x.device)
        pad_h, pad_w = -height % ws, -width % ws
        y = F.pad(self.norm1(x), (0, 0, 0, pad_w, 0, pad_h))  # (B, Hp, Wp, C)
        if shift:
            y = torch.roll(y, shifts=(-shift, -shift), dims=(1, 2))
        windows = self.attn(window_partition(y, ws), mask)  # (B * nW, ws * ws, C)
        y = window_reverse(windows, ws, height + pad_h, width + pad_w)  # (B, Hp, Wp, C)
        if shift:
            y = torch.roll(y, shifts=(shift, shift), dims=(1, 2))
        x = x + y[:, :height, :width]
        return x + self.mlp(self.norm2(x))


class PatchMerging(nn.Module):
    """2x2 neighbourhood -> one token: (B, H, W, C) -> (B, H/2, W/2, 2C); H, W even."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(4 * dim)
        self.reduction = nn.Linear(4 * dim, 2 * dim, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.cat([x[:, 0::2, 0::2], x[:, 1::2, 0::2], x[:, 0::2, 1::2], x[:, 1::2, 1::2]],
                      dim=-1)  # (B, H/2, W/2, 4C)
        return self.reduction(self.norm(x))


class SwinStage(nn.Module):
    """``depth`` blocks alternating regular and shifted windows."""

    def __init__(self, dim: int, depth: int, num_heads: int, window_size: int,
                 mlp_ratio: float, dropout: float) -> None:
        super().__init__()
        self.blocks = nn.ModuleList(
            SwinTransformerBlock(dim, num_heads, window_size,
                                 shift=0 if i % 2 == 0 else window_size // 2,
                                 mlp_ratio=mlp_ratio, dropout=dropout)
            for i in range(depth))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, H, W, C) -> (B, H, W, C)."""
        for block in self.blocks:
            x = block(x)
        return x


class ConvStem(nn.Module):
    """Two 3x3 stride-2 convolutions: (B, C_in, H, W) -> (B, H/4, W/4, C), layer-normed."""

    def __init__(self, in_channels: int, dim: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, dim // 2, 3, stride=2, padding=1)
        self.conv2 = nn.Conv2d(dim // 2, dim, 3, stride=2, padding=1)
        self.norm = nn.LayerNorm(dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.conv2(F.gelu(self.conv1(x)))  # (B, C, H/4, W/4)
        return self.norm(x.permute(0, 2, 3, 1))  # (B, H/4, W/4, C)


class SwinBackbone(nn.Module):
    """Conv stem, then stages of widths C, 2C, 4C, ... joined by patch merging.

    forward: (B, C_in, H, W), H and W multiples of 2^(n_stages + 1) ->
    list of n_stages maps (B, C * 2^i, H / 2^(i+2), W / 2^(i+2)), each layer-normed.
    """

    def __init__(self, in_channels: int, embed_dim: int, depths: tuple[int, ...],
                 num_heads: tuple[int, ...], window_size: int, mlp_ratio: float,
                 dropout: float) -> None:
        super().__init__()
        dims = [embed_dim * 2**i for i in range(len(depths))]
        self.dims = tuple(dims)
        self.stem = ConvStem(in_channels, embed_dim)
        self.stages = nn.ModuleList(
            SwinStage(dim, depth, heads, window_size, mlp_ratio, dropout)
            for dim, depth, heads in zip(dims, depths, num_heads, strict=True))
        self.merges = nn.ModuleList(PatchMerging(dim) for dim in dims[:-1])
        self.out_norms = nn.ModuleList(nn.LayerNorm(dim) for dim in dims)
        self.apply(_init_weights)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        x = self.stem(x)  # (B, H/4, W/4, C)
        features = []
        for i, stage in enumerate(self.stages):
            x = stage(x)  # (B, h, w, C_i)
            features.append(self.out_norms[i](x).permute(0, 3, 1, 2))  # (B, C_i, h, w)
            if i < len(self.merges):
                x = self.merges[i](x)  # (B, h/2, w/2, 2 C_i)
        return features


def _init_weights(module: nn.Module) -> None:
    """Swin's initialisation: truncated normal linear weights, zero biases, unit norms."""
    if isinstance(module, nn.Linear):
        nn.init.trunc_normal_(module.weight, std=0.02)
        if module.bias is not None:
            nn.init.zeros_(module.bias)
    elif isinstance(module, nn.LayerNorm):
        nn.init.ones_(module.weight)
        nn.init.zeros_(module.bias)
    elif isinstance(module, nn.Conv2d):
        nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")
        nn.init.zeros_(module.bias)

