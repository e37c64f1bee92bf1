"""The online NMF stepper on a backend: OnlineNMF.step with all state on the device.

Built from an initialised :class:`rtcal.nmf.online.OnlineNMF` (footprints,
baseline, background basis, statistics W and M, Gram matrix, traces, residual
buffer), :class:`DeviceNMF` continues it frame by frame with the same maths
(see the module docstring of :mod:`rtcal.nmf.online`), on the backend's arrays:

1. y = frame - baseline; b = [A y, B y]                (xp_footprints, xp_background)
2. traces and background weights by level-scheduled HALS   (xp_hals)
3. W, M updated; up to ``refine_per_frame`` footprints refined, round robin over
   those whose traces carry enough energy (xp_shapes; the order from the same
   host-side ``rtcal.nmf.refine_schedule`` as OnlineNMF's, fed the downloaded traces)
4. residual y - B^T f - A^T c and its smoothed copy into the device ring buffer
   (xp_residual)

Per frame, the only transfers are the frame up and the (K,) traces down (and,
with the fused kernels, the few refinement indices up, -1 marking an empty
slot of the fixed-size block). Every ``search_every`` frames a new-component
search round starts on the host, as in OnlineNMF, on what it needs of the
residual buffer (its temporal maximum, downloaded once; then one candidate
patch per frame), and footprints are synced to the host. Adding components rebuilds the device
structures from the host FootprintSet (milliseconds, on the frames that add; the
Gram matrix only grows by the new rows, :func:`grown_gram`).

``fused`` (CuPy only) swaps the trace HALS, the refinement block and the two
sparse products for the single-launch kernels of :mod:`rtcal.backend.cuda`;
``use_graph`` then captures steps 1-4 as one CUDA graph after a first eager
frame (and again after each change of the component set). Only the 2p
low-rank background is ported; the 1p ring model stays on the CPU path.

Merging and retiring (``rtcal.nmf.curation``) run as on the CPU: the curator
sees the downloaded traces and, per frame, the few Gram entries and the one
footprint it examines (small downloads); when it decides, the state comes to
a host twin (an OnlineNMF), whose own ``_merge`` / ``_zero`` apply the action,
and the device structures are rebuilt from it (milliseconds, on those rare
frames), as after an addition.
"""

from __future__ import annotations

import copy

import numpy as np
import scipy.sparse as sp

from rtcal.backend import Backend, cuda
from rtcal.errors import RtcalError
from rtcal.nmf.curation import SILENT_SD, footprint_centre
from rtcal.nmf.online import NO_BORDER, NMFStep, OnlineNMF
from rtcal.nmf.residual import clear_border, covered_core
from rtcal.nmf.xp_background import project_basis, subtract_basis
from rtcal.nmf.xp_footprints import device_footprints
from rtcal.nmf.xp_hals import (
    device_schedule,
    hals_levels,
    hals_schedule,
    unclipped_offset_into,
)
from rtcal.nmf.xp_residual import DeviceResidualBuffer, bin_and_smooth
from rtcal.nmf.xp_shapes import refine_block, update_stats

MIN_MKK = 1e-3  # as OnlineNMF._refine: components this inactive keep their footprint


class DeviceNMFError(RtcalError):
    """An OnlineNMF setting or option the device stepper does not support."""


def gram_with_background(csr: sp.csr_matrix, B: np.ndarray) -> np.ndarray:
    """[A A^T, A B^T; B A^T, B B^T] float64 (K + nb, K + nb), computed as OnlineNMF does
    (A A^T and A B^T in float32, then widened)."""
    K, nb = csr.shape[0], B.shape[0]
    G = np.zeros((K + nb, K + nb))
    G[:K, :K] = (csr @ csr.T).toarray().astype(np.float64)
    AB = (csr @ B.T).astype(np.float64)
    G[:K, K:] = AB
    G[K:, :K] = AB.T
    G[K:, K:] = B.astype(np.float64) @ B.T
    return G


