"""Weighted footprints from the detector's binary masks: a rank-1 fit on the window.

The network gives each neuron a binary mask. Its footprint, the weight of each
pixel in the cell's fluorescence, is read from the window: in a box around the
mask, dilated by ``dilate_px``,

    P(t, x) = Y(t, x) - median_t Y(t, x) - b(t),   x in the dilated mask (0 elsewhere),

b(t) the median over the box's pixels outside the dilated mask (local
background and neuropil fluctuations), and P ~ c a^T is fitted by rank-1
non-negative factorisation (``seed.rank1_footprint``, as CNMF-E initialises a
seed; Zhou et al. 2018). ``seed.clean_footprint`` keeps the connected part of a
above 0.1 x max that holds the centre, normalised to max 1.

A cell that does not fire in the window gives a noise-only fit; and a real fit
may be patchy. So the mask itself is kept as a floor, footprint =
max(a, floor * mask): thresholded at 0.2 x max (the evaluation convention) the
footprint is never smaller than the network's mask, and a cell with no fit
(``clean_footprint`` returns nothing) gets floor * mask rescaled to 1, a flat
footprint over the mask.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from rtcal.detect.seed import clean_footprint, rank1_footprint
from rtcal.detect.tiling import Instance

MASK_FLOOR = 0.25  # footprint weight kept everywhere inside the network's mask
MIN_BACKGROUND_PX = 8  # fewer box pixels outside the mask: no local background term
MEDIAN_FRAMES = 128  # frames the baseline median is taken over


@dataclass(frozen=True)
class Footprint:
    """A footprint in a box: weights float32 (h, w), max 1, top-left pixel (top, left)."""

    top: int
    left: int
    weights: np.ndarray
    score: float

    @property
    def centre(self) -> tuple[float, float]:
        """(row, col) weighted centroid in the frame, px."""
        r, c = ndimage.center_of_mass(self.weights)
        return self.top + float(r), self.left + float(c)

    def instance(self, level: float = 0.2) -> Instance:
        """Its mask at ``level`` x max (the evaluation's binarisation) as an Instance."""
        return Instance(self.top, self.left, self.weights >= level, self.score)


def _disk(radius: int) -> np.ndarray:
    r = np.arange(-radius, radius + 1)
    return r[:, None] ** 2 + r[None, :] ** 2 <= radius**2


def _temporal_median(P: np.ndarray) -> np.ndarray:
    """Per-pixel median over time of (T, h, w), from at most MEDIAN_FRAMES evenly spaced
    frames (a baseline estimate; pixel-major so that the partition reads contiguously)."""
    T, h, w = P.shape
    sub = P[:: -(-T // MEDIAN_FRAMES)].reshape(-1, h * w)
    return np.median(np.ascontiguousarray(sub.T), axis=1).reshape(h, w)


def weighted_footprint(window: np.ndarray, inst: Instance, dilate_px: int,
                       context_px: int, floor: float = MASK_FLOOR) -> Footprint:
    """The footprint of one instance in a (T, H, W) window (module docstring).

    dilate_px: how far beyond the mask the fit may reach; context_px: extra margin
    of the box, whose pixels outside the dilated mask give the local background;
    floor: weight kept inside the mask (0: the fit alone, the mask only where it fails).
    """
    T, H, W = window.shape
    t0, l0, b0, r0 = inst.box
    pad = dilate_px + context_px
    top, left = max(t0 - pad, 0), max(l0 - pad, 0)
    bottom, right = min(b0 + pad, H), min(r0 + pad, W)
    mask = np.zeros((bottom - top, right - left), bool)
    mask[t0 - top : b0 - top, l0 - left : r0 - left] = inst.mask
    support = ndimage.binary_dilation(mask, _disk(dilate_px)) if dilate_px else mask
    P = window[:, top:bottom, left:right].astype(np.float32)
    P -= _temporal_median(P)
    outside = ~support
    if outside.sum() >= MIN_BACKGROUND_PX:
        P -= np.median(P[:, outside], axis=1)[:, None, None]
    P *= support
    cy, cx = inst.centre
    centre = (int(np.clip(round(cy) - top, 0, mask.shape[0] - 1)),
              int(np.clip(round(cx) - left, 0, mask.shape[1] - 1)))
    fit = clean_footprint(rank1_footprint(P, centre), centre)
    weights = mask.astype(np.float32) if fit is None else np.maximum(fit, floor * mask)
    rows = np.flatnonzero(weights.any(axis=1))
    cols = np.flatnonzero(weights.any(axis=0))
    crop = weights[rows[0] : rows[-1] + 1, cols[0] : cols[-1] + 1]
    return Footprint(top + int(rows[0]), left + int(cols[0]), np.ascontiguousarray(crop),
                     inst.score)


def mask_footprint(inst: Instance) -> Footprint:
    """The flat footprint of an instance: weight 1 over its mask."""
    return Footprint(inst.top, inst.left, inst.mask.astype(np.float32), inst.score)


def dense(footprints: list[Footprint], height: int, width: int) -> np.ndarray:
    """float32 (K, height, width) from boxed footprints."""
    out = np.zeros((len(footprints), height, width), np.float32)
    for k, f in enumerate(footprints):
        h, w = f.weights.shape
        out[k, f.top : f.top + h, f.left : f.left + w] = f.weights
    return out
