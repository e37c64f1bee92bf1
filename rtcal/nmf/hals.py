"""Warm-started HALS for the per-frame trace problem.

For one frame y (P,) and components M (K, P) (footprints, then background
basis functions) we solve

    min_c  1/2 || y - M^T c ||^2   s.t.  c_k >= 0 for the components marked non-negative

by block-coordinate descent (hierarchical alternating least squares; Cichocki &
Phan 2009; used for traces in CNMF, Pnevmatikakis et al. 2016). With the Gram
matrix G = M M^T and the projection b = M y precomputed, one sweep is

    c_k <- c_k + (b_k - (G c)_k) / G_kk,   then clamp at 0 where required.

Each sweep costs O(K^2) regardless of the number of pixels, and warm-starting
from the previous frame's c makes a few sweeps enough: calcium moves little
between frames.
"""

from __future__ import annotations

import numba
import numpy as np


def hals_reference(
    G: np.ndarray, b: np.ndarray, c: np.ndarray, nonneg: np.ndarray, n_sweeps: int
) -> np.ndarray:
    """Plain NumPy HALS. G: (K, K), b: (K,), c: (K,) start, nonneg: bool (K,). Returns new c."""
    c = c.astype(np.float64).copy()
    for _ in range(n_sweeps):
        for k in range(G.shape[0]):
            if G[k, k] <= 0:
                continue
            ck = c[k] + (b[k] - G[k] @ c) / G[k, k]
            c[k] = max(ck, 0.0) if nonneg[k] else ck
    return c.astype(np.float32)


@numba.njit(cache=True, fastmath=False)
def _hals_numba(G, b, c, nonneg, n_sweeps):  # pragma: no cover - compiled
    K = G.shape[0]
    out = c.astype(np.float64)
    for _ in range(n_sweeps):
        for k in range(K):
            gkk = G[k, k]
            if gkk <= 0:
                continue
            acc = 0.0
            for j in range(K):
                acc += G[k, j] * out[j]
            ck = out[k] + (b[k] - acc) / gkk
            if nonneg[k] and ck < 0.0:
                ck = 0.0
            out[k] = ck
    return out.astype(np.float32)


def hals(
    G: np.ndarray, b: np.ndarray, c: np.ndarray, nonneg: np.ndarray, n_sweeps: int
) -> np.ndarray:
    """Numba HALS, same contract as :func:`hals_reference`."""
    return _hals_numba(
        np.ascontiguousarray(G, dtype=np.float64),
        np.ascontiguousarray(b, dtype=np.float64),
        np.ascontiguousarray(c, dtype=np.float32),
        np.ascontiguousarray(nonneg, dtype=np.bool_),
        int(n_sweeps),
    )


# ------------------------------------------------- the unconstrained ("noisy") trace
# After the sweeps, component k's unconstrained least-squares value given every
# other component's final value is
#
#     c_k + (b_k - (G c)_k) / G_kk        (CaImAn's noisyC, for OnACID's OASIS)
#
# At rest the clamped c_k is 0 in about half the frames (half-wave rectified
# noise: a 2p run of 3000 frames had 43 % exact zeros in the median trace), so
# its noise level and baseline are wrong for deconvolution; the unconstrained
# value scatters symmetrically about the resting level. ``unclipped_offset``
# returns the offset (b_k - (G c)_k) / G_kk for k < K (0 where G_kk <= 0).


def unclipped_offset_reference(G: np.ndarray, b: np.ndarray, c: np.ndarray, K: int) -> np.ndarray:
    """Plain NumPy: float32 (K,) offsets of the first K entries (see above)."""
    G = np.asarray(G, np.float64)
    diag = np.diagonal(G)[:K]
    gc = G[:K] @ np.asarray(c, np.float64)
    out = np.zeros(K)
    ok = diag > 0
    out[ok] = (np.asarray(b, np.float64)[:K][ok] - gc[ok]) / diag[ok]
    return out.astype(np.float32)


@numba.njit(cache=True, fastmath=False)
def _offset_numba(G, b, c, K, ov_ptr, ov_idx, out):  # pragma: no cover - compiled
    n = G.shape[0]
    for k in range(K):
        gkk = G[k, k]
        if gkk <= 0:
            out[k] = 0.0
            continue
        acc = 0.0
        for p in range(ov_ptr[k], ov_ptr[k + 1]):  # components overlapping k (k too)
            j = ov_idx[p]
            acc += G[k, j] * c[j]
        for j in range(K, n):  # the background rows
            acc += G[k, j] * c[j]
        out[k] = (b[k] - acc) / gkk


def unclipped_offset(
    G: np.ndarray, b: np.ndarray, c: np.ndarray, K: int, ov_ptr: np.ndarray, ov_idx: np.ndarray
) -> np.ndarray:
    """Numba, same contract as :func:`unclipped_offset_reference`, summing only
    over the components whose supports overlap k's (``ov_ptr``, ``ov_idx``: CSR
    lists, k included, as ``rtcal.nmf.footprints.overlap_lists`` gives them;
    G_kj is 0 for the others) and the background: at K = 1500 the dense sum
    took 1.07 ms per frame on this project's CPU, as much as a third of HALS."""
    out = np.empty(K, np.float32)
    _offset_numba(
        np.ascontiguousarray(G, dtype=np.float64),
        np.ascontiguousarray(b, dtype=np.float64),
        np.ascontiguousarray(c, dtype=np.float64),
        int(K),
        np.ascontiguousarray(ov_ptr, dtype=np.int64),
        np.ascontiguousarray(ov_idx, dtype=np.int64),
        out,
    )
    return out
