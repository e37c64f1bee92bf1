"""Tiled inference: a large field of view as overlapping tiles of the network's size.

Grid. Along an axis of L px cut into tiles of t px with overlap o, there are
n = 1 tile if L <= t, else n = ceil((L - o) / (t - o)), their starts spread
evenly from 0 to L - t (rounded), so neighbours overlap by at least o px. A
frame smaller than a tile is padded with zeros at the bottom / right (the
detector's channels are normalised so that zero is background). Each tile owns
a *core*: from the middle of its overlap with the previous tile to the middle
of its overlap with the next one (the frame's edge at either end); the cores
partition the frame.

Instances. In each tile the confident queries (sigmoid(logit) > score
threshold) become binary masks: the 1/4-resolution mask logits are upsampled
bilinearly to the tile (as ``trace_loss.masks_at`` does) and thresholded at
probability 0.5 (logit 0). A tile keeps only the instances whose centre (the
centroid of the mask, rounded to a pixel) lies in its core: that tile sees the
cell at least o/2 px from its own edge, so a soma of radius below o/2 is whole
there, while the clipped views of it in other tiles are dropped. Duplicates
that survive (a cell on a core boundary whose centroid moves by a pixel from
one tile to the next) are merged by mask IoU: of two instances from different
tiles with IoU >= merge_iou the surer one stays.

Masks are held sparsely, cropped to their bounding box (``Instance``), so a
2048 x 2048 frame with thousands of cells costs kilobytes per cell.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from rtcal.detect.model import INPUT_MULTIPLE
from rtcal.errors import RtcalError

MASK_STRIDE = 4  # mask logits come at 1/4 of the input resolution

InferFn = Callable[[np.ndarray], tuple[np.ndarray, np.ndarray]]


class TilingError(RtcalError, ValueError):
    """Inconsistent tile size, overlap or frame size; the message names it."""


@dataclass(frozen=True)
class AxisTiles:
    """Tiles along one axis: starts int64 (n,); core int64 (n, 2) [lo, hi) px."""

    starts: np.ndarray
    core: np.ndarray


@dataclass(frozen=True)
class TileGrid:
    """Tiles of ``tile_shape`` (th, tw) covering a height x width frame, row-major."""

    height: int
    width: int
    tile_shape: tuple[int, int]
    rows: AxisTiles
    cols: AxisTiles

    @property
    def n_tiles(self) -> int:
        return len(self.rows.starts) * len(self.cols.starts)

    @property
    def padded_shape(self) -> tuple[int, int]:
        """Frame size after zero-padding up to at least one tile."""
        return max(self.height, self.tile_shape[0]), max(self.width, self.tile_shape[1])

    def origin(self, i: int) -> tuple[int, int]:
        """(row, col) of tile i's top-left corner in the frame."""
        r, c = divmod(i, len(self.cols.starts))
        return int(self.rows.starts[r]), int(self.cols.starts[c])

    def core(self, i: int) -> tuple[int, int, int, int]:
        """(top, left, bottom, right) of tile i's core, bottom / right exclusive."""
        r, c = divmod(i, len(self.cols.starts))
        return (int(self.rows.core[r, 0]), int(self.cols.core[c, 0]),
                int(self.rows.core[r, 1]), int(self.cols.core[c, 1]))


def axis_tiles(length: int, tile: int, overlap: int) -> AxisTiles:
    """Tile starts and cores along one axis of ``length`` px (module docstring)."""
    if length < 1 or tile < 1 or not 0 <= overlap < tile:
        raise TilingError(f"need length >= 1, tile >= 1 and 0 <= overlap < tile; got "
                          f"length={length}, tile={tile}, overlap={overlap}")
    if length <= tile:
        return AxisTiles(np.zeros(1, np.int64), np.array([[0, length]], np.int64))
    n = math.ceil((length - overlap) / (tile - overlap))
    starts = np.round(np.linspace(0, length - tile, n)).astype(np.int64)
    # Boundary between tiles i and i+1: the middle of their overlap [start_{i+1}, end_i).
    cuts = (starts[1:] + starts[:-1] + tile) // 2
    core = np.stack([np.r_[0, cuts], np.r_[cuts, length]], axis=1).astype(np.int64)
    return AxisTiles(starts, core)


