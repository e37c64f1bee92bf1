"""The online NMF stepper: one registered frame in, every component's trace out.

Per frame t (OnACID, Giovannucci et al. 2017; CNMF model of Pnevmatikakis et
al. 2016), with y_t the registered frame minus the static baseline image:

1. traces and background weights: min || y_t - A^T c - B^T f ||^2, c >= 0,
   by warm-started HALS on the joint Gram matrix (``rtcal.nmf.hals``);
2. sufficient statistics W, M updated with (y_t, c_t) (``rtcal.nmf.shapes``);
3. up to ``refine_per_frame`` footprints refined by HALS on W, M, round
   robin over the components whose traces carry enough energy for one
   refinement to be precise (``rtcal.nmf.refine_schedule``: a cell seen only at
   rest keeps the detector's footprint instead of a speckle fitted to noise);
4. the residual y_t - A^T c - B^T f pushed into the residual buffer (zero on
   the border rows and columns the registration invented by replicating the
   frame's edge: under a sustained drift they held steady "transients" that the
   search took for cells, 10 of 25 false positives on a simulated 256 x 256
   movie); every ``search_every`` frames a search round starts there and
   extracts one candidate per frame (``rtcal.nmf.residual.SearchRound``); an
   accepted one is added at once, with its statistics from the buffer;
5. a share of the components checked for merging and retiring (``rtcal.nmf.curation``).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp

from rtcal.buffer.summary import temporal_median
from rtcal.detect.soma import SomaGate
from rtcal.errors import RtcalError
from rtcal.nmf.background import (
    centre_and_project,
    cosine_basis,
    cosine_factors,
    model_residual,
)
from rtcal.nmf.curation import (
    SILENT_SD,
    Action,
    Curator,
    footprint_centre,
    merged_footprint,
    pixel_noise,
)
from rtcal.nmf.footprints import FootprintSet
from rtcal.nmf.hals import hals, unclipped_offset
from rtcal.nmf.refine_schedule import RefineSchedule
from rtcal.nmf.residual import (
    RejectedPeaks,
    ResidualBuffer,
    SearchRound,
    SpaceTest,
    bin_and_smooth,
    clear_border,
    covered_core,
    filtered_noise,
    search_decay,
)
from rtcal.nmf.ring import RingConfig, RingModel
from rtcal.nmf.ring_fit import fit_ring_model
from rtcal.nmf.shapes import (
    background_rows,
    extend_overlaps,
    new_rows_overlap,
    overlap_lists,
    refine_footprints,
    update_stats,
)

NO_BORDER = (0, 0, 0, 0)


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
    refined per frame; refine_max_noise: a footprint is refined only once its
    trace's energy makes one refinement's pixel noise at most this fraction of
    the footprint's RMS (``rtcal.nmf.refine_schedule``; inf: refine from the
    start); forget: per-frame decay of the statistics (1 = none);
    residual_s: length of the residual buffer in seconds; search_tau_s: time
    constant of the exponential filter the search applies to the smoothed
    residual before looking for peaks (a matched filter for calcium transients,
    ``rtcal.nmf.residual.ResidualBuffer``; 0: none); search_every: frames
    between searches for new components; new_min_pnr, new_min_space_corr:
    acceptance thresholds of a new component; new_local_background: fit a
    candidate's footprint with its patch's background trace as a second
    regressor instead of by rank-1 factorisation (``rtcal.nmf.residual._extract``;
    on 8 development 2p movies: mean F1 0.754 -> 0.768 with the space threshold
    kept at 0.9, 0.780 / 0.777 / 0.769 at 0.85 / 0.875 / 0.8, 0.719 at 0.85
    without it; mode "1p" keeps rank-1: 0.856 -> 0.845 on four 1p movies);
    new_large_area_frac, new_large_min_space_corr: a new component whose mask
    covers at least new_large_area_frac x pi radius_px^2 pixels passes the
    space correlation test at new_large_min_space_corr
    (``rtcal.nmf.residual.SpaceTest``). Off by default (inf): at 1.1 and 0.75,
    mean F1 on six development 2p movies 0.777 -> 0.805 and on the five
    held-out ones 0.774 -> 0.788, but the real Neurofinder crop 0.254 -> 0.216
    (11 more false positives; 0.225 at 1.3 and 1.5); no change on four
    development 1p movies at 1.1 and 0.7;
    max_new_per_search: cap per search;
    max_tries_per_search: candidates extracted per search at most (each costs
    ~0.4 ms, one per frame; a peak left over stays in the buffer for the next).
    Merging and retiring (``rtcal.nmf.curation``): every component is examined
    once per merge_every frames, spread over them (0: never merge or retire);
    duplicates have footprint overlap (cosine) >= merge_min_overlap, trace
    correlation over the last merge_window_s >= merge_min_corr and centres at
    most merge_max_distance radii apart (inf: no limit); a component is
    retired when its trace stays silent for retire_silent_s (0: never) or its
    footprint shrinks below retire_min_area_frac x pi radius_px^2 pixels.
    The soma gate (``rtcal.detect.soma``): a new component's mask must cover
    soma_min_area_frac to soma_max_area_frac x pi radius_px^2 pixels with
    principal axes no more than soma_max_elongation apart, and a component
    whose refined footprint leaves the gate is retired (inf: keep elongated
    sources such as dendrites). The area floor of a new component (0.75) is
    above the seed detector's (0.5): the smallest of 360 simulated somata
    covers 0.79 pi r^2, and the residual's weak, filtered transients otherwise
    let blobs on neurite crossings in (28-105 px at r = 6 on the development
    movies, against >= 100 px for every cell found there).
    """

    radius_px: float = 6.0
    background: str = "lowrank"
    n_sweeps: int = 3
    n_background: int = 3
    support_margin_px: int = 2
    refine_per_frame: int = 8
    refine_max_noise: float = 0.3
    forget: float = 1.0
    residual_s: float = 2.0
    search_tau_s: float = 0.5
    search_every: int = 10
    new_min_pnr: float = 7.0
    new_min_space_corr: float = 0.875
    new_large_area_frac: float = np.inf
    new_large_min_space_corr: float = 0.75
    new_local_background: bool = True
    max_new_per_search: int = 2
    max_tries_per_search: int = 4
    merge_every: int = 100
    merge_min_overlap: float = 0.5
    merge_min_corr: float = 0.85
    merge_max_distance: float = 1.25
    merge_window_s: float = 10.0
    retire_silent_s: float = 120.0
    retire_min_area_frac: float = 0.1
    soma_min_area_frac: float = 0.75
    soma_max_area_frac: float = 3.0
    soma_max_elongation: float = 2.0

    def __post_init__(self) -> None:
        checks = {
            "radius_px": 1 <= self.radius_px <= 100,
            "background": self.background in ("lowrank", "ring"),
            "n_sweeps": self.n_sweeps >= 1,
            "n_background": self.n_background >= 1,
            "support_margin_px": 0 <= self.support_margin_px <= 20,
            "refine_per_frame": self.refine_per_frame >= 0,
            "refine_max_noise": self.refine_max_noise > 0,
            "forget": 0.9 <= self.forget <= 1.0,
            "residual_s": self.residual_s > 0,
            "search_tau_s": self.search_tau_s >= 0,
            "search_every": self.search_every >= 1,
            "new_min_pnr": self.new_min_pnr > 0,
            "new_min_space_corr": -1 < self.new_min_space_corr < 1,
            "new_large_area_frac": self.new_large_area_frac > 0,
            "new_large_min_space_corr": -1 < self.new_large_min_space_corr < 1,
            "max_new_per_search": self.max_new_per_search >= 0,
            "max_tries_per_search": self.max_tries_per_search >= 0,
            "merge_every": self.merge_every >= 0,
            "merge_min_overlap": 0 < self.merge_min_overlap <= 1,
            "merge_min_corr": -1 < self.merge_min_corr <= 1,
            "merge_max_distance": self.merge_max_distance > 0,
            "merge_window_s": self.merge_window_s > 0,
            "retire_silent_s": self.retire_silent_s >= 0,
            "retire_min_area_frac": 0 <= self.retire_min_area_frac < 1,
            "soma_min_area_frac": 0 <= self.soma_min_area_frac < self.soma_max_area_frac,
            "soma_max_elongation": self.soma_max_elongation >= 1,
        }
        for name, ok in checks.items():
            if not ok:
                raise OnlineNMFConfigError(
                    f"OnlineNMFConfig.{name}={getattr(self, name)!r} is out of range"
                )

    @property
    def gate(self) -> SomaGate:
        return SomaGate(
            self.radius_px, self.soma_min_area_frac, self.soma_max_area_frac,
            self.soma_max_elongation,
        )


