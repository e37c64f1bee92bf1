"""Per-frame trace update with fixed footprints: the cheapest online step.

Y_t - baseline = A^T c_t + B^T f_t + noise, solved for c_t >= 0 and f_t free
with warm-started HALS (see :mod:`rtcal.nmf.hals`). Footprints A are sparse
(each covers a few hundred pixels), so the projection A y costs O(nnz).
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp

from rtcal.nmf.hals import hals


class TraceStepper:
    """step(frame) -> c: traces of all components for one motion-corrected frame.

    footprints: float32 (K, H, W); baseline: float32 (H, W) per-pixel resting
    level subtracted before the fit; background: float32 (n_bg, H*W) basis
    (may have zero rows); n_sweeps: HALS sweeps per frame.
    """

    def __init__(
        self,
        footprints: np.ndarray,
        baseline: np.ndarray,
        background: np.ndarray,
        *,
        n_sweeps: int = 5,
    ) -> None:
        K, H, W = footprints.shape
        if baseline.shape != (H, W):
            raise ValueError(f"baseline shape {baseline.shape} != frame shape {(H, W)}")
        if background.ndim != 2 or background.shape[1] != H * W:
            raise ValueError(f"background must be (n_bg, {H * W}), got {background.shape}")
        self.shape = (H, W)
        self.n_components = K
        A = sp.csr_matrix(footprints.reshape(K, H * W).astype(np.float32))
        B = background.astype(np.float32)
        self._A = A
        self._B = B
        self._baseline = baseline.reshape(-1).astype(np.float32)
        AB = (A @ B.T).astype(np.float64)  # (K, n_bg)
        AA = (A @ A.T).toarray().astype(np.float64)
        BB = (B @ B.T).astype(np.float64)
        self._G = np.block([[AA, AB], [AB.T, BB]])
        self._nonneg = np.r_[np.ones(K, bool), np.zeros(B.shape[0], bool)]
        self._c = np.zeros(K + B.shape[0], dtype=np.float32)
        self.n_sweeps = n_sweeps

    def step(self, frame: np.ndarray) -> np.ndarray:
        """frame: (H, W) -> float32 (K,) traces (in units of footprint-weighted intensity)."""
        y = frame.reshape(-1).astype(np.float32) - self._baseline
        b = np.concatenate([self._A @ y, self._B @ y]).astype(np.float64)
        self._c = hals(self._G, b, self._c, self._nonneg, self.n_sweeps)
        return self._c[: self.n_components].copy()

    @property
    def background_weights(self) -> np.ndarray:
        return self._c[self.n_components :].copy()
