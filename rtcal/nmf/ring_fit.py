"""Fit the CNMF-E ring background model on an initialisation window.

Given frames Y (T, P), footprints A (K, P) and traces C (K, T) from a first pass,
CNMF-E (Zhou et al. 2018, eLife 7:e28728, Methods) estimates

    b0 = mean_t (Y - A C)                                  static background (P,)
    X  = D (Y - A C) - D b0 1^T                            coarse fluctuations (p, T)
    W_d[q, :] = argmin_w || X[q] - w X[S_q] ||^2 + lam ||w||^2   for every coarse pixel q

with D the block mean of :class:`rtcal.nmf.ring.CoarseGrid` (OnACID-E's spatial
downsampling, Friedrich et al. 2021, PLoS Comput Biol 17:e1008565) and S_q the
sources of q: the coarse pixels on the ring around q (``ring_offsets``) that lie
in the frame and outside every footprint (footprint > threshold x its maximum),
so that errors in A C (missed or mis-scaled cells) do not leak into the
background of their neighbours. Every pixel is a target, the ones inside cells
included: their background is the one that matters, and the neural residual
they carry is uncorrelated with off-cell sources, so it adds variance, not bias.
Where fewer than ``min_source_fraction`` of a ring's in-frame pixels are off
cells (crowded fields), the ring keeps all of them.

lam = ridge x mean_i ||X[S_q, i]||^2 makes the ridge weight scale-free. Like
CNMF-E's outlier threshold, frames where a target exceeds its prediction by more
than ``outlier_sd`` robust standard deviations (calcium transients of a cell the
traces did not explain) are replaced by the prediction and the row is refitted
(OUTLIER_PASSES times; the Gram matrix is reused). Each coarse pixel costs
O(|S|^2 T): one small Gram matrix and a few solves.

Which traces to fit with: ones whose errors are independent of the background.
Traces estimated under a wrong background (e.g. a low-rank first pass) carry
that background's error, W learns it back at the cells' pixels, and refitting on
the resulting traces keeps it (measured: median trace correlation falls with
every refit). Zero traces are safe: the cells' mean stays in b0, their activity
in the targets is noise to the regression, and the outlier step removes most of
it. Traces from a good first pass (CNMF-E-style init) are better still.
"""

from __future__ import annotations

import numba
import numpy as np
import scipy.sparse as sp

from rtcal.nmf.ring import CoarseGrid, RingConfig, RingModel, RingModelError, ring_offsets

CHUNK_FRAMES = 64  # frames per block when removing A C (bounds the temporary memory)
OUTLIER_PASSES = 2  # refits of each row after replacing its positive outliers


def fit_ring_model(
    Y: np.ndarray, footprints: np.ndarray, traces: np.ndarray, config: RingConfig
) -> RingModel:
    """Fit b0 and W_d (module docstring) and return the :class:`RingModel`.

    Y: (T, H, W) frames (float32, motion-corrected, detector offset included or
    not, consistently with the frames the model will see); footprints: (K, H, W);
    traces: (K, T) in the units of the footprints (Y ~ sum_k A_k C_k + B).
    """
    T, H, W = Y.shape
    K = footprints.shape[0]
    if footprints.shape[1:] != (H, W):
        raise RingModelError(f"footprints shape {footprints.shape} does not match frames {Y.shape}")
    if traces.shape != (K, T):
        raise RingModelError(f"traces shape {traces.shape} != (K, T) = {(K, T)}")
    if T < 2:
        raise RingModelError(f"need at least 2 frames to fit the ring model, got {T}")
    grid = CoarseGrid(H, W, config.downsample)
    b0, X = _static_and_fluctuations(Y, footprints, traces, grid)
    cells = cell_mask(footprints, config.footprint_threshold, grid)
    weights = fit_ring_weights(X, cells, config)
    return RingModel(b0.astype(np.float32), weights, config)


def ring_residual(
    Y: np.ndarray, footprints: np.ndarray, traces: np.ndarray, config: RingConfig
) -> np.ndarray:
    """Y (T, H, W) minus the ring background fitted on it: float32 (T, H, W), a new array.

    footprints (K, H, W) and traces (K, T) are the cells known so far (K may be
    0): their pixels are kept out of the ring's sources, their activity A C out
    of its fit, and the background of each frame is predicted from y - A c, so
    that a cell's own transients do not leak into its neighbours' background.
    What is left is the cells' activity about their resting level, and noise:
    CNMF-E's first step on one-photon data, used by the seed detector
    (``rtcal.detect.seed``)."""
    T, H, W = Y.shape
    model = fit_ring_model(Y, footprints, traces, config)
    A = footprints.reshape(footprints.shape[0], H * W)
    out = np.empty(Y.shape, np.float32)
    for t in range(T):
        cells = (traces[:, t] @ A).reshape(H, W) if A.shape[0] else 0.0
        out[t] = Y[t] - model.background(Y[t] - cells)
    return out


def _static_and_fluctuations(
    Y: np.ndarray, footprints: np.ndarray, traces: np.ndarray, grid: CoarseGrid
) -> tuple[np.ndarray, np.ndarray]:
    """b0 (H, W) float64 and X (p, T) float32: coarse residual fluctuations, one row per pixel."""
    T, H, W = Y.shape
    A = sp.csr_matrix(footprints.reshape(footprints.shape[0], H * W).astype(np.float32))
    total = np.zeros((H, W))
    coarse = np.empty((T, *grid.coarse_shape), np.float32)
    for start in range(0, T, CHUNK_FRAMES):
        sl = slice(start, min(start + CHUNK_FRAMES, T))
        cells = (A.T @ traces[:, sl].astype(np.float32)).T.reshape(-1, H, W)
        residual = Y[sl].astype(np.float32) - cells  # (n, H, W)
        total += residual.sum(axis=0, dtype=np.float64)
        coarse[sl] = grid.downsample(residual)
    coarse -= coarse.mean(axis=0, dtype=np.float64).astype(np.float32)  # D b0, D is linear
    return total / T, np.ascontiguousarray(coarse.reshape(T, -1).T)