@dataclass(frozen=True)
class NMFStep:
    """traces: float32 (K,) raw traces of all components after this frame;
    added: int64 (n,) indices of components added at this frame; added_traces:
    float32 (n, L) their traces over the residual buffer (oldest first), from
    which their kinetics can be estimated; retired: bool (K,) components merged
    away or retired (their traces are 0 from the frame they retire on; None:
    this stepper never retires); noisy: float32 (K,) the unconstrained traces
    (``rtcal.nmf.hals.unclipped_offset``: traces plus each component's offset
    from its unconstrained least-squares value; the offset is 0 for components
    added or merged at this frame), what deconvolution and dF/F take (None:
    the same as traces)."""

    traces: np.ndarray
    added: np.ndarray
    added_traces: np.ndarray
    retired: np.ndarray | None = None
    noisy: np.ndarray | None = None


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
            self._U, self._V = np.zeros((0, H), np.float32), np.zeros((0, W), np.float32)
        else:
            self.baseline = temporal_median(init_frames).reshape(-1).astype(np.float32)
            self.B = cosine_basis(H, W, config.n_background)
            # its factors: what the frame loop uses (rtcal.nmf.background)
            self._U, self._V = cosine_factors(H, W, config.n_background)
        self._y = np.zeros((H, W), np.float32)
        self._bg_proj = np.zeros(self.B.shape[0])
        # fixed with B: reused by every _rebuild (a component added at 512 x 512
        # recomputed them, ~10 ms of each addition's stall in the live engine)
        self._BT = np.ascontiguousarray(self.B.T)  # (P, nb) float32
        B64 = self.B.astype(np.float64)
        self._BBT = B64 @ B64.T
        self.buffer = ResidualBuffer(
            max(5, int(round(config.residual_s * fps_hz))), H, W, block=config.search_every,
            decay=search_decay(config.search_tau_s, fps_hz),
        )
        self.rejected = RejectedPeaks((H // 2, W // 2), lifetime=self.buffer.length)
        self.search = SearchRound(
            radius_px=config.radius_px, min_pnr=config.new_min_pnr,
            min_space_corr=SpaceTest(
                config.new_min_space_corr,
                config.new_large_area_frac * np.pi * config.radius_px**2,
                config.new_large_min_space_corr,
            ),
            max_new=config.max_new_per_search,
            gate=config.gate, rejected=self.rejected, max_tries=config.max_tries_per_search,
            local_background=config.new_local_background,
        )
        self.n_frames = 0
        self._rebuild()
        K = self.A.n_components
        self.schedule = RefineSchedule(
            pixel_noise(init_frames[-min(T0, 100) :]), config.refine_max_noise,
            config.refine_per_frame,
        )
        self.schedule.add(np.diff(self.A.csr.indptr), np.diagonal(self._G)[:K], np.zeros(K))
        self._c = np.zeros(self.A.n_components + self.B.shape[0], np.float32)
        self._w = np.zeros(self.A.csr.nnz)
        self._M = np.zeros((self.A.n_components,) * 2)
        self._scratch = np.zeros(H * W)
        self._offset = np.zeros(K, np.float32)
        residual_small, traces, noisy = [], [], []
        tmp = np.zeros((H // 2, W // 2), np.float32)
        for frame in init_frames:
            step_residual = self._fit_frame(frame)
            traces.append(self._c[: self.A.n_components].copy())
            noisy.append(traces[-1] + self._offset)
            small = np.zeros_like(tmp)
            bin_and_smooth(step_residual.reshape(H, W), tmp, small)
            residual_small.append(small)
        self.init_traces = np.stack(traces, axis=1) if traces else np.zeros((len(footprints), 0))
        # the unconstrained traces of the same frames (NMFStep.noisy): kinetics, noise
        self.init_noisy = np.stack(noisy, axis=1) if noisy else self.init_traces.copy()
        # Noise of the search statistic (the smoothed, filtered residual)
        self.noise_small = filtered_noise(np.stack(residual_small), self.buffer.decay)
        noise_px = pixel_noise(self.buffer.raw[: min(self.buffer.n_seen, self.buffer.length)])
        self.curator = Curator(config, fps_hz, self.init_traces, noise_px, self.n_frames, width=W)
        self.merges: list[Action] = []  # every merge and retirement, in order

    # ----------------------------------------------------------------- state
    def _rebuild(self) -> None:
        """Recompute everything derived from the footprint set's structure."""
        csr = self.A.csr
        self._ov = overlap_lists(csr)
        K, nb = self.A.n_components, self.B.shape[0]
        G = np.zeros((K + nb, K + nb))
        G[:K, :K] = self.A.gram()
        AB = (csr @ self._BT).astype(np.float64)
        G[:K, K:] = AB
        G[K:, :K] = AB.T
        G[K:, K:] = self._BBT
        self._G = G
        self._nonneg = np.r_[np.ones(K, bool), np.zeros(nb, bool)]

    def _extend(self, K_old: int) -> None:
        """As :meth:`_rebuild` after rows K_old.. were appended and nothing else
        changed: only the new rows' Gram entries, background products and
        overlaps are computed, by one pass of :func:`new_rows_overlap` per new
        row (the whole rebuild took ~3 ms of every addition at 512 x 512 / 300
        neurons). Agrees with :meth:`_rebuild` (tested)."""
        csr = self.A.csr
        K, nb = self.A.n_components, self.B.shape[0]
        mark = np.zeros(csr.shape[1], bool)
        cross, touch = new_rows_overlap(
            csr.indptr, csr.indices, csr.data, K_old, self._scratch, mark
        )
        old = self._G
        G = np.zeros((K + nb, K + nb))
        G[:K_old, :K_old] = old[:K_old, :K_old]
        G[:K_old, K:] = old[:K_old, K_old:]
        G[K:, :K_old] = old[K_old:, :K_old]
        G[K:, K:] = old[K_old:, K_old:]
        G[:K, K_old:K] = cross
        G[K_old:K, :K] = cross.T
        AB = (csr[K_old:] @ self._BT).astype(np.float64)
        G[K_old:K, K:] = AB
        G[K:, K_old:K] = AB.T
        self._G = G
        self._nonneg = np.r_[np.ones(K, bool), np.zeros(nb, bool)]
        self._ov = extend_overlaps(*self._ov, touch, K_old)

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
    def _fit_frame(self, frame: np.ndarray, border: tuple[int, int, int, int] = NO_BORDER
                   ) -> np.ndarray:
        """Traces for one frame, statistics updated; returns the flat residual
        (zero on the ``border`` the registration invented)."""
        K = self.A.n_components
        H, W = self.shape
        if self.ring is None:  # y = frame - b0 and its background projection, one pass
            centre_and_project(frame.reshape(H, W), self.baseline.reshape(H, W), self._U,
                               self._V, self._y, self._bg_proj)
            y = self._y.reshape(-1)
        else:  # b_t from this frame minus the last frame's cells (one alternation)
            y = frame.reshape(-1).astype(np.float32)
            y -= self.ring.background_flat(y - self.A.csr.T @ self._c[:K])
        b = np.concatenate([self.A.project(y), self._bg_proj])
        self._c = hals(self._G, b, self._c, self._nonneg, self.config.n_sweeps)
        self._offset = unclipped_offset(self._G, b, self._c, K, *self._ov)
        c = self._c[:K]
        update_stats(
            self.A.csr.indptr, self.A.csr.indices, self._w, self._M, y, c, self.config.forget
        )
        self._refine()
        self.schedule.observe(c, self.config.forget)
        csr = self.A.csr
        residual = self.buffer.slot()  # written in place: no copy into the ring
        model_residual(y.reshape(H, W), self._U, self._V, self._c[K:], csr.indptr,
                       csr.indices, csr.data, c, residual)
        if any(border):
            clear_border(residual, border)
        self.buffer.push(residual)
        self.n_frames += 1
        return residual.reshape(-1)

    def _refine(self) -> None:
        K = self.A.n_components
        order = self.schedule.next_order()
        if K == 0 or order.size == 0:
            return
        csr = self.A.csr
        refine_footprints(  # writes only the footprint block G[:K, :K] of the joint G
            csr.indptr,
            csr.indices,
            csr.data,
            self._w,
            self._M,
            self._G,
            *self._ov,
            order,
            1e-3,
            self._scratch,
        )
        background_rows(csr.indptr, csr.indices, csr.data, self._BT, order, self._G, K)

    def step(self, frame: np.ndarray, border: tuple[int, int, int, int] = NO_BORDER) -> NMFStep:
        """frame: registered (H, W); border: (top, bottom, left, right) rows and
        columns whose pixels the registration invented (``MotionStep.invented_border``),
        kept out of the residual search -> NMFStep."""
        self._fit_frame(frame, border)
        self._curate()
        added, added_traces = self._search()
        K = self.A.n_components
        c = self._c[:K].copy()
        return NMFStep(c, added, added_traces, self.curator.retired.copy(), c + self._offset)

    # -------------------------------------------------------- new components
    def _search(self) -> tuple[np.ndarray, np.ndarray]:
        """This frame's share of the residual search (``SearchRound``): a new round
        every search_every frames, then one extraction per frame on the frames
        after it; an accepted candidate is added at once."""
        found = self.search.frame(
            self.n_frames, self.config.search_every, self.buffer, self.noise_small,
            lambda: covered_core(self.A.csr, self.shape),
        )
        if found is None:
            return np.zeros(0, np.int64), np.zeros((0, self.buffer.length), np.float32)
        traces = found.trace[None]
        return self._add([found.footprint], traces), traces

    def add_components(self, footprints: np.ndarray, traces: np.ndarray) -> np.ndarray:
        """Append components found elsewhere (a detector re-run); int64 (n,) their indices.

        footprints: float32 (n, H, W); traces: float32 (n, L) their traces over the
        residual buffer, oldest first (L = frames it holds), which seed their
        statistics W and M exactly as for components found by the residual search.
        """
        n_held = min(self.buffer.n_seen, self.buffer.length)
        if footprints.shape[1:] != self.shape or traces.shape != (len(footprints), n_held):
            raise OnlineNMFConfigError(
                f"add_components: footprints {footprints.shape} and traces {traces.shape} "
                f"do not fit frames {self.shape} and a residual buffer of {n_held} frames"
            )
        if not len(footprints):
            return np.zeros(0, np.int64)
        return self._add(list(footprints), np.asarray(traces, np.float32))

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
        self._offset = np.r_[self._offset[:K_old], np.zeros(n, np.float32)]
        self._extend(K_old)
        self.schedule.add(
            np.diff(csr.indptr[K_old:]), np.diagonal(self._G)[K_old : K_old + n],
            np.diagonal(M)[K_old:],
        )
        self.curator.add(traces, self.n_frames)
        for k in new if self.config.merge_every else ():  # 0: never merge
            twin = self.curator.twin_of(k, self._G, self._partners(k), self.A.born_frame)
            if twin is not None:
                self._apply(twin)
        return new

    # -------------------------------------------------- merging and retiring
    def _curate(self) -> None:
        """This frame's share of the merge / retire checks (``rtcal.nmf.curation``)."""
        K = self.A.n_components
        norm = np.sqrt(np.maximum(np.diagonal(self._G)[:K], 1e-12))
        self.curator.observe(self.n_frames, self._c[:K], SILENT_SD * self.curator.noise_px / norm)
        for i in self.curator.due(self.n_frames):
            if self.curator.retired[i]:  # merged away earlier in this frame
                continue
            csr = self.A.csr  # a merge replaces it
            support = slice(csr.indptr[i], csr.indptr[i + 1])
            action = self.curator.check(
                i, self.n_frames, self._G, self._partners(i), self.A.born_frame,
                csr.data[support], csr.indices[support], self._centre,
            )
            if action is not None:
                self._apply(action)

    def _apply(self, action: Action) -> None:
        """Carry out a merge or a retirement, and record it in ``merges``."""
        if action.kind == "merge":
            self._merge(action.keep, action.gone)
        else:
            self._zero(action.gone)
            self.curator.retire(action.gone)
        self.merges.append(action)

    def _centre(self, k: int) -> tuple[float, float]:
        """(row, col) centroid of component k's footprint."""
        csr = self.A.csr
        lo, hi = csr.indptr[k], csr.indptr[k + 1]
        return footprint_centre(csr.indices[lo:hi], csr.data[lo:hi], self.shape[1])

    def _partners(self, k: int) -> np.ndarray:
        """Components whose supports overlap k's (k included)."""
        ov_ptr, ov_idx = self._ov
        return ov_idx[ov_ptr[k] : ov_ptr[k + 1]]

    def _merge(self, keep: int, gone: int) -> None:
        """Merge component ``gone`` into ``keep`` (:func:`merged_footprint`), on the
        union of their supports: footprint, statistics (W, M), current trace and
        history become the projection of both onto the merged footprint; ``gone``
        is zeroed. W off a component's support (never tracked) is taken as the
        model's value there, (A^T M)_k."""
        csr, M = self.A.csr, self._M
        rows = {k: slice(csr.indptr[k], csr.indptr[k + 1]) for k in (keep, gone)}
        idx = np.union1d(csr.indices[rows[keep]], csr.indices[rows[gone]])
        model_w = np.asarray(csr[:, idx].T @ M[:, [keep, gone]])  # (p, 2)
        a, w = {}, {}
        for j, k in enumerate((keep, gone)):
            at = np.searchsorted(idx, csr.indices[rows[k]])
            a[k] = np.zeros(idx.size)
            a[k][at] = csr.data[rows[k]]
            w[k] = model_w[:, j].copy()
            w[k][at] = self._w[rows[k]]
        weights = self.curator.activity(keep, gone, self.n_frames)
        merged, alpha, beta = merged_footprint(a[keep], a[gone], *weights)
        M[keep, :] = alpha * M[keep, :] + beta * M[gone, :]
        M[:, keep] = alpha * M[:, keep] + beta * M[:, gone]
        self._c[keep] = alpha * self._c[keep] + beta * self._c[gone]
        self._clear_offset(keep)
        self._zero(gone)
        self._set_row(keep, idx, merged, alpha * w[keep] + beta * w[gone])
        self.schedule.reset(keep, idx.size, self._G[keep, keep], M[keep, keep])
        self.curator.combine(keep, gone, alpha, beta)

    def _set_row(self, k: int, idx: np.ndarray, values: np.ndarray, w: np.ndarray) -> None:
        """Give component k the support idx (sorted pixels) with footprint values and
        statistics w there; everything derived from the structure is rebuilt."""
        csr = self.A.csr
        lo, hi = csr.indptr[k], csr.indptr[k + 1]
        indptr = csr.indptr.copy()
        indptr[k + 1 :] += idx.size - (hi - lo)
        data = np.concatenate([csr.data[:lo], values.astype(np.float32), csr.data[hi:]])
        indices = np.concatenate(
            [csr.indices[:lo], idx.astype(csr.indices.dtype), csr.indices[hi:]]
        )
        self.A.csr = sp.csr_matrix((data, indices, indptr), shape=csr.shape)
        self.A.csr.has_sorted_indices = True
        self._w = np.concatenate([self._w[:lo], w, self._w[hi:]])
        self._rebuild()

    def _clear_offset(self, k: int) -> None:
        """No unconstrained offset for component k at this frame (merged or zeroed;
        a device stepper's host twin applies merges without fitting frames, and
        its offsets may be shorter)."""
        if k < len(self._offset):
            self._offset[k] = 0.0

    def _zero(self, k: int) -> None:
        """Take component k out of the fit: zero footprint, statistics and trace."""
        csr = self.A.csr
        lo, hi = csr.indptr[k], csr.indptr[k + 1]
        csr.data[lo:hi] = 0.0
        self._w[lo:hi] = 0.0
        self._M[k, :] = 0.0
        self._M[:, k] = 0.0
        self._c[k] = 0.0
        self._clear_offset(k)
        self._G[k, :] = 0.0
        self._G[:, k] = 0.0
        self.schedule.retire(k)
