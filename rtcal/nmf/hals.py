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
