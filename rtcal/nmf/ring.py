"""CNMF-E ring model of the 1-photon background, applied once per frame.

Microendoscope (1p) data are Y = A C + B + noise with a background B many times
brighter than the cells, spatially smooth but locally structured, and fluctuating.
CNMF-E (Zhou et al. 2018, eLife 7:e28728, Methods) models it as

    B = b0 1^T + W (Y - A C - b0 1^T),

b0 (P,) the static background and W (P, P) sparse: pixel p's fluctuation is a
weighted sum of the fluctuations of the pixels on a ring of radius
~1.5-4 neuron radii around p. Ring pixels inside cells are not used (here: not
sources of W), so a cell's own activity does not leak into its background. W is
fitted by least squares on data with the neurons removed (:mod:`rtcal.nmf.ring_fit`).

OnACID-E (Friedrich et al. 2021, PLoS Comput Biol 17:e1008565) applies the ring
online on a spatially downsampled grid: with D the block mean by ``downsample``
and U bilinear upsampling back to the frame,

    b_t = b0 + U W_d (D r_t - D b0),      r_t = y_t - A c,               (1)

W_d (p, p) on the coarse grid (p = P / downsample^2 pixels, ~2 pi R / downsample
nonzeros per row). One frame costs one pass over the pixels plus a CSR matvec
with p * 2 pi R / downsample nonzeros; :meth:`RingModel.background` does it in a
single compiled pass over a stencil form of W_d (:func:`ring_background_reference`
is the plain version).

Per-frame recipe (what :func:`ring_trace_step` does, as in OnACID-E's 1p loop):

1. r_t = y_t - A c_{t-1}: the frame minus the cells at their previous traces;
2. b_t = background(r_t), eq. (1);
3. c_t = solve(y_t - b_t, warm start c_{t-1}) with any non-negative trace solver
   whose model has no background term of its own (e.g. HALS on A);
4. optionally repeat 1-3 with c_t in place of c_{t-1} (``n_alternations``).

The ring sources exclude pixels inside footprints (see ``ring_fit``), so b_t is
nearly independent of c and one alternation is usually enough.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numba
import numpy as np
import scipy.sparse as sp

from rtcal.errors import RtcalError

# Ring radius / neuron radius. CNMF-E uses 1.5-2 neuron diameters so that the ring
# clears the cell; here the ring sources skip every footprint anyway, and a ring
# just outside the cell interpolates the smooth background better (measured on
# simulated 1p data, 256x256, 40 cells firing 0.5 Hz: median trace correlation
# 0.89 at 1.2 and 1.5, 0.85 at 2; at 0.12 Hz, 0.74 at 1.5 and 0.61 at 2.5;
# fits without the outlier step).
RING_PER_NEURON_RADIUS = 1.5

TraceSolver = Callable[[np.ndarray, np.ndarray], np.ndarray]
"""solve(y_minus_background (P,) float32, c_start (K,) float32) -> c (K,) float32 >= 0."""


class RingConfigError(RtcalError, ValueError):
    """A RingConfig field is out of range."""


class RingModelError(RtcalError, ValueError):
    """Arrays given to the ring model do not fit together."""


@dataclass(frozen=True)
class RingConfig:
    """Settings of the ring background model.

    ring_radius_px: ring radius in frame pixels (use :meth:`from_neuron_radius`
    to derive it as 1.5 neuron radii); downsample: block size of the coarse grid
    the ring runs on (1 = full resolution); ridge: Tikhonov weight of the W fit,
    relative to the mean variance of the ring pixels; footprint_threshold: a
    pixel is inside a cell where a footprint exceeds this fraction of its
    maximum; min_source_fraction: if fewer than this fraction of a ring's pixels
    lie outside cells, the ring keeps its cell pixels too (dense fields);
    outlier_sd: in the fit, target values above the prediction by more than this
    many robust standard deviations are replaced by the prediction (unexplained
    transients; inf turns it off). The ring is one coarse pixel wide:
    radius <= |offset| < radius + 1 in coarse pixels.
    """

    ring_radius_px: float = 13.5
    downsample: int = 2
    ridge: float = 1e-2
    footprint_threshold: float = 0.1
    min_source_fraction: float = 0.25
    outlier_sd: float = 3.0

    def __post_init__(self) -> None:
        if not isinstance(self.downsample, int) or isinstance(self.downsample, bool) or (
            self.downsample < 1
        ):
            raise _bad("downsample", self.downsample, "must be an int >= 1")
        if not (math.isfinite(self.ring_radius_px) and self.ring_radius_px >= self.downsample):
            raise _bad("ring_radius_px", self.ring_radius_px,
                       f"must be finite and >= downsample ({self.downsample})")
        if not (math.isfinite(self.ridge) and self.ridge >= 0):
            raise _bad("ridge", self.ridge, "must be finite and >= 0")
        if not 0 < self.footprint_threshold <= 1:
            raise _bad("footprint_threshold", self.footprint_threshold, "must be in (0, 1]")
        if not self.outlier_sd > 0:  # inf is allowed: no outlier replacement
            raise _bad("outlier_sd", self.outlier_sd, "must be > 0 (inf: off)")
        if not 0 <= self.min_source_fraction <= 1:
            raise _bad("min_source_fraction", self.min_source_fraction, "must be in [0, 1]")

    @classmethod
    def from_neuron_radius(cls, neuron_radius_px: float, **overrides: object) -> RingConfig:
        """A config whose ring radius is RING_PER_NEURON_RADIUS x ``neuron_radius_px``."""
        if not (math.isfinite(neuron_radius_px) and neuron_radius_px > 0):
            raise RingConfigError(
                f"neuron_radius_px={neuron_radius_px!r}: must be finite and > 0")
        return cls(ring_radius_px=RING_PER_NEURON_RADIUS * neuron_radius_px, **overrides)

    @property
    def coarse_radius(self) -> float:
        """Ring radius on the coarse grid, in coarse pixels."""
        return self.ring_radius_px / self.downsample


def _bad(name: str, value: object, why: str) -> RingConfigError:
    return RingConfigError(f"RingConfig.{name}={value!r}: {why}")


def ring_offsets(radius: float) -> np.ndarray:
    """(n, 2) int64 offsets (dy, dx) with radius <= sqrt(dy^2 + dx^2) < radius + 1."""
    reach = int(math.ceil(radius + 1))
    dy, dx = np.mgrid[-reach : reach + 1, -reach : reach + 1]
    dist = np.hypot(dy, dx)
    keep = (dist >= radius) & (dist < radius + 1)
    return np.stack([dy[keep], dx[keep]], axis=1).astype(np.int64)


class CoarseGrid:
    """Block-mean downsampling D and bilinear upsampling U between (H, W) and (h, w).

    h = ceil(H / f); coarse pixel i averages rows [i f, min((i + 1) f, H)). U
    interpolates linearly between coarse pixel centres i f + (f - 1) / 2 and
    holds the edge values beyond the outermost centres (OpenCV's INTER_LINEAR).
    """

    def __init__(self, height: int, width: int, factor: int) -> None:
        self.shape = (height, width)
        self.factor = factor
        self.coarse_shape = (-(-height // factor), -(-width // factor))
        h, w = self.coarse_shape
        rows = np.minimum(np.arange(h) * factor + factor, height) - np.arange(h) * factor
        cols = np.minimum(np.arange(w) * factor + factor, width) - np.arange(w) * factor
        self.inv_count = (1.0 / np.outer(rows, cols)).astype(np.float64)  # (h, w)
        self.row0, self.row1, self.row_frac = _interp_table(height, h, factor)
        self.col0, self.col1, self.col_frac = _interp_table(width, w, factor)

    def downsample(self, x: np.ndarray) -> np.ndarray:
        """(..., H, W) -> (..., h, w) float64 block means."""
        H, W = self.shape
        f, (h, w) = self.factor, self.coarse_shape
        lead = x.shape[:-2]
        padded = np.zeros((*lead, h * f, w * f))
        padded[..., :H, :W] = x
        return padded.reshape(*lead, h, f, w, f).sum(axis=(-3, -1)) * self.inv_count

    def upsample(self, xc: np.ndarray) -> np.ndarray:
        """(h, w) -> (H, W) float64 bilinear interpolation."""
        rows = (xc[self.row0] * (1 - self.row_frac[:, None])
                + xc[self.row1] * self.row_frac[:, None])
        return rows[:, self.col0] * (1 - self.col_frac) + rows[:, self.col1] * self.col_frac


def _interp_table(n: int, m: int, factor: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """For n fine positions: both coarse neighbours (int64) and the weight of the second."""
    pos = np.clip((np.arange(n) - (factor - 1) / 2) / factor, 0, m - 1)
    lo = np.floor(pos).astype(np.int64)
    hi = np.minimum(lo + 1, m - 1)
    return lo, hi, pos - lo


class RingModel:
    """b = b0 + U W_d (D r - D b0) for residual frames r = y - A c (eq. (1) above).

    b0: float32 (H, W) static background; weights: (h w, h w) CSR W_d on the coarse
    grid of ``config.downsample`` (row-major coarse pixel index); config: the
    settings it was fitted with. Built by :func:`rtcal.nmf.ring_fit.fit_ring_model`.

    For speed W_d is also kept as a stencil: every nonzero W_d[p, q] sits at one of
    a few offsets q - p (the ring), so W_d x = sum_k w_k * shift_k(x) with
    ``stencil_weights`` (n_offsets, h, w) float32 (zero where a ring pixel is not a
    source). That turns the gather of a CSR matvec into contiguous row operations.
    """

    def __init__(self, b0: np.ndarray, weights: sp.csr_matrix, config: RingConfig) -> None:
        H, W = b0.shape
        self.config = config
        self.grid = CoarseGrid(H, W, config.downsample)
        h, w = self.grid.coarse_shape
        if weights.shape != (h * w, h * w):
            raise RingModelError(
                f"weights shape {weights.shape} != ({h * w}, {h * w}) for a {H}x{W} frame "
                f"at downsample {config.downsample}")
        self.shape = (H, W)
        self.b0 = np.ascontiguousarray(b0, dtype=np.float32)
        self.b0_coarse = self.grid.downsample(self.b0).ravel()  # float64 (h w,)
        csr = sp.csr_matrix(weights, dtype=np.float32)
        csr.sort_indices()
        self.weights = csr
        self.stencil_offsets, self.stencil_weights = stencil_from_csr(csr, (h, w))
        self._pad = int(np.abs(self.stencil_offsets).max(initial=0))
        self._b0_coarse32 = self.b0_coarse.reshape(h, w).astype(np.float32)
        self._inv_count32 = self.grid.inv_count.astype(np.float32)
        self._col_block = (np.arange(W) // config.downsample + self._pad).astype(np.int64)
        self._row_frac32 = self.grid.row_frac.astype(np.float32)
        self._col_frac32 = self.grid.col_frac.astype(np.float32)

    @property
    def nnz(self) -> int:
        return int(self.weights.nnz)

    def background(self, residual: np.ndarray) -> np.ndarray:
        """residual r = y - A c, (H, W) -> float32 (H, W) background b, eq. (1)."""
        if residual.shape != self.shape:
            raise RingModelError(f"residual shape {residual.shape} != frame shape {self.shape}")
        g = self.grid
        out = np.empty(self.shape, np.float32)
        _ring_background(
            np.ascontiguousarray(residual, dtype=np.float32), self.b0, self._b0_coarse32,
            self._inv_count32, g.factor, self._col_block, self._pad, self.stencil_offsets,
            self.stencil_weights, g.row0, g.row1, self._row_frac32, g.col0, g.col1,
            self._col_frac32, out)
        return out

    def background_flat(self, residual: np.ndarray) -> np.ndarray:
        """Same as :meth:`background` on flat frames: (P,) -> float32 (P,), P = H W (C order)."""
        return self.background(residual.reshape(self.shape)).reshape(-1)


def stencil_from_csr(
    weights: sp.csr_matrix, coarse_shape: tuple[int, int]
) -> tuple[np.ndarray, np.ndarray]:
    """W_d as offsets int64 (n, 2) (dy, dx) and weights float32 (n, h, w):
    W_d[p, p + offset_k] = weights[k, p] (p as (row, col) on the coarse grid)."""
    h, w = coarse_shape
    coo = weights.tocoo()
    pi, pj = np.divmod(coo.row.astype(np.int64), w)
    qi, qj = np.divmod(coo.col.astype(np.int64), w)
    dy, dx = qi - pi, qj - pj
    # The distinct offsets in lexicographic (dy, dx) order, as np.unique(axis=0)
    # gives them, through a table of the few possible offsets: np.unique on the
    # rows sorted all nnz of them (5.5 s of the 1p seed detector at 512 x 512).
    reach = int(max(np.abs(dy).max(initial=0), np.abs(dx).max(initial=0)))
    side = 2 * reach + 1
    key = (dy + reach) * side + (dx + reach)
    present = np.zeros(side * side, bool)
    present[key] = True
    codes = np.flatnonzero(present)
    index = np.full(side * side, -1, np.int64)
    index[codes] = np.arange(codes.size)
    offsets = np.stack([codes // side - reach, codes % side - reach], axis=1)
    stencil = np.zeros((codes.size, h, w), np.float32)
    stencil[index[key], pi, pj] = coo.data
    return offsets.astype(np.int64), stencil


def ring_background_reference(model: RingModel, residual: np.ndarray) -> np.ndarray:
    """Plain NumPy eq. (1) with a dense W_d: (H, W) -> float32 (H, W). For tests."""
    g = model.grid
    fluct = g.downsample(residual.astype(np.float64)).ravel() - model.b0_coarse
    coarse = model.weights.toarray().astype(np.float64) @ fluct
    return (model.b0 + g.upsample(coarse.reshape(g.coarse_shape))).astype(np.float32)


@numba.njit(cache=True)
def _ring_background(r, b0, b0c, inv_count, f, col_block, pad, offsets, stencil,
                     row0, row1, row_frac, col0, col1, col_frac, out):  # pragma: no cover
    """Fused eq. (1): block mean D into a zero-padded coarse frame, stencil W_d, bilinear U."""
    H, W = r.shape
    h, w = inv_count.shape
    xp = np.zeros((h + 2 * pad, w + 2 * pad), np.float32)
    for y in range(H):
        dst, row = xp[y // f + pad], r[y]
        for x in range(W):
            dst[col_block[x]] += row[x]
    for i in range(h):
        for j in range(w):
            xp[i + pad, j + pad] = xp[i + pad, j + pad] * inv_count[i, j] - b0c[i, j]
    bc = np.zeros((h, w), np.float32)
    for k in range(offsets.shape[0]):
        dy, dx = offsets[k, 0] + pad, offsets[k, 1] + pad
        for i in range(h):
            src, wk, acc = xp[i + dy], stencil[k, i], bc[i]
            for j in range(w):
                acc[j] += wk[j] * src[j + dx]
    tmp = np.empty(w, np.float32)
    for y in range(H):
        a0, a1, fy = row0[y], row1[y], row_frac[y]
        for j in range(w):
            tmp[j] = bc[a0, j] + fy * (bc[a1, j] - bc[a0, j])
        for x in range(W):
            c0, c1 = col0[x], col1[x]
            out[y, x] = b0[y, x] + tmp[c0] + col_frac[x] * (tmp[c1] - tmp[c0])


@dataclass(frozen=True)
class RingStep:
    """One frame of the ring recipe: traces float32 (K,), background float32 (P,)."""

    traces: np.ndarray
    background: np.ndarray


def ring_trace_step(
    frame: np.ndarray,
    traces_prev: np.ndarray,
    footprints: sp.csr_matrix,
    model: RingModel,
    solve: TraceSolver,
    n_alternations: int = 1,
) -> RingStep:
    """Traces of one frame with a ring background (recipe in the module docstring).

    frame: (H, W) or (P,) motion-corrected frame; traces_prev: (K,) c_{t-1};
    footprints: (K, P) CSR A; solve: the trace solver (see ``TraceSolver``);
    n_alternations >= 1 rounds of background-then-traces.
    """
    if n_alternations < 1:
        raise RingModelError(f"n_alternations must be >= 1, got {n_alternations}")
    y = np.asarray(frame, dtype=np.float32).reshape(-1)
    c = np.asarray(traces_prev, dtype=np.float32)
    for _ in range(n_alternations):
        b = model.background_flat(y - footprints.T @ c)
        c = solve(y - b, c)
    return RingStep(c, b)