def cell_mask(footprints: np.ndarray, threshold: float, grid: CoarseGrid) -> np.ndarray:
    """bool (h, w): coarse pixels that contain any pixel with a_k > threshold x max a_k."""
    K = footprints.shape[0]
    if K == 0:
        return np.zeros(grid.coarse_shape, bool)
    peak = footprints.reshape(K, -1).max(axis=1)
    scale = np.where(peak > 0, peak, np.inf)[:, None, None]
    inside = (footprints / scale > threshold).any(axis=0)
    return grid.downsample(inside.astype(np.float64)) > 0


def ring_sources(cells: np.ndarray, config: RingConfig) -> list[np.ndarray]:
    """For each coarse pixel (row-major), int64 indices of its ring sources (module docstring)."""
    h, w = cells.shape
    offsets = ring_offsets(config.coarse_radius)
    flat_cells = cells.ravel()
    out = []
    for i in range(h):
        for j in range(w):
            ys, xs = i + offsets[:, 0], j + offsets[:, 1]
            inside = (ys >= 0) & (ys < h) & (xs >= 0) & (xs < w)
            idx = ys[inside] * w + xs[inside]
            off_cell = idx[~flat_cells[idx]]
            if off_cell.size >= config.min_source_fraction * idx.size and off_cell.size > 0:
                idx = off_cell
            out.append(idx)
    return out


def fit_ring_weights(X: np.ndarray, cells: np.ndarray, config: RingConfig) -> sp.csr_matrix:
    """W_d (p, p) float32 CSR by ridge regression of each row of X (p, T) on its ring sources.

    One compiled loop over the rows (:func:`_ridge_rows`: ~55 us a row at
    T = 300, 2.7x the plain version); :func:`fit_ring_weights_reference` is the
    plain version."""
    p = X.shape[0]
    sources = ring_sources(cells, config)
    indptr = np.zeros(p + 1, np.int64)
    indptr[1:] = np.cumsum([s.size for s in sources])
    indices = np.concatenate(sources).astype(np.int64) if p else np.zeros(0, np.int64)
    data = _ridge_rows(np.ascontiguousarray(X, dtype=np.float32), indptr, indices,
                       max(config.ridge, 1e-9), config.outlier_sd, OUTLIER_PASSES)
    return sp.csr_matrix((data.astype(np.float32), indices, indptr), shape=(p, p))


def fit_ring_weights_reference(
    X: np.ndarray, cells: np.ndarray, config: RingConfig
) -> sp.csr_matrix:
    """Plain version of :func:`fit_ring_weights`: :func:`_robust_ridge` row by row."""
    p = X.shape[0]
    sources = ring_sources(cells, config)
    indptr = np.zeros(p + 1, np.int64)
    indptr[1:] = np.cumsum([s.size for s in sources])
    data = np.zeros(indptr[-1], np.float32)
    for q, src in enumerate(sources):
        if src.size:
            data[indptr[q] : indptr[q + 1]] = _robust_ridge(X[src], X[q], config)
    indices = np.concatenate(sources) if p else np.zeros(0, np.int64)
    return sp.csr_matrix((data, indices, indptr), shape=(p, p))


@numba.njit(cache=True)
def _ridge_rows(X, indptr, indices, ridge, outlier_sd, passes):  # pragma: no cover - compiled
    """float64 (nnz,): :func:`_robust_ridge` for every row q of X (p, T) on X[indices[indptr[q]:
    indptr[q + 1]]], in the same arithmetic (float64 Gram matrix and solves)."""
    p, T = X.shape
    out = np.zeros(indices.size)
    for q in range(p):
        lo, hi = indptr[q], indptr[q + 1]
        n = hi - lo
        if n == 0:
            continue
        S = np.empty((n, T))
        for i in range(n):
            S[i] = X[indices[lo + i]]
        G = S @ S.T
        scale = np.trace(G) / n
        if scale <= 0:
            continue
        for i in range(n):
            G[i, i] += ridge * scale
        target = X[q].astype(np.float64)
        w = np.linalg.solve(G, S @ target)
        for _ in range(passes):
            pred = w @ S
            resid = target - pred
            sigma = 1.4826 * np.median(np.abs(resid - np.median(resid)))
            high = resid > outlier_sd * sigma
            if not high.any():
                break
            target = np.where(high, pred, target)
            w = np.linalg.solve(G, S @ target)
        out[lo:hi] = w
    return out


def _robust_ridge(S: np.ndarray, x: np.ndarray, config: RingConfig) -> np.ndarray:
    """Ridge weights of x (T,) on S (n, T), refitted with x's positive outliers replaced."""
    G = (S @ S.T).astype(np.float64)
    scale = float(np.trace(G)) / G.shape[0]
    if scale <= 0:  # constant sources carry no information about x
        return np.zeros(G.shape[0])
    G[np.diag_indices_from(G)] += max(config.ridge, 1e-9) * scale
    target = x.astype(np.float64)
    w = np.linalg.solve(G, S @ target)
    for _ in range(OUTLIER_PASSES):
        pred = w @ S
        resid = target - pred
        sigma = 1.4826 * np.median(np.abs(resid - np.median(resid)))
        high = resid > config.outlier_sd * sigma
        if not high.any():
            break
        target = np.where(high, pred, target)
        w = np.linalg.solve(G, S @ target)
    return w
