"""Noise-free scene of a chunk: background plus activity x footprints.

    scene[t, p] = b0[p] + sum_j f[t, j] u[j, p] + sum_k level[t, k] W[k, p]

b0 (P,), u (J, P) the static background maps, f (n, J) their time courses,
W = diag(beta) A (K, P) sparse CSR (footprints scaled by resting brightness),
level[t, k] = 1 + C_k(t). Shapes: scene (n, P) float32, P = Hc * Wc canvas pixels.
The global gain g(t) (bleaching, drift) is applied later by the detector kernel.

``compose_scene`` is a Numba kernel (parallel over frames, writes each frame
once, in pixel order); ``compose_scene_reference`` is the plain NumPy/SciPy
version it is tested against.
"""

from __future__ import annotations

import numba
import numpy as np
import scipy.sparse as sp


@numba.njit(cache=True, parallel=True)
def _compose_kernel(mean, spatial, temporal, levels, indptr, indices, data, out):
    n, n_pix = out.shape
    n_comp = spatial.shape[0]
    n_rows = indptr.size - 1
    for t in numba.prange(n):
        row = out[t]
        for p in range(n_pix):
            row[p] = mean[p]
        for j in range(n_comp):
            f = temporal[t, j]
            comp = spatial[j]
            for p in range(n_pix):
                row[p] += f * comp[p]
        for k in range(n_rows):
            lvl = levels[t, k]
            for q in range(indptr[k], indptr[k + 1]):
                row[indices[q]] += lvl * data[q]


def compose_scene(
    mean: np.ndarray, spatial: np.ndarray, temporal: np.ndarray, levels: np.ndarray,
    weights: sp.csr_matrix,
) -> np.ndarray:
    """Fast path: scene (n, P) float32."""
    out = np.empty((temporal.shape[0], mean.size), np.float32)
    _compose_kernel(
        mean, spatial, np.ascontiguousarray(temporal, np.float32),
        np.ascontiguousarray(levels, np.float32), weights.indptr, weights.indices,
        weights.data, out,
    )
    return out


def compose_scene_reference(
    mean: np.ndarray, spatial: np.ndarray, temporal: np.ndarray, levels: np.ndarray,
    weights: sp.csr_matrix,
) -> np.ndarray:
    """Plain version of ``compose_scene``: two matrix products."""
    scene = temporal.astype(np.float32) @ spatial + mean
    return (scene + (weights.T @ levels.T.astype(np.float32)).T).astype(np.float32)
