"""Spatial footprints A: irregular somata (some donut-shaped), neurites, dark somata.

A soma footprint in coordinates (dy, dx) relative to its centre:

    (u, v)   = rotation of (dx, dy) by the orientation theta
    rho      = sqrt((u / a)^2 + (v / b)^2),  a = r / sqrt(q), b = r sqrt(q)   (q <= 1)
    R(phi)   = 1 + sum_{n=2..4} c_n cos(n phi + psi_n),  phi = atan2(v / b, u / a)
    a(dy,dx) = sigmoid(r (R(phi) - rho) / edge_px)                (soft, irregular edge)
    donut:     a *= 1 - depth sigmoid(r q_n (1 - rho_n) / edge_px)  (dark nucleus,
               rho_n the same ellipse scaled by q_n and slightly off-centre)

optionally Gaussian-blurred (1p), then normalised to max 1. Footprints live on
a *canvas* = the field of view padded by ``margin`` px on each side, so that a
rigidly shifted frame never samples outside the simulated tissue; the truth
footprints are the canvas footprints cropped to the field of view.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp
from scipy.ndimage import gaussian_filter

from rtcal.sim.config import CellParams

_MIN_VALUE = 1e-3  # footprint values below this (relative to max 1) are dropped


@dataclass(frozen=True)
class Canvas:
    """Geometry: field of view (height, width) padded by ``margin`` px on each side."""

    height: int
    width: int
    margin: int

    @property
    def shape(self) -> tuple[int, int]:
        return (self.height + 2 * self.margin, self.width + 2 * self.margin)

    @property
    def n_pixels(self) -> int:
        return self.shape[0] * self.shape[1]

    def crop(self, image: np.ndarray) -> np.ndarray:
        """Field-of-view part of a canvas image (..., Hc, Wc) -> (..., H, W)."""
        m = self.margin
        return image[..., m : m + self.height, m : m + self.width]


@dataclass(frozen=True)
class Patch:
    """A footprint on a small window: values (h, w) float32 whose [0, 0] is at canvas (row, col)."""

    values: np.ndarray
    row: int
    col: int


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 0.5 * (1.0 + np.tanh(0.5 * x))


def soma_patch(
    rng: np.random.Generator, center_rc: np.ndarray, radius_px: float, donut: bool, p: CellParams
) -> Patch:
    """One irregular soma around canvas position ``center_rc`` (row, col floats)."""
    half = int(np.ceil(1.45 * radius_px + 3 * p.edge_px + 3 * p.blur_px)) + 1
    r0, c0 = (int(np.floor(v)) for v in center_rc)
    dy, dx = np.mgrid[-half : half + 1, -half : half + 1].astype(np.float64)
    dy -= center_rc[0] - r0
    dx -= center_rc[1] - c0
    theta = rng.uniform(0, np.pi)
    q = rng.uniform(1 - p.anisotropy, 1.0)
    a, b = radius_px / np.sqrt(q), radius_px * np.sqrt(q)
    u = dx * np.cos(theta) + dy * np.sin(theta)
    v = -dx * np.sin(theta) + dy * np.cos(theta)
    rho = np.hypot(u / a, v / b)
    phi = np.arctan2(v / b, u / a)
    boundary = np.ones_like(rho)
    for n in (2, 3, 4):
        boundary += rng.normal(0, p.roughness / np.sqrt(n - 1)) * np.cos(
            n * phi + rng.uniform(0, 2 * np.pi)
        )
    values = _sigmoid(radius_px * (boundary - rho) / p.edge_px)
    if donut:
        qn = p.nucleus_ratio * rng.uniform(0.85, 1.1)
        off_u, off_v = rng.normal(0, 0.08 * radius_px, size=2)
        rho_n = np.hypot((u - off_u) / (qn * a), (v - off_v) / (qn * b))
        # nucleus contrast varies from cell to cell (never above full darkness)
        depth = min(p.nucleus_depth * rng.uniform(0.7, 1.3), 1.0)
        values *= 1 - depth * _sigmoid(radius_px * qn * (1 - rho_n) / p.edge_px)
    if p.blur_px > 0:
        values = gaussian_filter(values, p.blur_px)
    values = values / values.max()
    values[values < _MIN_VALUE] = 0
    return Patch(values.astype(np.float32), r0 - half, c0 - half)


def neurite_patch(rng: np.random.Generator, canvas: Canvas) -> Patch:
    """A short curvy dendrite/axon segment with a few boutons, normalised to max 1."""
    n_steps = int(rng.integers(6, 30))
    heading = rng.uniform(0, 2 * np.pi) + np.cumsum(rng.normal(0, 0.15, n_steps))
    path = np.cumsum(0.5 * np.stack([np.sin(heading), np.cos(heading)], axis=1), axis=0)
    half = int(np.ceil(np.abs(path).max())) + 4
    r0 = int(rng.integers(canvas.margin, canvas.margin + canvas.height))
    c0 = int(rng.integers(canvas.margin, canvas.margin + canvas.width))
    grid = np.zeros((2 * half + 1, 2 * half + 1))
    pts = np.round(path + half).astype(int)
    np.add.at(grid, (pts[:, 0], pts[:, 1]), 1.0)
    boutons = pts[rng.random(n_steps) < 0.12]
    np.add.at(grid, (boutons[:, 0], boutons[:, 1]), 3.0)
    values = gaussian_filter(grid, rng.uniform(0.5, 0.8))
    values /= values.max()
    values[values < _MIN_VALUE] = 0
    return Patch(values.astype(np.float32), r0 - half, c0 - half)


def place_centers(
    rng: np.random.Generator,
    radii_px: np.ndarray,
    height: int,
    width: int,
    min_distance_ratio: float,
    allowed: np.ndarray | None = None,
) -> np.ndarray:
    """Centres (K, 2) float64 (row, col) in the field of view, dart-throwing.

    Cells keep at least ``min_distance_ratio`` x mean of the two radii between
    centres (ratio < 2 allows partial overlap); a centre must fall where
    ``allowed`` (H, W) bool is True. When the frame is too crowded the
    distance is relaxed by 10 % steps instead of failing.
    """
    centers = np.zeros((len(radii_px), 2))
    ratio = min_distance_ratio
    for k, r in enumerate(radii_px):
        for attempt in range(4000):
            if attempt and attempt % 500 == 0:
                ratio *= 0.9
            c = rng.uniform([0.5 * r, 0.5 * r], [height - 0.5 * r, width - 0.5 * r])
            if allowed is not None and not allowed[int(c[0]), int(c[1])]:
                continue
            dist = np.hypot(*(centers[:k] - c).T)
            if np.all(dist >= ratio * 0.5 * (radii_px[:k] + r)):
                break
        centers[k] = c
    return centers


def patches_to_csr(patches: list[Patch], canvas: Canvas) -> sp.csr_matrix:
    """Stack patches into a sparse (n, Hc*Wc) float32 matrix (pixel = row * Wc + col)."""
    hc, wc = canvas.shape
    rows, cols, vals = [], [], []
    for k, patch in enumerate(patches):
        rr, cc = np.nonzero(patch.values)
        rr_c, cc_c = rr + patch.row, cc + patch.col
        inside = (rr_c >= 0) & (rr_c < hc) & (cc_c >= 0) & (cc_c < wc)
        rows.append(np.full(int(inside.sum()), k))
        cols.append(rr_c[inside] * wc + cc_c[inside])
        vals.append(patch.values[rr[inside], cc[inside]])
    if not patches:
        return sp.csr_matrix((0, hc * wc), dtype=np.float32)
    return sp.csr_matrix(
        (np.concatenate(vals), (np.concatenate(rows), np.concatenate(cols))),
        shape=(len(patches), hc * wc), dtype=np.float32,
    )


def occlusion_map(patches: list[Patch], strengths: np.ndarray, canvas: Canvas) -> np.ndarray:
    """Multiplicative map (Hc, Wc) float32: prod_k (1 - strength_k * patch_k).

    Somata displace neuropil from the focal volume, so the background is dimmer
    under every soma; unlabelled somata (no indicator) show as dark holes.
    """
    log_map = np.zeros(canvas.shape, np.float64)
    hc, wc = canvas.shape
    for patch, s in zip(patches, strengths, strict=True):
        h, w = patch.values.shape
        r0, c0 = max(patch.row, 0), max(patch.col, 0)
        r1, c1 = min(patch.row + h, hc), min(patch.col + w, wc)
        if r1 <= r0 or c1 <= c0:
            continue
        sub = patch.values[r0 - patch.row : r1 - patch.row, c0 - patch.col : c1 - patch.col]
        log_map[r0:r1, c0:c1] += np.log1p(-np.minimum(s * sub, 0.99))
    return np.exp(log_map).astype(np.float32)


def truth_footprints(matrix: sp.csr_matrix, canvas: Canvas) -> np.ndarray:
    """Canvas footprints cropped to the field of view, each renormalised to max 1: (K, H, W)."""
    out = np.zeros((matrix.shape[0], canvas.height, canvas.width), np.float32)
    hc, wc = canvas.shape
    for k in range(matrix.shape[0]):
        row = matrix.getrow(k)
        rr, cc = np.divmod(row.indices, wc)
        rr, cc = rr - canvas.margin, cc - canvas.margin
        inside = (rr >= 0) & (rr < canvas.height) & (cc >= 0) & (cc < canvas.width)
        out[k, rr[inside], cc[inside]] = row.data[inside]
        peak = out[k].max()
        if peak > 0:
            out[k] /= peak
    return out