def tile_grid(height: int, width: int, tile_shape: tuple[int, int], overlap_px: int) -> TileGrid:
    """The grid of ``tile_shape`` tiles (multiples of 32) over a height x width frame."""
    th, tw = (int(s) for s in tile_shape)
    if th % INPUT_MULTIPLE or tw % INPUT_MULTIPLE or min(th, tw) < INPUT_MULTIPLE:
        raise TilingError(f"tile {th} x {tw}: sides must be positive multiples of "
                          f"{INPUT_MULTIPLE}")
    if not 0 <= overlap_px <= min(th, tw) // 2:
        raise TilingError(f"overlap_px={overlap_px} must lie in [0, {min(th, tw) // 2}] "
                          f"(half the smaller tile side)")
    return TileGrid(int(height), int(width), (th, tw), axis_tiles(height, th, overlap_px),
                    axis_tiles(width, tw, overlap_px))


def flexible_tile_shape(height: int, width: int, tile_px: int, min_px: int, overlap_px: int
                        ) -> tuple[int, int]:
    """Tile shape for a runtime that takes any multiple of 32, at most ``tile_px`` per side
    and at least ``min_px`` (the smallest side the network accepts).

    A side that fits in one tile gets the frame's length rounded up to 32. Otherwise
    the n = ceil((L - o) / (tile_px - o)) tiles a ``tile_px`` tile needs are kept and
    shrunk to the smallest multiple of 32 that still covers L with overlap o,
    ceil((L + (n - 1) o) / n): at L = 512, tile_px = 256, o = 64, three tiles of 224
    instead of 256 (0.77 of the pixels).
    """
    def side(length: int) -> int:
        if length <= tile_px:
            return max(_round_up(length), min_px)
        n = math.ceil((length - overlap_px) / (tile_px - overlap_px))
        return max(_round_up(math.ceil((length + (n - 1) * overlap_px) / n)), min_px)

    return side(height), side(width)


