"""New components from the residual: cells that fire after initialisation.

The online core keeps the last L residual frames r_t = y_t - A^T c_t - B^T f_t
(what the current model does not explain), smoothed to cell scale. Every few
frames it looks for cell-sized transients there (OnACID, Giovannucci et al.
2017: peak-to-noise of the spatially filtered residual buffer), extracts each
candidate by rank-1 non-negative factorisation of the buffer around its peak,
and accepts it only if the footprint has a soma's size and shape
(``rtcal.detect.soma``) and explains the residual where it fired (space
correlation test, as OnACID's ``rval``).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache

import numba
import numpy as np
from scipy import ndimage

from rtcal.buffer.summary import time_last
from rtcal.detect.seed import (
    clean_footprint,
    footprint_with_background,
    footprint_with_background_fast,
    rank1_footprint,
)
from rtcal.detect.soma import SomaGate


@dataclass(frozen=True)
class SpaceTest:
    """The space correlation test of a candidate (OnACID's ``rval``): the
    correlation r of its footprint with the mean frame of its largest transient
    must reach ``min_corr``, or ``large_min_corr`` for a footprint whose mask
    (pixels >= 0.2 x its maximum) covers at least ``large_area_px`` pixels.

    A weak cell's transient lasts a few frames of the buffer, so its mean frame
    is noisy and r falls short of a bright cell's although the footprint is
    right: on four development 2p movies (``tools/extractions.py``), 88 of the
    179 extractions that passed the soma gate and matched a true cell (IoU >=
    0.5; 51 distinct cells) had r < 0.875. There, the false ones with 0.75 <= r
    < 0.875 came out at the scale of the search's smoothing, 85-112 px at r = 6
    (0.75-1.0 pi r^2), cells at their own: of the extractions in that band,
    those covering >= 1.1 pi r^2 were true 38 times and false once. On the real
    Neurofinder crop footprint size does not separate them (11 of the 14 such
    extractions overlap no hand-drawn ROI), so the online NMF leaves the rule
    off by default (``OnlineNMFConfig.new_large_area_frac``).
    """

    min_corr: float
    large_area_px: float = np.inf
    large_min_corr: float = 1.0

    @classmethod
    def of(cls, test: SpaceTest | float) -> SpaceTest:
        """``test`` itself, or a plain threshold (no large-footprint rule)."""
        return test if isinstance(test, SpaceTest) else cls(float(test))

    def passes(self, r: float, patch: np.ndarray) -> bool:
        """r: the candidate's space correlation; patch: its footprint (max 1)."""
        if not np.isfinite(r):
            return False
        if r >= self.min_corr:
            return True
        return r >= self.large_min_corr and int((patch >= 0.2).sum()) >= self.large_area_px


@dataclass(frozen=True)
class Candidate:
    """A proposed new component: footprint float32 (H, W) (max 1), its trace over
    the buffer float32 (L,), oldest first, and its peak-to-noise score."""

    footprint: np.ndarray
    trace: np.ndarray
    score: float


@dataclass(frozen=True)
class Extraction:
    """What one extraction of the residual search found, for diagnostics
    (``SearchRound.observer``; ``tools/extractions.py``): frame, the search's
    frame count; row, col, the peak (full-resolution pixels); score, its
    peak-to-noise; box, the patch extracted; footprint, float32 (h, w) on that
    box (max 1), None if nothing was found at the peak; space_corr, its space
    correlation (nan where the soma gate refused it first); verdict, "accepted",
    the gate's reason, "space correlation" or "nothing at the peak"."""

    frame: int
    row: int
    col: int
    score: float
    box: tuple[slice, slice]
    footprint: np.ndarray | None
    space_corr: float
    verdict: str


@numba.njit(cache=True)
def bin_and_smooth(frame, tmp, out):  # pragma: no cover - compiled
    """2x2 block means of frame (H, W) into tmp (H//2, W//2), then a 3x3 box mean into out
    (edges: the mean of the pixels inside). The box sum is separable: per output
    row, the 3 (2 at the edges) rows of tmp summed into a float64 row, then 3
    neighbours of it, each a loop of fixed length that LLVM vectorises (loops with
    edge-clipped bounds inside took ~0.1 ms per 256 x 256 frame, this ~0.02)."""
    h, w = tmp.shape
    for i in range(h):
        for j in range(w):
            tmp[i, j] = 0.25 * (
                frame[2 * i, 2 * j]
                + frame[2 * i + 1, 2 * j]
                + frame[2 * i, 2 * j + 1]
                + frame[2 * i + 1, 2 * j + 1]
            )
    rows = np.empty(w, np.float64)
    for i in range(h):
        i0, i1 = max(i - 1, 0), min(i + 2, h)
        for j in range(w):
            rows[j] = tmp[i0, j]
        for a in range(i0 + 1, i1):
            for j in range(w):
                rows[j] += tmp[a, j]
        n_i = i1 - i0
        if w == 1:
            out[i, 0] = rows[0] / n_i
            continue
        inner = 1.0 / (3 * n_i)
        for j in range(1, w - 1):
            out[i, j] = (rows[j - 1] + rows[j] + rows[j + 1]) * inner
        out[i, 0] = (rows[0] + rows[1]) / (2 * n_i)
        out[i, w - 1] = (rows[w - 2] + rows[w - 1]) / (2 * n_i)
    return out


@numba.njit(cache=True)
def bin_smooth_filter(frame, tmp, out, prev, decay, block_max, first):  # pragma: no cover
    """:func:`bin_and_smooth` of frame into out, then in the same pass the
    search's temporal filter out += decay * prev (prev: the last filtered frame;
    decay 0: none) and the running block maximum: block_max = out if ``first``
    (the block's first frame) else max(block_max, out). One pass over the small
    image instead of three (~0.05 ms per 256 x 256 frame)."""
    bin_and_smooth(frame, tmp, out)
    h, w = out.shape
    d = np.float32(decay)
    for i in range(h):
        for j in range(w):
            v = out[i, j]
            if d != 0:
                v += d * prev[i, j]
                out[i, j] = v
            if first or v > block_max[i, j]:
                block_max[i, j] = v
    return out


def bin_and_smooth_reference(frame: np.ndarray) -> np.ndarray:
    """Plain version of :func:`bin_and_smooth`. -> float32 (H//2, W//2)."""
    h, w = frame.shape[0] // 2, frame.shape[1] // 2
    binned = frame[: 2 * h, : 2 * w].reshape(h, 2, w, 2).mean(axis=(1, 3))
    return ndimage.uniform_filter(
        binned.astype(np.float64), 3, mode="constant"
    ) / ndimage.uniform_filter(np.ones((h, w)), 3, mode="constant")


def clear_border(residual, border: tuple[int, int, int, int]):
    """Zero ``border`` = (top, bottom, left, right) rows / columns of residual (H, W)
    in place (NumPy or CuPy): pixels the registration invented by replicating the
    frame's edge are no evidence of anything. Returns residual."""
    top, bottom, left, right = border
    H, W = residual.shape
    if top:
        residual[: min(top, H)] = 0
    if bottom:
        residual[max(H - bottom, 0) :] = 0
    if left:
        residual[:, : min(left, W)] = 0
    if right:
        residual[:, max(W - right, 0) :] = 0
    return residual


def search_decay(tau_s: float, fps_hz: float) -> float:
    """Per-frame decay exp(-1 / (tau_s fps_hz)) of the search's temporal filter (0 for
    tau_s = 0: no filter)."""
    return float(np.exp(-1.0 / (tau_s * fps_hz))) if tau_s > 0 else 0.0


def filter_small(small: np.ndarray, decay: float) -> np.ndarray:
    """The search's temporal filter over a stack (T, h, w) of binned, smoothed
    residuals, as :class:`ResidualBuffer` applies it frame by frame:
    f_t = s_t + decay f_{t-1}, f_0 = s_0 -> float32 (T, h, w)."""
    out = np.array(small, np.float32)
    for t in range(1, len(out)):
        out[t] += np.float32(decay) * out[t - 1]
    return out


def filtered_noise(small: np.ndarray, decay: float) -> np.ndarray:
    """Noise sigma of the search statistic, per binned pixel -> float32 (h, w).

    small: (T, h, w) binned, smoothed residuals of the initialisation frames.
    The noise of s itself is estimated robustly from temporal first differences
    (activity is sparse, the residual's slow drift cancels). Filtered, white
    noise grows by 1 / sqrt(1 - decay^2); the residual's noise is not white
    (neuropil and background errors are slow, and more so in some places), so
    that factor is scaled by the measured ratio (robust spread of the filtered
    series / white-noise prediction), smoothed over 8 binned pixels (one
    pixel's ratio rests on a few dozen independent samples), at least 1.
    """
    small = np.asarray(small, np.float32)
    # medians along a contiguous time axis: the same values, ~2x faster
    steps = np.abs(np.diff(time_last(small), axis=-1))
    sigma = np.maximum(np.median(steps, axis=-1) / (0.6745 * np.sqrt(2)), 1e-6)
    del steps
    if decay <= 0:
        return sigma.astype(np.float32)
    white = sigma / np.sqrt(1.0 - decay**2)
    skip = min(int(np.ceil(3.0 / (1.0 - decay))), len(small) // 2)  # filter's start-up
    f = time_last(filter_small(small, decay)[skip:])
    spread = 1.4826 * np.median(np.abs(f - np.median(f, axis=-1, keepdims=True)), axis=-1)
    ratio = ndimage.gaussian_filter(spread / white, 8.0, mode="nearest")
    return (white * np.maximum(ratio, 1.0)).astype(np.float32)


class ResidualBuffer:
    """Ring buffer of the last ``length`` residual frames: raw (L, H, W) float32 for
    footprint extraction, and binned 2x2 + 3x3 box-smoothed (L, H//2, W//2) for detection.

    With ``decay`` > 0 the smoothed frames are also filtered in time,
    f_t = s_t + decay f_{t-1}: close to a matched filter for a calcium transient
    (an exponential decay), it sums a weak cell's evidence over the frames of
    its transient, and a spike whose peak is below the noise of one frame
    stands out: with decay 0.936 (0.5 s at 30 Hz, the default) white noise
    grows 2.8x and the peak of a transient decaying in 0.4-1.5 s 7-12x.
    ``small`` then holds the filtered frames.

    The search needs the temporal maximum of the smoothed buffer; reducing all L
    frames for it cost ~1 ms of every search at 512 x 512. So the buffer also
    keeps the running maximum of each block of ``block`` consecutive frames
    (frame t in block t // block; one ``np.maximum`` per push), and
    :meth:`small_max` combines the blocks inside the window with the few frames
    of the oldest, partly expired block: the same image as
    ``small[held frames].max(axis=0)``, from L / block + block arrays at most.
    """

    def __init__(
        self, length: int, height: int, width: int, block: int = 10, decay: float = 0.0
    ) -> None:
        if not 0 <= decay < 1:
            raise ValueError(f"ResidualBuffer decay must be in [0, 1), got {decay}")
        self.decay = float(decay)
        self.raw = np.zeros((length, height, width), np.float32)
        self.small = np.zeros((length, height // 2, width // 2), np.float32)
        self._tmp = np.zeros((height // 2, width // 2), np.float32)
        self.block = max(1, min(int(block), length))
        self._n_blocks = -(-length // self.block) + 1
        self._block_max = np.zeros((self._n_blocks, height // 2, width // 2), np.float32)
        self.n_seen = 0

    @property
    def length(self) -> int:
        return int(self.raw.shape[0])

    def slot(self) -> np.ndarray:
        """float32 (H, W) view of the raw frame the next :meth:`push` fills: a
        residual computed straight into it is pushed without a copy."""
        return self.raw[self.n_seen % self.length]

    def push(self, residual: np.ndarray) -> None:
        """residual: (H, W) or flat (H*W,) unsmoothed residual of the newest frame
        (or :meth:`slot` itself, written in place)."""
        slot = self.n_seen % self.length
        if not np.shares_memory(residual, self.raw[slot]):
            self.raw[slot] = residual.reshape(self.raw.shape[1:])
        prev = self.small[(self.n_seen - 1) % self.length]
        b = (self.n_seen // self.block) % self._n_blocks
        bin_smooth_filter(
            self.raw[slot], self._tmp, self.small[slot], prev,
            self.decay if self.n_seen else 0.0, self._block_max[b], self.n_seen % self.block == 0,
        )
        self.n_seen += 1

    def small_max(self) -> np.ndarray:
        """float32 (H//2, W//2): the maximum over time of the smoothed frames held
        (zeros before the first push)."""
        n, held = self.n_seen, min(self.n_seen, self.length)
        if held == 0:
            return np.zeros(self.small.shape[1:], np.float32)
        first = n - held  # oldest frame held
        first_full = -(-first // self.block)  # first block that lies wholly inside
        last = (n - 1) // self.block
        loose = np.arange(first, min(first_full * self.block, n)) % self.length
        blocks = np.arange(first_full, last + 1) % self._n_blocks
        parts = [self.small[loose].max(axis=0)] if loose.size else []
        if blocks.size:
            parts.append(self._block_max[blocks].max(axis=0))
        return parts[0] if len(parts) == 1 else np.maximum(parts[0], parts[1])

    def small_max_reference(self) -> np.ndarray:
        """Plain version of :meth:`small_max`: every held frame reduced."""
        if self.n_seen == 0:
            return np.zeros(self.small.shape[1:], np.float32)
        return self.small[self._order()].max(axis=0)

    def _order(self) -> np.ndarray:
        n = min(self.n_seen, self.length)
        start = self.n_seen % self.length if self.n_seen >= self.length else 0
        return (start + np.arange(n)) % self.length

    def patch(self, box: tuple[slice, slice]) -> np.ndarray:
        """Raw residuals in a (row, col) box, oldest first: (n, h, w), a small copy."""
        return self.raw[:, box[0], box[1]][self._order()]

    def pixels(self, index: np.ndarray) -> np.ndarray:
        """Raw residuals at flat pixel indices, oldest first: (n, len(index)), a small copy."""
        flat = self.raw.reshape(self.length, -1)
        return flat[:, index][self._order()]


@numba.njit(cache=True)
def local_peaks(image, size, threshold, excluded):  # pragma: no cover - compiled
    """Pixels of image (h, w) above threshold, not excluded (bool (h, w)), that equal
    the maximum of their size x size neighbourhood (clipped at the edges) ->
    (rows, cols) int64. Only pixels above threshold are examined: at 512 x 512
    a whole-image maximum filter cost ~0.7 ms per search, this ~0.05 ms."""
    h, w = image.shape
    half = size // 2
    rows = np.empty(h * w, np.int64)
    cols = np.empty(h * w, np.int64)
    n = 0
    for i in range(h):
        for j in range(w):
            v = image[i, j]
            if not v > threshold or excluded[i, j]:
                continue
            peak = True
            for a in range(max(i - half, 0), min(i + half + 1, h)):
                for b in range(max(j - half, 0), min(j + half + 1, w)):
                    if image[a, b] > v:
                        peak = False
                        break
                if not peak:
                    break
            if peak:
                rows[n] = i
                cols[n] = j
                n += 1
    return rows[:n], cols[:n]


def local_peaks_reference(
    image: np.ndarray, size: int, threshold: float, excluded: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Plain version of :func:`local_peaks`, by a whole-image maximum filter (its
    reflected edges hold only values inside the clipped neighbourhood)."""
    peaks = (image == ndimage.maximum_filter(image, size=size)) & (image > threshold) & ~excluded
    return np.nonzero(peaks)


class RejectedPeaks:
    """Where the residual search recently extracted a candidate and turned it down.

    A transient stays in the residual buffer for its whole length, so without a
    memory the search re-extracts the same rejected neurite or noise blob at
    every search for two seconds (at 512 x 512, 134 extractions in 30 searches,
    most of them repeats), and such peaks, being strong, took the few
    extraction slots from weaker, real cells. A rejection marks, on the binned
    grid of shape ``shape``, the footprint it extracted (and a disc of
    ``radius`` binned pixels round its peak) with its peak-to-noise and frame.
    A later peak there is skipped unless its peak-to-noise has grown past
    ``growth`` x the mark's (new evidence: a larger transient) or the mark is ``lifetime``
    frames old (all the evidence it was judged on has left the buffer). One
    extraction then covers every local maximum along a neurite.
    """

    def __init__(
        self, shape: tuple[int, int], lifetime: int, radius: float = 2.0, growth: float = 1.25
    ) -> None:
        self.lifetime, self.radius, self.growth = int(lifetime), float(radius), float(growth)
        self._score = np.zeros(shape, np.float32)
        self._frame = np.full(shape, np.iinfo(np.int64).min // 2, np.int64)

    def live(self, now: int) -> np.ndarray:
        """bool (h, w): binned pixels with a mark younger than ``lifetime`` frames."""
        return now - self._frame < self.lifetime

    def blocks(self, row: int, col: int, score: float, now: int) -> bool:
        return bool(now - self._frame[row, col] < self.lifetime
                    and score <= self.growth * self._score[row, col])

    def add(self, row: int, col: int, score: float, now: int,
            region: tuple[np.ndarray, np.ndarray] | None = None) -> None:
        """Mark a rejection at binned (row, col); region: (rows, cols) binned pixels of
        the footprint it extracted, marked too (those off the grid are ignored)."""
        h, w = self._score.shape
        r = int(np.ceil(self.radius))
        yy, xx = np.mgrid[
            max(row - r, 0) : min(row + r + 1, h), max(col - r, 0) : min(col + r + 1, w)
        ]
        disc = (yy - row) ** 2 + (xx - col) ** 2 <= self.radius**2
        rows, cols = yy[disc], xx[disc]
        if region is not None:
            inside = (region[0] < h) & (region[1] < w)
            rows, cols = np.r_[rows, region[0][inside]], np.r_[cols, region[1][inside]]
        stale = now - self._frame[rows, cols] >= self.lifetime
        self._score[rows[stale], cols[stale]] = 0.0
        self._score[rows, cols] = np.maximum(self._score[rows, cols], score)
        self._frame[rows, cols] = now


class SearchRound:
    """One search for new components, spread over frames.

    :meth:`start` finds the peaks of the buffer's peak-to-noise image that no
    component covers (cheap: a block maximum and a thresholded peak scan);
    each :meth:`next` then extracts peaks from that list, strongest first,
    until one extraction has been made (rank-1 factorisation of the buffer
    around the peak, ~0.4 ms at r = 6, then the soma gate and the space
    correlation test), and returns the accepted candidate or None. At most
    ``max_tries`` extractions (default 4 x max_new) and max_new acceptances per
    round. Done in one
    frame, up to eight extractions and their additions made that frame the
    slowest of all (p99 of a 512 x 512 / 300-neuron run); one extraction per
    frame bounds it. Peaks that an accepted candidate's footprint covers, or
    that ``rejected`` remembers, are skipped without an extraction.
    """

    def __init__(
        self,
        *,
        radius_px: float,
        min_pnr: float,
        min_space_corr: float | SpaceTest,
        max_new: int,
        gate: SomaGate | None = None,
        rejected: RejectedPeaks | None = None,
        max_tries: int | None = None,
        local_background: bool = False,
    ) -> None:
        self.radius_px, self.min_pnr = radius_px, min_pnr
        self.space = SpaceTest.of(min_space_corr)
        self.local_background = bool(local_background)
        self.max_new = max_new
        self.max_tries = 4 * max_new if max_tries is None else int(max_tries)
        self.gate = gate if gate is not None else SomaGate(radius_px)
        self.rejected = rejected
        # called with an Extraction after every extraction (diagnostics; None: off)
        self.observer: Callable[[Extraction], None] | None = None
        self._queue: list[tuple[int, int, float]] = []
        self._taken: np.ndarray | None = None
        self._accepted = self._attempts = 0

    @property
    def active(self) -> bool:
        return bool(self._queue) and self._accepted < self.max_new and (
            self._attempts < self.max_tries
        )

    def start(self, buffer, noise_small: np.ndarray, covered: np.ndarray, now: int) -> None:
        """A new round on ``buffer`` (anything with ``small_max()``), replacing any
        unfinished one. noise_small: float32 (H//2, W//2) noise sigma of the binned,
        smoothed residual; covered: bool (H, W), pixels inside a footprint's core."""
        pnr = buffer.small_max() / noise_small
        size = max(3, int(round(self.radius_px / 2)) | 1)
        covered_small = np.ascontiguousarray(
            covered[: 2 * pnr.shape[0] : 2, : 2 * pnr.shape[1] : 2]
        )
        ys, xs = local_peaks(
            np.ascontiguousarray(pnr, np.float32), size, np.float32(self.min_pnr), covered_small
        )
        order = np.argsort(-pnr[ys, xs], kind="stable")
        self._queue = [(int(ys[i]), int(xs[i]), float(pnr[ys[i], xs[i]])) for i in order][::-1]
        self._taken = covered.copy()
        self._accepted = self._attempts = 0

    def frame(self, now: int, every: int, buffer, noise_small: np.ndarray,
              covered: Callable[[], np.ndarray], view: Callable | None = None
              ) -> Candidate | None:
        """A stepper's share of the search at frame ``now``: every ``every`` frames
        a new round starts (on ``view()``, default ``buffer``; ``covered()`` gives
        the core mask; both called only then) and nothing is extracted that frame,
        so that no frame pays for both; on the other frames of a round, :meth:`next`."""
        if now % every == 0 and self.max_new:
            self.start(buffer if view is None else view(), noise_small, covered(), now)
            return None
        return self.next(buffer, now) if self.active else None

    def _record(self, now, y, x, score, box, patch, trace, r) -> Extraction:
        if patch is None:
            verdict = "nothing at the peak"
        elif trace is not None:
            verdict = "accepted"
        else:
            verdict = self.gate.why_not_patch(patch) or "space correlation"
        return Extraction(int(now), int(y), int(x), float(score), box,
                          None if patch is None else patch.copy(), float(r), verdict)

    def next(self, buffer, now: int) -> Candidate | None:
        """Extract the next peak still worth one (``buffer``: anything with
        ``patch(box)``); the accepted candidate, or None."""
        half = int(np.ceil(2.5 * self.radius_px))
        while self.active:  # (only after start: the queue is empty before)
            H, W = self._taken.shape
            ys, xs, score = self._queue.pop()
            y, x = 2 * ys + 1, 2 * xs + 1
            if self._taken[min(y, H - 1), min(x, W - 1)]:
                continue
            if self.rejected is not None and self.rejected.blocks(ys, xs, score, now):
                continue
            self._attempts += 1
            box = (
                slice(max(y - half, 0), min(y + half + 1, H)),
                slice(max(x - half, 0), min(x + half + 1, W)),
            )
            patch, trace, r = _extract(
                buffer.patch(box), (y - box[0].start, x - box[1].start), self.radius_px,
                self.space, self.gate, self.local_background,
            )
            if self.observer is not None:
                self.observer(self._record(now, y, x, score, box, patch, trace, r))
            if trace is None:
                if self.rejected is not None:
                    region = None
                    if patch is not None:  # its pixels at even (row, col): binned // 2
                        r, c = np.nonzero(patch >= 0.2)
                        r, c = r + box[0].start, c + box[1].start
                        even = (r % 2 == 0) & (c % 2 == 0)
                        region = r[even] // 2, c[even] // 2
                    self.rejected.add(ys, xs, score, now, region)
                return None
            footprint = np.zeros((H, W), np.float32)
            footprint[box] = patch
            self._taken[box] |= patch >= 0.2
            self._accepted += 1
            return Candidate(footprint, trace, score)
        return None


def find_candidates(
    buffer: ResidualBuffer,
    noise_small: np.ndarray,
    covered: np.ndarray,
    *,
    radius_px: float,
    min_pnr: float,
    min_space_corr: float | SpaceTest,
    max_new: int,
    gate: SomaGate | None = None,
    rejected: RejectedPeaks | None = None,
    now: int = 0,
    local_background: bool = False,
) -> list[Candidate]:
    """Cell-sized transients in the residual buffer that no component covers: a
    whole :class:`SearchRound` at once.

    noise_small: float32 (H//2, W//2) noise sigma of the binned, smoothed
    residual; covered: bool (H, W), pixels already inside a footprint's core;
    gate: the shape a candidate's footprint must have (default: a SomaGate of
    radius_px); rejected: memory of recent rejections (skipped peaks; every
    rejection here is recorded in it at frame ``now``); min_space_corr: a
    threshold or a :class:`SpaceTest`; local_background: as
    :func:`_extract`. At most 4 x max_new peaks are extracted. Returns at most
    max_new candidates, strongest first.
    """
    search = SearchRound(
        radius_px=radius_px, min_pnr=min_pnr, min_space_corr=min_space_corr,
        max_new=max_new, gate=gate, rejected=rejected, local_background=local_background,
    )
    search.start(buffer, noise_small, covered, now)
    out = []
    while search.active:
        found = search.next(buffer, now)
        if found is not None:
            out.append(found)
    return out


def transient_frames(trace: np.ndarray, level: float = 0.5) -> slice:
    """The frames of ``trace``'s largest transient: the run of consecutive frames
    around its maximum where it stays >= level x that maximum."""
    peak = int(np.argmax(trace))
    above = trace >= level * trace[peak]
    lo = peak
    while lo > 0 and above[lo - 1]:
        lo -= 1
    hi = peak + 1
    while hi < len(trace) and above[hi]:
        hi += 1
    return slice(lo, hi)


def _extract_reference(
    local: np.ndarray, centre: tuple[int, int], radius_px: float,
    min_space_corr: float | SpaceTest, gate: SomaGate, local_background: bool = False,
) -> tuple[np.ndarray | None, np.ndarray | None, float]:
    """Plain version of :func:`_extract`: the whole patch smoothed first."""
    smooth = ndimage.gaussian_filter(local, (0, 0.25 * radius_px, 0.25 * radius_px),
                                     mode="constant")
    fit = footprint_with_background if local_background else rank1_footprint
    return _fit_smoothed(smooth, centre, min_space_corr, gate, fit)


@lru_cache(maxsize=32)
def _smoothing_matrix(n: int, sigma: float) -> np.ndarray:
    """(n, n) float32 matrix of a 1-D Gaussian filter with zero padding, as
    ``ndimage.gaussian_filter1d(x, sigma, mode="constant")`` applies it (the same
    truncated, normalised kernel): symmetric, so it is its own transpose. Read-only."""
    m = ndimage.gaussian_filter1d(np.eye(n), sigma, axis=0, mode="constant").astype(np.float32)
    m.flags.writeable = False
    return m


def _extract(
    local: np.ndarray, centre: tuple[int, int], radius_px: float,
    min_space_corr: float | SpaceTest, gate: SomaGate, local_background: bool = False,
) -> tuple[np.ndarray | None, np.ndarray | None, float]:
    """One candidate from its raw residual patch (L, h, w): (footprint (h, w), trace
    (L,), r) if accepted; (footprint, None, r) if its shape or space correlation
    fails; (None, None, nan) if nothing was found at the centre. r is its space
    correlation (nan where the soma gate refused it before the test).

    The patch is seen through a Gaussian of 0.25 r (zero padded). Smoothing all L
    frames cost 0.5 of the 0.8 ms of an extraction, so the smoothing S is moved
    onto the images the factorisation forms instead: S is linear and symmetric,
    so (S P)^T c = S (P^T c) and (S P) a = P (S a), and the rank-1 iterations of
    :func:`rank1_footprint`, the trace and the transient's mean frame come out the
    same as on the smoothed patch (:func:`_extract_reference`; tested) from a few
    (h, h) and (w, w) matrix products.

    The space correlation is that of the footprint with the mean frame of the
    candidate's largest transient (:func:`transient_frames`), not with its
    single brightest frame: a weak cell found by the filtered search has a
    transient that no one frame shows above the noise. min_space_corr: its
    threshold, or a :class:`SpaceTest` (a lower one for a whole cell's area).

    local_background: the footprint is fitted with the patch's background trace
    as a second regressor (:func:`rtcal.detect.seed.footprint_with_background`,
    CNMF-E's ``extract_ac``) instead of by rank-1 factorisation. The residual of
    2p data keeps the neuropil's local fluctuation, which the low-rank background
    cannot follow and which rises with the population's activity, so a very active
    cell correlates with its whole patch: rank-1 footprints of such cells came out
    2-4x their cell's area (a skirt at 0.2-0.35 of the maximum; development 2p
    movies). That fit needs every pixel's smoothed trace, so here the patch is
    smoothed frame by frame (two small matrix products per frame)."""
    L, h, w = local.shape
    sy = _smoothing_matrix(h, 0.25 * radius_px)
    sx = _smoothing_matrix(w, 0.25 * radius_px)
    if local_background:
        return _fit_smoothed(sy @ np.asarray(local, np.float32) @ sx, centre, min_space_corr,
                             gate, footprint_with_background_fast)

    def smooth(image: np.ndarray) -> np.ndarray:
        return sy @ image @ sx

    flat = np.ascontiguousarray(local, np.float32).reshape(L, h * w)
    y, x = centre
    seed = np.zeros((h, w), np.float32)
    seed[max(y - 1, 0) : y + 2, max(x - 1, 0) : x + 2] = 1.0
    seed /= seed.sum()
    c = np.maximum(flat @ smooth(seed).reshape(-1), 0.0)
    a = np.zeros((h, w), np.float32)
    for _ in range(10):  # rank1_footprint's iterations on S P
        cc = float(c @ c)
        if cc <= 0:
            break
        a = np.maximum(smooth((flat.T @ c).reshape(h, w)), 0.0) / cc
        aa = float(np.sum(a * a))
        if aa <= 0:
            break
        c = np.maximum(flat @ smooth(a).reshape(-1), 0.0) / aa
    patch = clean_footprint(a, centre)
    if patch is None:
        return None, None, np.nan
    if gate.why_not_patch(patch) is not None:
        return patch, None, np.nan
    a = patch.reshape(-1)
    trace = np.maximum(flat @ smooth(patch).reshape(-1), 0.0) / float(a @ a)
    mean_frame = smooth(flat[transient_frames(trace)].mean(axis=0).reshape(h, w))
    r = float(np.corrcoef(mean_frame.reshape(-1), a)[0, 1])
    if not SpaceTest.of(min_space_corr).passes(r, patch):
        return patch, None, r
    return patch, trace.astype(np.float32), r


def _fit_smoothed(
    smooth: np.ndarray, centre: tuple[int, int], min_space_corr: float | SpaceTest,
    gate: SomaGate,
    fit: Callable[[np.ndarray, tuple[int, int]], np.ndarray],
) -> tuple[np.ndarray | None, np.ndarray | None, float]:
    """Footprint ``fit(smooth, centre)`` on the smoothed patch (L, h, w), cleaned,
    then the soma gate and the space-correlation test, as :func:`_extract`
    returns."""
    patch = clean_footprint(fit(smooth, centre), centre)
    if patch is None:
        return None, None, np.nan
    if gate.why_not_patch(patch) is not None:
        return patch, None, np.nan
    flat = smooth.reshape(smooth.shape[0], -1)
    a = patch.reshape(-1)
    trace = np.maximum(flat @ a, 0.0) / float(a @ a)
    r = float(np.corrcoef(flat[transient_frames(trace)].mean(axis=0), a)[0, 1])
    if not SpaceTest.of(min_space_corr).passes(r, patch):
        return patch, None, r
    return patch, trace.astype(np.float32), r


@numba.njit(cache=True)
def _covered_core_kernel(indptr, indices, data, core):  # pragma: no cover - compiled
    for k in range(indptr.shape[0] - 1):
        peak = np.float32(0.0)
        for p in range(indptr[k], indptr[k + 1]):
            if data[p] > peak:
                peak = data[p]
        if peak <= 0:
            continue
        level = np.float32(0.3) * peak
        for p in range(indptr[k], indptr[k + 1]):
            if data[p] >= level:
                core[indices[p]] = True
    return core


def covered_core(csr, shape: tuple[int, int]) -> np.ndarray:
    """bool (H, W): pixels where some footprint (rows of ``csr``, K x P) is >= 0.3 x its
    maximum and non-zero (retired components have zero weight): a new component may
    not start there. (One pass over the CSR arrays: the vectorised form,
    :func:`covered_core_reference`, took 1.3 ms at 512 x 512 / 300 components.)"""
    core = np.zeros(csr.shape[1], np.bool_)
    _covered_core_kernel(csr.indptr, csr.indices, csr.data.astype(np.float32, copy=False), core)
    return core.reshape(shape)


def covered_core_reference(csr, shape: tuple[int, int]) -> np.ndarray:
    """Plain version of :func:`covered_core`."""
    core = np.zeros(csr.shape[1], bool)
    rows = np.repeat(np.arange(csr.shape[0]), np.diff(csr.indptr))
    peak = np.zeros(csr.shape[0], np.float32)
    np.maximum.at(peak, rows, csr.data)
    core[csr.indices[(csr.data >= 0.3 * peak[rows]) & (csr.data > 0)]] = True
    return core.reshape(shape)
