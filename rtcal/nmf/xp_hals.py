"""Trace HALS for any array module, parallel across components without changing the answer.

Same problem and sweep as :mod:`rtcal.nmf.hals` (Gauss-Seidel over
c_k <- c_k + (b_k - (G c)_k) / G_kk, clamped at 0 where required), reordered
for a GPU by *level scheduling*, the classic trick of parallel sparse
triangular solves (Saad, "Iterative Methods for Sparse Linear Systems", 2003,
sec. 11.6): give row k the level

    level(k) = 1 + max{ level(j) : j < k, G_kj != 0 }   (0 if there is none).

Rows of one level never read each other, every row j < k that k reads has a
lower level (already updated, as in the sequential sweep) and every row j > k
that k reads has a higher one (not yet updated, as in the sequential sweep).
Updating level after level, each level at once, is therefore exactly the
sequential sweep 0, 1, ..., n-1, only with the sums in another order. G_kj is
non-zero only where footprint supports overlap, so a few tens of levels cover
hundreds of cells; the background rows, coupled to everything, come last, one
level each.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from rtcal.backend import Backend, array_module


@dataclass(frozen=True)
class HalsSchedule:
    """Host (NumPy int64) description of one Gram pattern's levels.

    level_ptr (n_levels + 1,), level_rows (n,): rows of level l are
    level_rows[level_ptr[l]:level_ptr[l + 1]], ascending. pattern_ptr (n + 1,),
    pattern_idx: per row k, the columns j where G_kj may be non-zero (k included).
    """

    level_ptr: np.ndarray
    level_rows: np.ndarray
    pattern_ptr: np.ndarray
    pattern_idx: np.ndarray

    @property
    def n_levels(self) -> int:
        return len(self.level_ptr) - 1

    def rows_by_level(self) -> list[np.ndarray]:
        return np.split(self.level_rows, self.level_ptr[1:-1])


@dataclass(frozen=True)
class DeviceSchedule:
    """A HalsSchedule on a backend: the arrays, and one index array per level."""

    level_ptr: object
    level_rows: object
    pattern_ptr: object
    pattern_idx: object
    levels: tuple
    n_levels: int


def hals_schedule(ov_ptr: np.ndarray, ov_idx: np.ndarray, n_background: int) -> HalsSchedule:
    """Levels of the joint Gram matrix [A A^T, A B^T; B A^T, B B^T].

    ov_ptr, ov_idx: the footprints' overlap lists (:func:`rtcal.nmf.shapes.overlap_lists`),
    a superset of the non-zeros of A A^T; n_background: rows of B, taken as coupled
    to every row.
    """
    K = len(ov_ptr) - 1
    n = K + n_background
    level = np.zeros(n, np.int64)
    for k in range(K):
        neighbours = ov_idx[ov_ptr[k] : ov_ptr[k + 1]]
        earlier = neighbours[neighbours < k]
        if earlier.size:
            level[k] = level[earlier].max() + 1
    first = int(level[:K].max()) + 1 if K else 0
    level[K:] = first + np.arange(n_background)
    rows = np.argsort(level, kind="stable")
    counts = np.bincount(level, minlength=int(level.max()) + 1 if n else 0)
    level_ptr = np.r_[0, np.cumsum(counts)].astype(np.int64)
    # Footprint rows: their overlap list, then every background column; background rows: all.
    ov_len = np.diff(ov_ptr).astype(np.int64)
    lengths = np.r_[ov_len + n_background, np.full(n_background, n)].astype(np.int64)
    pattern_ptr = np.r_[0, np.cumsum(lengths)].astype(np.int64)
    pattern_idx = np.empty(pattern_ptr[-1], np.int64)
    owner = np.repeat(np.arange(K), ov_len)
    pattern_idx[pattern_ptr[owner] + np.arange(len(ov_idx)) - ov_ptr[owner]] = ov_idx
    tail = (pattern_ptr[:K] + ov_len)[:, None] + np.arange(n_background)
    pattern_idx[tail] = K + np.arange(n_background)
    pattern_idx[pattern_ptr[K] :] = np.tile(np.arange(n, dtype=np.int64), n_background)
    return HalsSchedule(level_ptr, rows.astype(np.int64), pattern_ptr, pattern_idx)


def device_schedule(schedule: HalsSchedule, backend: Backend) -> DeviceSchedule:
    """Upload a schedule once per change of the footprint set."""
    up = backend.asarray
    return DeviceSchedule(
        up(schedule.level_ptr),
        up(schedule.level_rows),
        up(schedule.pattern_ptr),
        up(schedule.pattern_idx),
        tuple(up(r) for r in schedule.rows_by_level()),
        schedule.n_levels,
    )


def hals_levels(G, b, c, nonneg, levels, n_sweeps: int):
    """HALS sweeps, level by level; the contract of :func:`rtcal.nmf.hals.hals_reference`.

    G: float64 (n, n); b: float64 (n,); c: float32 (n,) warm start; nonneg: bool
    (n,); levels: sequence of int index arrays (DeviceSchedule.levels), in order.
    Returns float32 (n,); float64 inside, as the Numba kernel.
    """
    xp = array_module(G, b, c)
    out = c.astype(xp.float64)
    diag = xp.diagonal(G)
    for _ in range(n_sweeps):
        for rows in levels:
            g = diag[rows]
            active = g > 0
            step = (b[rows] - G[rows] @ out) / xp.where(active, g, 1.0)
            new = out[rows] + step
            new = xp.where(nonneg[rows] & (new < 0), 0.0, new)
            out[rows] = xp.where(active, new, out[rows])
    return out.astype(xp.float32)


def unclipped_offset_into(G, b, c, gc, gdiag, out) -> None:
    """The offsets of :func:`rtcal.nmf.hals.unclipped_offset_reference`, for any
    array module, into preallocated float64 buffers (nothing is allocated, so a
    captured CUDA graph can replay it): out[k] = (b_k - (G c)_k) / G_kk for k < K,
    with K = len(out); gc, gdiag: (K,) scratch. G: (n, n) float64, b, c: (n,)
    float64. 0 where G_kk <= 0 (a zeroed component)."""
    xp = array_module(out)
    K = out.shape[0]
    if K == 0:
        return
    diag = xp.diagonal(G)[:K]
    xp.matmul(G[:K], c, out=gc)
    xp.subtract(b[:K], gc, out=gc)
    xp.maximum(diag, 1e-30, out=gdiag)  # finite quotients where G_kk = 0 ...
    xp.divide(gc, gdiag, out=out)
    xp.greater(diag, 0, out=gdiag)  # ... then multiplied by 0 there
    xp.multiply(out, gdiag, out=out)
