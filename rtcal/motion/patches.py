"""The grid of overlapping patches of piecewise-rigid registration (NoRMCorre).

Along each axis of length n, patches of side p = min(patch_px, n) start at
``round(linspace(0, n - p, m))`` with m = ceil((n - p) / (p - overlap)) + 1, so
they cover the axis, all have the same size, and neighbours overlap by at least
overlap_px (Pnevmatikakis & Giovannucci 2017, J. Neurosci. Methods 291:83).
"""

from __future__ import annotations

from dataclasses import dataclass
from itertools import product

import numpy as np


@dataclass(frozen=True)
class PatchGrid:
    """starts_y int64 (n_y,), starts_x int64 (n_x,): top-left corners; size (h, w) px."""

    starts_y: np.ndarray
    starts_x: np.ndarray
    size: tuple[int, int]

    @property
    def shape(self) -> tuple[int, int]:
        """(n_y, n_x) patches."""
        return len(self.starts_y), len(self.starts_x)

    @property
    def centres_y(self) -> np.ndarray:
        """float64 (n_y,) px: row coordinate of each patch row's centre."""
        return self.starts_y + 0.5 * (self.size[0] - 1)

    @property
    def centres_x(self) -> np.ndarray:
        """float64 (n_x,) px: column coordinate of each patch column's centre."""
        return self.starts_x + 0.5 * (self.size[1] - 1)


def _axis_starts(n: int, patch_px: int, overlap_px: int) -> tuple[np.ndarray, int]:
    p = min(patch_px, n)
    if p == n:
        return np.zeros(1, np.int64), p
    stride = max(p - overlap_px, 1)
    m = int(np.ceil((n - p) / stride)) + 1
    return np.round(np.linspace(0, n - p, m)).astype(np.int64), p


def patch_grid(shape: tuple[int, int], patch_px: int, overlap_px: int) -> PatchGrid:
    """Patches of side min(patch_px, H or W) covering an (H, W) image with the overlap."""
    starts_y, h = _axis_starts(shape[0], patch_px, overlap_px)
    starts_x, w = _axis_starts(shape[1], patch_px, overlap_px)
    return PatchGrid(starts_y, starts_x, (h, w))


def extract_patches(image: np.ndarray, grid: PatchGrid) -> np.ndarray:
    """(H, W) image -> (n_y * n_x, h, w) copy of its patches, row-major over the grid."""
    h, w = grid.size
    out = np.empty((len(grid.starts_y) * len(grid.starts_x), h, w), image.dtype)
    for i, (y, x) in enumerate(product(grid.starts_y, grid.starts_x)):
        out[i] = image[y : y + h, x : x + w]
    return out
