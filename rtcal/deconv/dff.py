"""Running baseline F0 and dF/F, one frame at a time, for K components.

The baseline is a low running percentile of the trace over the last
``window_s`` seconds, the usual definition (e.g. CaImAn ``detrend_df_f``,
Pnevmatikakis et al. 2016; Giovannucci et al. 2019, eLife 8:e38173), computed
on a decimated trace so that a frame costs O(1):

    m_j   = mean of F over block j (``block_s`` seconds, NaN frames skipped)
    F0_t  = q-th percentile (linear interpolation) of the last n_blocks block means
    dF/F  = (F_t - F0_t) / max(F0_t + offset, eps)

A frame adds F_t to its component's block sum. When a block closes, its mean
enters a ring of the last n_blocks means and a sorted copy of it (one
insertion and one deletion, O(n_blocks) moves, n_blocks <= 1024), and F0 is
read from the sorted copy. Block boundaries are staggered across components
(component k closes its first block after block_frames - k mod block_frames
frames), so a frame does that work for about K / block_frames components:
O(1 + n_blocks / block_frames) per frame per component, with no frame paying
for all of them. F0 changes once per block (it lags by at most one block).

Averaging over a block divides the noise by sqrt(block_frames), so the low
percentile sits closer to the resting level than the same percentile of the
raw samples (which is biased low by about 1.4 sigma at q = 8); sparse
transients raise a few block means and leave the low percentile alone.

offset: F here is usually a demixed trace (C of CNMF, background removed), whose
resting level is near 0, so F0 alone is a poor denominator. offset is the
background fluorescence under the footprint in the same units, for instance
(a_k . b) / (a_k . a_k) with a_k the footprint and b the mean background image
(CaImAn adds A^T B in the same way). For a raw ROI trace, offset = 0.

Before the first block closes F0 is the mean of the frames seen so far.
NaN (or inf) in F: that frame is left out of the block, its dF/F is NaN.
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass

import numba
import numpy as np

from rtcal.deconv.oasis import DeconvError

_MAX_BLOCKS = 1024


@dataclass(frozen=True)
class DffConfig:
    """fps_hz: frame rate; window_s: baseline window; block_s: averaging block (the
    baseline's time resolution); quantile_pct: percentile of block means taken as F0;
    eps: floor on the dF/F denominator, in trace units."""

    fps_hz: float
    window_s: float = 60.0
    block_s: float = 1.0
    quantile_pct: float = 8.0
    eps: float = 1e-6

    def __post_init__(self) -> None:
        if not 0 < self.fps_hz <= 100_000:
            raise DeconvError(f"fps_hz must be in (0, 100000], got {self.fps_hz}")
        if not self.block_s > 0:
            raise DeconvError(f"block_s must be > 0, got {self.block_s}")
        if not self.window_s >= self.block_s:
            raise DeconvError(
                f"window_s must be >= block_s={self.block_s}, got {self.window_s}"
            )
        if not self.n_blocks <= _MAX_BLOCKS:
            raise DeconvError(
                f"window_s={self.window_s} / block_s={self.block_s} gives {self.n_blocks} "
                f"blocks; at most {_MAX_BLOCKS} (lengthen block_s)"
            )
        if not 0 <= self.quantile_pct <= 100:
            raise DeconvError(f"quantile_pct must be in [0, 100], got {self.quantile_pct}")
        if not (math.isfinite(self.eps) and self.eps > 0):
            raise DeconvError(f"eps must be finite and > 0, got {self.eps}")

    @property
    def block_frames(self) -> int:
        return max(1, round(self.block_s * self.fps_hz))

    @property
    def n_blocks(self) -> int:
        window_frames = max(1, round(self.window_s * self.fps_hz))
        return max(1, math.ceil(window_frames / self.block_frames))


def percentile_sorted(a: np.ndarray, m: int, q: float) -> float:
    """q-th percentile of the sorted a[:m], NumPy's default 'linear' rule; NaN if m == 0."""
    return _percentile_sorted(a, m, q)


@numba.njit(cache=True)
def _percentile_sorted(a, m, q):  # pragma: no cover - compiled
    if m == 0:
        return np.nan
    pos = q / 100.0 * (m - 1)
    lo = min(int(math.floor(pos)), m - 1)
    hi = min(lo + 1, m - 1)
    return a[lo] + (a[hi] - a[lo]) * (pos - lo)


@numba.njit(cache=True, inline="always")
def _sorted_replace(row, m, old, new, remove):  # pragma: no cover - compiled
    """Sorted row[:m]: drop one copy of ``old`` if ``remove``, insert ``new``. Returns new m."""
    if remove:
        i = np.searchsorted(row[:m], old)
        for j in range(i, m - 1):
            row[j] = row[j + 1]
        m -= 1
    i = np.searchsorted(row[:m], new)
    for j in range(m, i, -1):
        row[j] = row[j - 1]
    row[i] = new
    return m + 1


@numba.njit(cache=True)
def _step_kernel(
    F, offset, q, eps, block_frames, acc, ints, ring, srt, f0, f0_out, dff_out
):  # pragma: no cover - compiled
    # acc (K,): block sum. ints (K, 4): frames left in the block, finite frames in the
    # sum, ring head, ring count. ring (K, n_blocks): block means in time order;
    # srt: the same values sorted; f0 (K,): percentile at the last closed block.
    for k in range(F.shape[0]):
        x = float(F[k])
        finite = math.isfinite(x)
        if finite:
            acc[k] += x
            ints[k, 1] += 1
        ints[k, 0] -= 1
        if ints[k, 0] == 0:
            ints[k, 0] = block_frames
            if ints[k, 1] > 0:
                _close_block(k, acc[k] / ints[k, 1], q, ints, ring, srt, f0)
            acc[k] = 0.0
            ints[k, 1] = 0
        b = f0[k]
        if ints[k, 3] == 0 and ints[k, 1] > 0:
            b = acc[k] / ints[k, 1]  # no block closed yet: the mean so far
        f0_out[k] = b
        dff_out[k] = (x - b) / max(b + offset[k], eps) if finite else np.nan


@numba.njit(cache=True, inline="always")
def _close_block(k, mean, q, ints, ring, srt, f0):  # pragma: no cover - compiled
    n_blocks = ring.shape[1]
    head, count = ints[k, 2], ints[k, 3]
    full = count == n_blocks
    slot = head if full else head + count  # the oldest mean is overwritten when full
    if slot >= n_blocks:
        slot -= n_blocks
    old = ring[k, slot]
    ring[k, slot] = mean
    if full:
        head = head + 1 if head + 1 < n_blocks else 0
    count = _sorted_replace(srt[k], count, old, mean, full)
    ints[k, 2], ints[k, 3] = head, count
    f0[k] = _percentile_sorted(srt[k], count, q)


class RunningDff:
    """Per-frame running baseline and dF/F for K components (see the module docstring).

    offset: float (K,) background under each footprint, in trace units (>= 0 not
    required, but F0 + offset should be the resting fluorescence). Memory:
    16 bytes x n_blocks per component.
    """

    def __init__(self, config: DffConfig, offset: np.ndarray) -> None:
        self.config = config
        self._q, self._eps = float(config.quantile_pct), float(config.eps)
        self._block = config.block_frames
        self._n = 0
        self._alloc(max(np.size(offset), 1))
        self.add_components(offset)

    @property
    def n_components(self) -> int:
        return self._n

    def step(self, F: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """One frame. F float (K,) -> (F0, dF/F) float32 (K,); dF/F is NaN where F is."""
        F = np.asarray(F)
        if F.shape != (self._n,):
            raise DeconvError(f"F must have shape ({self._n},), got {F.shape}")
        f0 = np.empty(self._n, np.float32)
        dff = np.empty(self._n, np.float32)
        _step_kernel(F, self._offset, self._q, self._eps, self._block, *self._views, f0, dff)
        return f0, dff

    def add_components(self, offset: np.ndarray) -> None:
        """Append components; their first block is staggered by their index."""
        offset = np.atleast_1d(np.asarray(offset, dtype=np.float64))
        _check_offset(offset)
        k0, k1 = self._n, self._n + offset.size
        if k1 > len(self._offset_all):
            self._alloc(max(k1, 2 * len(self._offset_all)))
        self._offset_all[k0:k1] = offset
        self._acc_all[k0:k1] = 0.0
        self._f0_all[k0:k1] = np.nan
        self._ints_all[k0:k1] = 0
        self._ints_all[k0:k1, 0] = self._block - np.arange(k0, k1) % self._block
        self._resize(k1)

    def remove_components(self, index: np.ndarray) -> None:
        """Drop components; the rest keep their order and state."""
        keep = np.ones(self._n, bool)
        keep[np.asarray(index, dtype=np.int64)] = False
        m = int(keep.sum())
        for a in self._all():
            a[:m] = a[: self._n][keep]
        self._resize(m)

    def set_offset(self, k_index: int | np.ndarray, offset: np.ndarray) -> None:
        """Replace the background offset of components k_index (e.g. after a footprint update)."""
        offset = np.atleast_1d(np.asarray(offset, dtype=np.float64))
        _check_offset(offset)
        self._offset[k_index] = offset

    def _all(self) -> tuple[np.ndarray, ...]:
        return (self._offset_all, self._acc_all, self._ints_all, self._ring_all,
                self._srt_all, self._f0_all)

    def _alloc(self, capacity: int) -> None:
        n, nb = self._n, self.config.n_blocks
        new = (np.zeros(capacity), np.zeros(capacity), np.zeros((capacity, 4), np.int64),
               np.zeros((capacity, nb)), np.zeros((capacity, nb)), np.full(capacity, np.nan))
        if n:
            for a, old in zip(new, self._all(), strict=True):
                a[:n] = old[:n]
        (self._offset_all, self._acc_all, self._ints_all, self._ring_all,
         self._srt_all, self._f0_all) = new
        self._resize(n)

    def _resize(self, n: int) -> None:
        # Views cached so that step() slices nothing.
        self._n = n
        self._offset = self._offset_all[:n]
        self._views = tuple(a[:n] for a in self._all()[1:])


class RunningDffReference:
    """Plain reference for :class:`RunningDff`: per component, a deque of block means and
    the percentile recomputed from scratch (``sorted``) whenever a block closes."""

    def __init__(self, config: DffConfig, offset: np.ndarray) -> None:
        self.config = config
        self.offset = [float(o) for o in np.atleast_1d(offset)]
        B = config.block_frames
        self.left = [B - k % B for k in range(len(self.offset))]
        self.sums = [[] for _ in self.offset]  # finite samples of the open block
        self.means = [deque(maxlen=config.n_blocks) for _ in self.offset]
        self.f0 = [math.nan for _ in self.offset]

    def step(self, F: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        out = [self._step_one(k, float(x)) for k, x in enumerate(F)]
        f0, dff = np.array(out, dtype=np.float64).reshape(len(self.offset), 2).T
        return f0.astype(np.float32), dff.astype(np.float32)

    def _step_one(self, k: int, x: float) -> tuple[float, float]:
        cfg = self.config
        if math.isfinite(x):
            self.sums[k].append(x)
        self.left[k] -= 1
        if self.left[k] == 0:
            self.left[k] = cfg.block_frames
            if self.sums[k]:
                self.means[k].append(_plain_sum(self.sums[k]) / len(self.sums[k]))
                srt = np.array(sorted(self.means[k]))
                self.f0[k] = percentile_sorted(srt, len(srt), cfg.quantile_pct)
            self.sums[k] = []
        b = self.f0[k]
        if not self.means[k] and self.sums[k]:
            b = _plain_sum(self.sums[k]) / len(self.sums[k])
        if not math.isfinite(x):
            return b, math.nan
        return b, (x - b) / max(b + self.offset[k], cfg.eps)


def _plain_sum(values: list[float]) -> float:
    total = 0.0  # left to right, as the kernel accumulates
    for v in values:
        total += v
    return total


def _check_offset(offset: np.ndarray) -> None:
    if offset.ndim != 1 or not np.isfinite(offset).all():
        raise DeconvError(f"offset must be a finite 1-D array, got shape {offset.shape}")