def _round_up(length: int) -> int:
    return -(-length // INPUT_MULTIPLE) * INPUT_MULTIPLE


def pad_to_grid(image: np.ndarray, grid: TileGrid) -> np.ndarray:
    """A (C, H, W) image zero-padded to the grid's padded shape (itself if no padding)."""
    C, H, W = image.shape
    if (H, W) != (grid.height, grid.width):
        raise TilingError(f"image is {H} x {W} but the grid is for {grid.height} x {grid.width}")
    Hp, Wp = grid.padded_shape
    if (Hp, Wp) == (H, W):
        return image
    padded = np.zeros((C, Hp, Wp), np.float32)
    padded[:, :H, :W] = image
    return padded


def extract_tiles(image: np.ndarray, grid: TileGrid, start: int = 0, stop: int | None = None
                  ) -> np.ndarray:
    """Tiles start..stop-1 (default all) of a (C, H, W) image, or of the image already
    padded (``pad_to_grid``): float32 (n, C, th, tw), zero beyond the frame."""
    if image.shape[1:] != grid.padded_shape:
        image = pad_to_grid(image, grid)
    stop = grid.n_tiles if stop is None else stop
    th, tw = grid.tile_shape
    tiles = np.empty((stop - start, image.shape[0], th, tw), np.float32)
    for i in range(start, stop):
        r, c = grid.origin(i)
        tiles[i - start] = image[:, r : r + th, c : c + tw]
    return tiles


@dataclass(frozen=True)
class Instance:
    """One predicted neuron in frame coordinates.

    mask: bool (h, w), its bounding box, whose top-left pixel is (top, left);
    score: "neuron" probability; tile: index of the tile that predicted it.
    """

    top: int
    left: int
    mask: np.ndarray
    score: float
    tile: int = 0

    @property
    def box(self) -> tuple[int, int, int, int]:
        """(top, left, bottom, right), bottom / right exclusive."""
        return self.top, self.left, self.top + self.mask.shape[0], self.left + self.mask.shape[1]

    @property
    def area(self) -> int:
        return int(np.count_nonzero(self.mask))

    @property
    def centre(self) -> tuple[float, float]:
        """(row, col) centroid of the mask, px."""
        rows, cols = np.nonzero(self.mask)
        return self.top + float(rows.mean()), self.left + float(cols.mean())


def crop_to_box(mask: np.ndarray, top: int, left: int, score: float, tile: int
                ) -> Instance | None:
    """The Instance of a bool mask whose top-left pixel is (top, left), cropped to its
    bounding box; None if the mask is empty."""
    rows = np.flatnonzero(mask.any(axis=1))
    if rows.size == 0:
        return None
    cols = np.flatnonzero(mask.any(axis=0))
    r0, r1, c0, c1 = rows[0], rows[-1] + 1, cols[0], cols[-1] + 1
    return Instance(top + int(r0), left + int(c0), np.ascontiguousarray(mask[r0:r1, c0:c1]),
                    float(score), tile)


def upsample_mask_logits(mask_logits: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """Bilinear upsampling (align_corners=False) of (K, h4, w4) logits to (K, *shape)."""
    if len(mask_logits) == 0:
        return np.zeros((0, *shape), np.float32)
    t = torch.from_numpy(np.ascontiguousarray(mask_logits, np.float32))[None]
    return F.interpolate(t, size=shape, mode="bilinear", align_corners=False)[0].numpy()


def tile_instances(logits: np.ndarray, mask_logits: np.ndarray, grid: TileGrid, tile: int,
                   score_threshold: float) -> list[Instance]:
    """The instances of one tile's outputs that it owns (module docstring).

    logits (Q,) and mask_logits (Q, th/4, tw/4) of tile ``tile`` of ``grid``.
    """
    th, tw = grid.tile_shape
    if mask_logits.shape[1:] != (th // MASK_STRIDE, tw // MASK_STRIDE):
        raise TilingError(f"mask logits {mask_logits.shape[1:]} do not match a {th} x {tw} "
                          f"tile at 1/{MASK_STRIDE}")
    score = 1.0 / (1.0 + np.exp(-logits.astype(np.float64)))
    keep = np.flatnonzero(score > score_threshold)
    up = upsample_mask_logits(mask_logits[keep], (th, tw))
    r0, c0 = grid.origin(tile)
    h, w = min(th, grid.height - r0), min(tw, grid.width - c0)  # the part inside the frame
    top, left, bottom, right = grid.core(tile)
    out = []
    for k, logit_map in zip(keep, up, strict=True):
        inst = crop_to_box(logit_map[:h, :w] > 0, r0, c0, score[k], tile)
        if inst is None:
            continue
        cy, cx = (int(np.floor(v + 0.5)) for v in inst.centre)
        if top <= cy < bottom and left <= cx < right:
            out.append(inst)
    return out


def mask_iou(a: Instance, b: Instance) -> float:
    """Intersection over union of two instances' masks."""
    at, al, ab, ar = a.box
    bt, bl, bb, br = b.box
    t, l, bo, r = max(at, bt), max(al, bl), min(ab, bb), min(ar, br)
    if t >= bo or l >= r:
        return 0.0
    inter = np.count_nonzero(a.mask[t - at : bo - at, l - al : r - al]
                             & b.mask[t - bt : bo - bt, l - bl : r - bl])
    return inter / (a.area + b.area - inter) if inter else 0.0


def suppress(instances: list[Instance], iou_threshold: float, *,
             across_tiles_only: bool = False) -> list[int]:
    """Greedy non-maximum suppression by mask IoU, surest first: an instance whose IoU
    with a kept one reaches ``iou_threshold`` is dropped (with ``across_tiles_only``,
    only when the two come from different tiles). Returns the indices of the kept
    instances, surest first."""
    order = sorted(range(len(instances)), key=lambda i: -instances[i].score)
    kept: list[int] = []
    boxes = np.zeros((len(instances), 4), np.int64)
    for i in order:
        inst = instances[i]
        n = len(kept)
        t, l, b, r = inst.box
        near = np.flatnonzero((boxes[:n, 0] < b) & (boxes[:n, 2] > t)
                              & (boxes[:n, 1] < r) & (boxes[:n, 3] > l))
        if any((not across_tiles_only or instances[kept[j]].tile != inst.tile)
               and mask_iou(instances[kept[j]], inst) >= iou_threshold for j in near):
            continue
        boxes[n] = inst.box
        kept.append(i)
    return kept


def run_tiled(infer: InferFn, image: np.ndarray, grid: TileGrid, *, score_threshold: float,
              merge_iou: float, batch_size: int = 8) -> list[Instance]:
    """Instances of a (C, H, W) image: tiles through ``infer`` (batches of tiles ->
    (logits (B, Q), mask logits (B, Q, th/4, tw/4))) in batches of ``batch_size``,
    owned instances kept per tile, duplicates across tiles merged. Surest first."""
    if batch_size < 1:
        raise TilingError(f"batch_size={batch_size} must be >= 1")
    padded = pad_to_grid(image, grid)
    found: list[Instance] = []
    for start in range(0, grid.n_tiles, batch_size):  # one batch of tiles in memory at a time
        tiles = extract_tiles(padded, grid, start, min(start + batch_size, grid.n_tiles))
        logits, masks = infer(tiles)
        for j in range(len(logits)):
            found += tile_instances(logits[j], masks[j], grid, start + j, score_threshold)
    return [found[i] for i in suppress(found, merge_iou, across_tiles_only=True)]