def grown_gram(G_old, csr: sp.csr_matrix, K_old: int, B: np.ndarray, backend: Backend):
    """The Gram matrix of :func:`gram_with_background` after rows K_old.. were appended to
    the footprints, from the current one (G_old, (K_old + nb)^2 on the backend): only the
    new rows' products are computed (on the host, as OnlineNMF does), the rest is copied
    on the device. B B^T and the old footprints' entries are not recomputed (at 512x512
    with 1000 components that took 48-57 ms per addition with NumPy arrays here)."""
    xp = backend.xp
    K, nb = csr.shape[0], B.shape[0]
    new = csr[K_old:]
    rows = (new @ csr.T).toarray().astype(np.float64)  # (n, K)
    rows_b = (new @ B.T).astype(np.float64)  # (n, nb)
    G = xp.zeros((K + nb, K + nb))
    G[:K_old, :K_old] = G_old[:K_old, :K_old]
    G[:K_old, K:] = G_old[:K_old, K_old:]
    G[K:, :K_old] = G_old[K_old:, :K_old]
    G[K:, K:] = G_old[K_old:, K_old:]
    block = backend.asarray(np.concatenate([rows, rows_b], axis=1))  # (n, K + nb)
    G[K_old:K] = block
    G[:, K_old:K] = block.T
    return G


