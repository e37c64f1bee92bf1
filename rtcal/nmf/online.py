"""The online NMF stepper: one registered frame in, every component's trace out.

Per frame t (OnACID, Giovannucci et al. 2017; CNMF model of Pnevmatikakis et
al. 2016), with y_t the registered frame minus the static baseline image:

1. traces and background weights: min || y_t - A^T c - B^T f ||^2, c >= 0,
   by warm-started HALS on the joint Gram matrix (``rtcal.nmf.hals``);
2. sufficient statistics W, M updated with (y_t, c_t) (``rtcal.nmf.shapes``);
3. ``refine_per_frame`` footprints refined by HALS on W, M, round robin, so
   that no frame pays for all components;
4. the residual y_t - A^T c - B^T f pushed into the residual buffer, and every
   ``search_every`` frames new components are looked for there
   (``rtcal.nmf.residual``) and added with their statistics from the buffer.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from rtcal.buffer.summary import temporal_median
from rtcal.errors import RtcalError
from rtcal.nmf.background import cosine_basis, project, subtract_combination
from rtcal.nmf.footprints import FootprintSet
from rtcal.nmf.hals import hals
from rtcal.nmf.residual import ResidualBuffer, bin_and_smooth, find_candidates
from rtcal.nmf.ring import RingConfig, RingModel
from rtcal.nmf.ring_fit import fit_ring_model
from rtcal.nmf.shapes import overlap_lists, refine_footprints, update_stats


class OnlineNMFConfigError(RtcalError):
    pass


@dataclass(frozen=True)
class OnlineNMFConfig:
    """Settings of the online NMF.

    radius_px: soma radius; background: "lowrank" (2p: static baseline image
    plus n_background x n_background smooth cosine functions solved with the
    traces) or "ring" (1p: the CNMF-E ring model, ``rtcal.nmf.ring``, fitted on
    the initialisation frames); n_sweeps: trace HALS sweeps per frame;
    support_margin_px: how far a
    footprint may grow beyond its first shape; refine_per_frame: footprints
    refined per frame; forget: per-frame decay of the statistics (1 = none);
    residual_s: length of the residual buffer in seconds; search_every: frames
    between searches for new components; new_min_pnr, new_min_space_corr:
    acceptance thresholds of a new component; max_new_per_search: cap per search.
    """

    radius_px: float = 6.0
    background: str = "lowrank"
    n_sweeps: int = 3
    n_background: int = 3
    support_margin_px: int = 2
    refine_per_frame: int = 8
    forget: float = 1.0
    residual_s: float = 2.0
    search_every: int = 10
    new_min_pnr: float = 7.0
    new_min_space_corr: float = 0.75
    max_new_per_search: int = 2

    def __post_init__(self) -> None:
        checks = {
            "radius_px": 1 <= self.radius_px <= 100,
            "background": self.background in ("lowrank", "ring"),
            "n_sweeps": self.n_sweeps >= 1,
            "n_background": self.n_background >= 1,
            "support_margin_px": 0 <= self.support_margin_px <= 20,
            "refine_per_frame": self.refine_per_frame >= 0,
            "forget": 0.9 <= self.forget <= 1.0,
            "residual_s": self.residual_s > 0,
            "search_every": self.search_every >= 1,
            "new_min_pnr": self.new_min_pnr > 0,
            "new_min_space_corr": -1 < self.new_min_space_corr < 1,
            "max_new_per_search": self.max_new_per_search >= 0,
        }
        for name, ok in checks.items():
            if not ok:
                raise OnlineNMFConfigError(
                    f"OnlineNMFConfig.{name}={getattr(self, name)!r} is out of range"
                )


@dataclass(frozen=True)
class NMFStep:
    """traces: float32 (K,) raw traces of all components after this frame;
    added: int64 (n,) indices of components added at this frame; added_traces:
    float32 (n, L) their traces over the residual buffer (oldest first), from
    which their kinetics can be estimated."""

    traces: np.ndarray
    added: np.ndarray
    added_traces: np.ndarray


class OnlineNMF:
    def __init__(
        self,
        config: OnlineNMFConfig,
        fps_hz: float,
        footprints: np.ndarray,
        init_frames: np.ndarray,
    ) -> None:
        """footprints: float32 (K, H, W) from the detector; init_frames: float32 (T0, H, W)
        registered frames the detector saw. They give the baseline image, and are
        fitted in order to seed the statistics, the residual buffer and its noise
        level; their traces are kept in ``init_traces`` (K, T0)."""
        self.config = config
        T0, H, W = init_frames.shape
        self.shape = (H, W)
        self.A = FootprintSet(H, W)
        self.A.add(footprints, born_frame=0, margin_px=config.support_margin_px)
        self.ring: RingModel | None = None
        if config.background == "ring":
            # Fitted with zero traces: a first pass's trace errors follow the
            # background and the ring would learn them back (see rtcal.nmf.ring).
            zeros = np.zeros((len(footprints), T0), np.float32)
            ring_config = RingConfig.from_neuron_radius(config.radius_px)
            self.ring = fit_ring_model(init_frames, footprints, zeros, ring_config)
            self.baseline = self.ring.b0.reshape(-1).copy()
            self.B = np.zeros((0, H * W), np.float32)
        else:
            self.baseline = temporal_median(init_frames).reshape(-1)
            self.B = cosine_basis(H, W, config.n_background)
        self._bg_proj = np.zeros(self.B.shape[0])
        self._residual = np.zeros(H * W, np.float32)
        self.buffer = ResidualBuffer(max(5, int(round(config.residual_s * fps_hz))), H, W)
        self.n_frames = 0
        self._next_refine = 0
        self._rebuild()
        self._c = np.zeros(self.A.n_components + self.B.shape[0], np.float32)
        self._w = np.zeros(self.A.csr.nnz)
        self._M = np.zeros((self.A.n_components,) * 2)
        self._scratch = np.zeros(H * W)
        residual_small, traces = [], []
        tmp = np.zeros((H // 2, W // 2), np.float32)
        for frame in init_frames:
            step_residual = self._fit_frame(frame)
            traces.append(self._c[: self.A.n_components].copy())
            small = np.zeros_like(tmp)
            bin_and_smooth(step_residual.reshape(H, W), tmp, small)
            residual_small.append(small)
        self.init_traces = np.stack(traces, axis=1) if traces else np.zeros((len(footprints), 0))
        small = np.stack(residual_small)
        # Noise of the smoothed residual: robust, from temporal first differences.
        diff = np.abs(np.diff(small, axis=0))
        self.noise_small = np.maximum(np.median(diff, axis=0) / (0.6745 * np.sqrt(2)), 1e-6)

    # ----------------------------------------------------------------- state
    def _rebuild(self) -> None:
        """Recompute everything derived from the footprint set's structure."""
        csr = self.A.csr
        self._ov = overlap_lists(csr)
        K, nb = self.A.n_components, self.B.shape[0]
        G = np.zeros((K + nb, K + nb))
        G[:K, :K] = self.A.gram()
        AB = (csr @ self.B.T).astype(np.float64)
        G[:K, K:] = AB
        G[K:, :K] = AB.T
        G[K:, K:] = self.B.astype(np.float64) @ self.B.T
        self._G = G
        self._nonneg = np.r_[np.ones(K, bool), np.zeros(nb, bool)]

    @property
    def n_components(self) -> int:
        return self.A.n_components

    def resting_level(self, index: np.ndarray) -> np.ndarray:
        """Baseline-image fluorescence under footprints ``index``, in trace units:
        (a_k . baseline) / (a_k . a_k), float64 (n,). The denominator of dF/F."""
        index = np.asarray(index, np.int64)
        rows = self.A.csr[index]
        norm = np.asarray(rows.multiply(rows).sum(axis=1)).ravel()
        return (rows @ self.baseline) / np.maximum(norm, 1e-12)

    # ------------------------------------------------------------- per frame
    def _fit_frame(self, frame: np.ndarray) -> np.ndarray:
        """Traces for one frame, statistics updated; returns the flat residual."""
        K = self.A.n_components
        y = frame.reshape(-1).astype(np.float32)
        if self.ring is None:
            y -= self.baseline
        else:  # b_t from this frame minus the last frame's cells (one alternation)
            y -= self.ring.background_flat(y - self.A.csr.T @ self._c[:K])
        b = np.concatenate([self.A.project(y), project(self.B, y, self._bg_proj)])
        self._c = hals(self._G, b, self._c, self._nonneg, self.config.n_sweeps)
        c = self._c[:K]
        update_stats(
            self.A.csr.indptr, self.A.csr.indices, self._w, self._M, y, c, self.config.forget
        )
        self._refine()
        residual = subtract_combination(y, self.B, self._c[K:], self._residual)
        residual -= self.A.csr.T @ c
        self.buffer.push(residual)
        self.n_frames += 1
        return residual

    def _refine(self) -> None:
        K, n = self.A.n_components, self.config.refine_per_frame
        if K == 0 or n == 0:
            return
        order = (self._next_refine + np.arange(min(n, K))) % K
        self._next_refine = int((order[-1] + 1) % K)
        csr = self.A.csr
        GA = np.ascontiguousarray(self._G[:K, :K])
        refine_footprints(
            csr.indptr,
            csr.indices,
            csr.data,
            self._w,
            self._M,
            GA,
            *self._ov,
            order,
            1e-3,
            self._scratch,
        )
        self._G[:K, :K] = GA
        for k in order:
            lo, hi = csr.indptr[k], csr.indptr[k + 1]
            ab = self.B[:, csr.indices[lo:hi]] @ csr.data[lo:hi].astype(np.float64)
            self._G[k, K:] = ab
            self._G[K:, k] = ab

    def step(self, frame: np.ndarray) -> NMFStep:
        """frame: registered (H, W) -> NMFStep."""
        self._fit_frame(frame)
        added, added_traces = np.zeros(0, np.int64), np.zeros((0, self.buffer.length), np.float32)
        if self.n_frames % self.config.search_every == 0 and self.config.max_new_per_search:
            added, added_traces = self._search()
        return NMFStep(self._c[: self.A.n_components].copy(), added, added_traces)

    # -------------------------------------------------------- new components
    def _covered(self) -> np.ndarray:
        csr = self.A.csr
        core = np.zeros(csr.shape[1], bool)
        rows = np.repeat(np.arange(csr.shape[0]), np.diff(csr.indptr))
        peak = np.zeros(csr.shape[0], np.float32)
        np.maximum.at(peak, rows, csr.data)
        core[csr.indices[csr.data >= 0.3 * peak[rows]]] = True
        return core.reshape(self.shape)

    def _search(self) -> tuple[np.ndarray, np.ndarray]:
        c = self.config
        found = find_candidates(
            self.buffer,
            self.noise_small,
            self._covered(),
            radius_px=c.radius_px,
            min_pnr=c.new_min_pnr,
            min_space_corr=c.new_min_space_corr,
            max_new=c.max_new_per_search,
        )
        if not found:
            return np.zeros(0, np.int64), np.zeros((0, self.buffer.length), np.float32)
        traces = np.stack([f.trace for f in found])
        return self._add([f.footprint for f in found], traces), traces

    def _add(self, footprints: list[np.ndarray], traces: np.ndarray) -> np.ndarray:
        """Append components whose traces over the residual buffer are ``traces`` (n, L)."""
        K_old = self.A.n_components
        old_nnz = self.A.csr.nnz
        new = self.A.add(
            np.stack(footprints), born_frame=self.n_frames, margin_px=self.config.support_margin_px
        )
        n = len(new)
        # Statistics of the new components from the buffer: W = R^T c_new, M = c_new c_new^T.
        csr = self.A.csr
        w_new = []
        for i, k in enumerate(new):
            idx = csr.indices[csr.indptr[k] : csr.indptr[k + 1]]
            w_new.append(self.buffer.pixels(idx).T @ traces[i].astype(np.float64))
        self._w = np.concatenate([self._w[:old_nnz], *w_new])
        M = np.zeros((K_old + n, K_old + n))
        M[:K_old, :K_old] = self._M
        M[K_old:, K_old:] = traces.astype(np.float64) @ traces.T.astype(np.float64)
        self._M = M
        self._c = np.concatenate([self._c[:K_old], traces[:, -1], self._c[K_old:]]).astype(
            np.float32
        )
        self._rebuild()
        return new