class DeviceNMF:
    """Continues ``nmf`` on ``backend``; ``step(frame) -> NMFStep`` as OnlineNMF.step.

    nmf is left untouched (its footprints are copied). fused: use the CUDA kernels
    (default: on a device backend); use_graph: replay each frame's work as a CUDA graph
    (needs fused).
    """

    def __init__(
        self,
        nmf: OnlineNMF,
        backend: Backend,
        *,
        fused: bool | None = None,
        use_graph: bool = False,
    ) -> None:
        if nmf.ring is not None:
            raise DeviceNMFError(
                "the ring background (1p mode) is not ported to the device; "
                "run --mode 1p with --backend cpu"
            )
        fused = backend.on_device if fused is None else fused
        if fused and not backend.on_device:
            raise DeviceNMFError("fused kernels exist only for the 'cuda' backend")
        if use_graph and not fused:
            raise DeviceNMFError("CUDA graphs need the fused kernels (fused=True)")
        self.config = nmf.config
        self.backend = backend
        self.fused = fused
        self.use_graph = use_graph
        self.shape = nmf.shape
        self.baseline = nmf.baseline
        self.B = nmf.B
        self.noise_small = nmf.noise_small
        self.init_traces = nmf.init_traces
        self.init_noisy = nmf.init_noisy
        self.n_frames = nmf.n_frames
        # The host twin: its footprint set, refinement schedule and curator are this
        # stepper's own; the rest of its state is synced from the device only when
        # a merge or retirement is applied to it (its residual buffer is not needed).
        buffer, nmf.buffer = nmf.buffer, None
        try:
            self._twin = copy.deepcopy(nmf)
        finally:
            nmf.buffer = buffer
        self.schedule = self._twin.schedule
        self.curator = self._twin.curator
        self.merges = self._twin.merges
        self._host = self._twin.A  # synced from the device when read
        up = backend.asarray
        self._baseline = up(np.asarray(nmf.baseline, np.float32))
        self._B = up(nmf.B.astype(np.float32))
        self._B64 = up(nmf.B.astype(np.float64))
        self.buffer = DeviceResidualBuffer.from_host(buffer, backend)
        self.rejected = copy.deepcopy(nmf.rejected)
        self.search = copy.deepcopy(nmf.search)
        self.search.rejected = self.rejected
        self._load(nmf._c, nmf._w, nmf._M, nmf._G)

    # ----------------------------------------------------------------- state
    def _load(self, c, w, M, G) -> None:
        """(Re)build the device state for the host FootprintSet's current structure."""
        be, xp = self.backend, self.backend.xp
        K, nb = self._host.n_components, self.B.shape[0]
        H, W = self.shape
        self._fp = device_footprints(self._host.csr, be)
        schedule = hals_schedule(self._fp.ov_ptr_host, self._fp.ov_idx_host, nb)
        self._schedule = device_schedule(schedule, be)
        self._c = be.asarray(c, xp.float32).copy()
        self._w = be.asarray(w, xp.float64).copy()
        self._M = be.asarray(M, xp.float64).copy()
        self._G = be.asarray(G, xp.float64).copy()
        nonneg = np.r_[np.ones(K, bool), np.zeros(nb, bool)]
        self._nonneg = be.asarray(nonneg)
        self._nonneg_u8 = be.asarray(nonneg.astype(np.uint8))
        # Static buffers: every frame writes into these in place (what a graph replays).
        self._y = xp.zeros(H * W, xp.float32)
        self._b = xp.zeros(K + nb, xp.float64)
        self._c64 = xp.zeros(K + nb, xp.float64)
        self._gc = xp.zeros(K, xp.float64)  # (G c)[:K], then b - G c
        self._gdiag = xp.zeros(K, xp.float64)
        self._offset = xp.zeros(K, xp.float64)  # NMFStep.noisy - traces
        self._proj = xp.zeros(K, xp.float32)
        self._image = xp.zeros(H * W, xp.float32)
        self._residual = xp.zeros(H * W, xp.float32)
        self._small = xp.zeros((H // 2, W // 2), xp.float32)
        self._n_refine = min(self.config.refine_per_frame, K)
        self._order = xp.zeros(self._n_refine, xp.int32)
        self._graph = None
        self._warm = False

    @property
    def n_components(self) -> int:
        return self._host.n_components

    @property
    def A(self):
        """The host FootprintSet, with the device's refined footprint values."""
        self._sync_host()
        return self._host

    def _sync_host(self) -> None:
        self._host.csr.data[:] = self.backend.to_host(self._fp.data)

    def resting_level(self, index: np.ndarray) -> np.ndarray:
        """As OnlineNMF.resting_level: (a_k . baseline) / (a_k . a_k), float64 (n,)."""
        index = np.asarray(index, np.int64)
        rows = self.A.csr[index]
        norm = np.asarray(rows.multiply(rows).sum(axis=1)).ravel()
        return (rows @ self.baseline) / np.maximum(norm, 1e-12)

    # ------------------------------------------------------------- per frame
    def _next_order(self) -> np.ndarray:
        """The block of components to refine at this frame (host int64;
        ``rtcal.nmf.refine_schedule``)."""
        if self._n_refine == 0:
            return np.zeros(0, np.int64)
        return self.schedule.next_order()[: self._n_refine]

    def _fit(self, order) -> None:
        """Steps 1-4 on the static buffers (self._y in; c, W, M, A, G, residual out).

        order: host indices of the refinement block (generic kernels); the fused
        kernel reads self._order instead, so that a captured graph stays valid.
        """
        K, H, W = self.n_components, *self.shape
        fp, cfg = self._fp, self.config
        if self.fused:
            cuda.csr_matvec(fp.indptr, fp.indices, fp.data, self._y, self._proj, long_rows=True)
            self._b[:K] = self._proj
        elif K:  # (a sparse product with no rows is not always allowed on the device)
            self._b[:K] = fp.csr @ self._y
        self._b[K:] = project_basis(self._B, self._y)
        if self.fused:
            self._c64[...] = self._c
            cuda.hals_levels_fused(
                self._G, self._b, self._c64, self._nonneg_u8, self._schedule, cfg.n_sweeps
            )
            self._c[...] = self._c64
        else:
            self._c[...] = hals_levels(
                self._G, self._b, self._c, self._nonneg, self._schedule.levels, cfg.n_sweeps
            )
            self._c64[...] = self._c
        unclipped_offset_into(self._G, self._b, self._c64, self._gc, self._gdiag, self._offset)
        c = self._c[:K]
        update_stats(fp, self._w, self._M, self._y, c, cfg.forget)
        if self.fused:
            cuda.refine_block_fused(
                fp, self._w, self._M, self._G, self._B64, self._order, self._n_refine, MIN_MKK
            )
            cuda.csr_matvec(
                fp.at_indptr, fp.at_indices, fp.at_data, c, self._image, long_rows=False
            )
        else:
            refine_block(fp, self._w, self._M, self._G, self._B64, order, MIN_MKK)
            self._image[...] = fp.csr_t @ c if K else 0.0
        self._residual[...] = subtract_basis(self._y, self._B, self._c[K:]) - self._image
        bin_and_smooth(self._residual.reshape(H, W), out=self._small)

    def step(self, frame, border: tuple[int, int, int, int] = NO_BORDER) -> NMFStep:
        """frame: registered (H, W), host or backend array; border: as
        OnlineNMF.step -> NMFStep (host arrays)."""
        be = self.backend
        y = be.asarray(frame).reshape(-1)
        self._y[...] = y.astype(be.xp.float32, copy=False) - self._baseline
        order = self._next_order()
        if self.fused and self._n_refine:
            # a fixed-size block for the captured graph: -1 marks an empty slot
            padded = np.full(self._n_refine, -1, np.int32)
            padded[: len(order)] = order
            self._order[...] = be.asarray(padded)
        if self.use_graph and self._warm and self._graph is None:
            self._graph = cuda.CapturedGraph(lambda: self._fit(None))
        if self._graph is not None:
            self._graph.launch()
        else:
            self._fit(order)
            self._warm = True  # kernels compiled: the next frame may be captured
        if any(border):  # outside the captured graph: the border changes per frame
            H, W = self.shape
            clear_border(self._residual.reshape(H, W), border)
            bin_and_smooth(self._residual.reshape(H, W), out=self._small)
        self.buffer.push(self._residual, self._small)
        self.n_frames += 1
        traces = be.to_host(self._c[: self.n_components]).copy()
        offset = be.to_host(self._offset).astype(np.float32)
        self.schedule.observe(traces, self.config.forget)
        n_actions = len(self.merges)
        if self._curate(traces):  # a merge changes the kept component's trace
            traces = be.to_host(self._c[: self.n_components]).copy()
            for action in self.merges[n_actions:]:  # as OnlineNMF: no offset this frame
                offset[action.gone] = 0.0
                if action.kind == "merge":
                    offset[action.keep] = 0.0
        added, added_traces = self._search()
        if len(added):  # the new components' traces too
            traces = be.to_host(self._c[: self.n_components]).copy()
        noisy = traces.copy()
        noisy[: len(offset)] += offset  # components added at this frame: no offset
        return NMFStep(traces, added, added_traces, self.curator.retired.copy(), noisy)

    # -------------------------------------------------- merging and retiring
    def _curate(self, traces: np.ndarray) -> bool:
        """As OnlineNMF._curate, on this frame's host traces; True if it acted."""
        if not self.config.merge_every:
            return False
        be, xp = self.backend, self.backend.xp
        K = self.n_components
        diag = be.to_host(xp.diagonal(self._G)[:K])
        norm = np.sqrt(np.maximum(diag, 1e-12))
        self.curator.observe(self.n_frames, traces, SILENT_SD * self.curator.noise_px / norm)
        acted = False
        for i in self.curator.due(self.n_frames):
            if self.curator.retired[i]:  # merged away earlier in this frame
                continue
            csr = self._host.csr
            lo, hi = csr.indptr[i], csr.indptr[i + 1]
            partners = self._partners(i)
            action = self.curator.check(
                i, self.n_frames, self._gram_entries(np.r_[i, partners]), partners,
                self._host.born_frame, be.to_host(self._fp.data[lo:hi]), csr.indices[lo:hi],
                self._centre,
            )
            if action is not None:
                self._apply(action)
                acted = True
        return acted

    def _centre(self, k: int) -> tuple[float, float]:
        """As OnlineNMF._centre, from the device's footprint values (downloaded: only
        for a pair that passed the overlap and trace tests)."""
        csr = self._host.csr
        lo, hi = csr.indptr[k], csr.indptr[k + 1]
        values = self.backend.to_host(self._fp.data[lo:hi])
        return footprint_centre(csr.indices[lo:hi], values, self.shape[1])

    def _partners(self, k: int) -> np.ndarray:
        """Components whose supports overlap k's (k included), as OnlineNMF._partners."""
        ptr, idx = self._fp.ov_ptr_host, self._fp.ov_idx_host
        return idx[ptr[k] : ptr[k + 1]]

    def _gram_entries(self, index: np.ndarray) -> _GramEntries:
        """The Gram matrix's entries among components ``index``, downloaded."""
        be = self.backend
        index = np.unique(index)
        on = be.asarray(index.astype(np.int64))
        return _GramEntries(index, be.to_host(self._G[on[:, None], on[None, :]]))

    def _apply(self, action) -> None:
        """A merge or retirement, applied by the host twin to the device's state."""
        be, twin = self.backend, self._twin
        self._sync_host()
        twin._c = be.to_host(self._c).astype(np.float32)
        twin._w = be.to_host(self._w).astype(np.float64)
        twin._M = be.to_host(self._M).astype(np.float64)
        twin._G = be.to_host(self._G).astype(np.float64)
        twin.n_frames = self.n_frames
        twin._ov = (self._fp.ov_ptr_host, self._fp.ov_idx_host)
        twin._apply(action)  # records it in self.merges (the twin's list)
        self._load(twin._c, twin._w, twin._M, twin._G)

    # -------------------------------------------------------- new components
    def _search(self) -> tuple[np.ndarray, np.ndarray]:
        """As OnlineNMF._search: a SearchRound started every search_every frames on
        the buffer's downloaded maximum, then one extraction (a small patch
        downloaded) per frame."""
        found = self.search.frame(
            self.n_frames, self.config.search_every, self.buffer, self.noise_small,
            lambda: covered_core(self.A.csr, self.shape), view=self.buffer.view,
        )
        if found is None:
            return np.zeros(0, np.int64), np.zeros((0, self.buffer.length), np.float32)
        traces = found.trace[None]
        return self._add([found.footprint], traces), traces

    def add_components(self, footprints: np.ndarray, traces: np.ndarray) -> np.ndarray:
        """As OnlineNMF.add_components: footprints float32 (n, H, W) found elsewhere,
        traces float32 (n, L) over the residual buffer -> int64 (n,) their indices."""
        n_held = min(self.buffer.n_seen, self.buffer.length)
        if footprints.shape[1:] != self.shape or traces.shape != (len(footprints), n_held):
            raise DeviceNMFError(
                f"add_components: footprints {footprints.shape} and traces {traces.shape} "
                f"do not fit frames {self.shape} and a residual buffer of {n_held} frames"
            )
        if not len(footprints):
            return np.zeros(0, np.int64)
        return self._add(list(footprints), np.asarray(traces, np.float32))

    def _add(self, footprints: list[np.ndarray], traces: np.ndarray) -> np.ndarray:
        """Append components whose traces over the residual buffer are ``traces`` (n, L);
        their statistics from the buffer, as OnlineNMF._add."""
        be, xp = self.backend, self.backend.xp
        self._sync_host()  # the host set is stacked with the new rows
        K_old = self.n_components
        new = self._host.add(
            np.stack(footprints), born_frame=self.n_frames, margin_px=self.config.support_margin_px
        )
        n = len(new)
        csr = self._host.csr
        w_new = [
            self.buffer.pixels(csr.indices[csr.indptr[k] : csr.indptr[k + 1]]).T
            @ traces[i].astype(np.float64)
            for i, k in enumerate(new)
        ]
        w = xp.concatenate([self._w, be.asarray(np.concatenate(w_new))])
        M = xp.zeros((K_old + n, K_old + n))
        M[:K_old, :K_old] = self._M
        M[K_old:, K_old:] = be.asarray(traces.astype(np.float64) @ traces.T.astype(np.float64))
        c = xp.concatenate(
            [self._c[:K_old], be.asarray(traces[:, -1].astype(np.float32)), self._c[K_old:]]
        )
        G = grown_gram(self._G, csr, K_old, self.B, be)
        self.schedule.add(
            np.diff(csr.indptr[K_old:]), be.to_host(xp.diagonal(G)[K_old : K_old + n]),
            np.diagonal(traces.astype(np.float64) @ traces.T.astype(np.float64)),
        )
        self._load(c, w, M, G)
        self.curator.add(traces, self.n_frames)
        for k in new if self.config.merge_every else ():  # as OnlineNMF._add
            partners = self._partners(k)
            twin = self.curator.twin_of(
                k, self._gram_entries(partners), partners, self._host.born_frame
            )
            if twin is not None:
                self._apply(twin)
        return new


class _GramEntries:
    """Entries of the (K + nb)^2 Gram matrix among a few components, indexed by
    their global indices as the curator reads them (``gram[i, j]``)."""

    def __init__(self, index: np.ndarray, sub: np.ndarray) -> None:
        self._pos = {int(k): n for n, k in enumerate(index)}
        self._sub = sub

    def __getitem__(self, key: tuple[int, int]) -> float:
        i, j = key
        return float(self._sub[self._pos[int(i)], self._pos[int(j)]])
