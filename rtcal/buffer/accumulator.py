"""Running statistics of the last T frames, updated a little with every frame.

``SummaryAccumulator`` holds the frames of a rolling window in a preallocated
ring and keeps the seven sums of ``rtcal.buffer.fold.STAT_NAMES`` over the
window's flat (background-free) frames, so that mean, standard deviation,
8-neighbour local correlation, noise and the peak of the temporally high-passed
movie cost O(H W) to read out, whatever T is.

How the sums follow the window. Frames are grouped into blocks of B
consecutive frames (B = min(16, T // 4), at least 2). A block's contribution is
added once the block is complete, in a cycle of at most B pushes that does one
band of rows per push, so every push does the same small amount of work (about
one frame's worth of arithmetic, on rows that stay in cache) and no push does a
whole block at once. The block's float32 contribution is kept, and once its last
frame has left the window the same numbers are subtracted, a band per push in a
later cycle (the frames that leave are never re-read). Each block also keeps the
per-pixel maximum of its pair means (z_t + z_{t-1}) / 2; the window's maximum is
the maximum over the blocks wholly inside it plus the few frames at its two
ends. The ring holds T + B + 2 frames, enough for ``stats()`` to finish the
pending bands and correct the two ends exactly from the frames, so its result
is that of the window alone (``rtcal.buffer.reference`` gives the same numbers
from the frames). Memory: T + B + 2 frames, plus 7 float32 images per block held
(about T / B + 4 blocks), plus one peak image per block.

Precision. A block's contributions are summed in float32 (so the kernel runs
at float32 vector speed) and then added to float64 totals. To keep float32
sums of squares accurate when a pixel's level is large against its
fluctuations, the sums are of d = z - ref, with ref the flat image of the
first frame pushed (fixed for the buffer's life): mean = ref + Sum d / T, and
variances and covariances do not depend on ref. A block is removed by
subtracting exactly the float32 numbers that were added, so the totals do not
drift.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from rtcal.buffer import fold, readout
from rtcal.errors import RtcalError

MAX_BLOCK_FRAMES = 16
ACTIVITY_THRESHOLD = 2.0  # noise sigmas a 4 x 4 block must rise before it counts as active


class KeyframeError(RtcalError, ValueError):
    """A keyframe-buffer input or setting is invalid; the message names it."""


@dataclass(frozen=True)
class WindowStats:
    """Statistics of one window of T frames; images float32 (H, W).

    mean: mean raw frame. flat_mean, std: mean and standard deviation of the flat
    frames z = y - smooth background. corr: mean Pearson correlation of each pixel
    of z with its 8 neighbours (0 where a variance is 0). noise: per-pixel noise
    sigma, mean |z_t - z_{t-1}| * sqrt(pi) / 2. hp_max: max over t of the pair
    mean (z_t + z_{t-1}) / 2 minus flat_mean (the temporally high-passed movie's
    peak). activity: (T,) float32 key-frame score of each frame, oldest first:
    sum over 4 x 4 blocks of max(0, (a_t - mean_t a) / sigma_a - 2), with a the
    block means of z and sigma_a their noise (as ``noise``).
    """

    mean: np.ndarray
    flat_mean: np.ndarray
    std: np.ndarray
    corr: np.ndarray
    noise: np.ndarray
    hp_max: np.ndarray
    activity: np.ndarray


def _check_size(name: str, value: object, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
        raise KeyframeError(f"{name} must be an integer >= {minimum}, got {value!r}")
    return int(value)


class SummaryAccumulator:
    """Rolling-window statistics of (H, W) frames over the last ``capacity_frames``.

    ``push(frame)`` adds a frame (the oldest leaves once the window is full);
    ``stats()`` reads out ``WindowStats``; ``flat_deviation(pos, stats)`` gives
    the flat frame at window position ``pos`` minus ``stats.flat_mean``.
    Nothing is allocated per push.
    """

    def __init__(self, height: int, width: int, capacity_frames: int) -> None:
        self.height = _check_size("height", height, 4)
        self.width = _check_size("width", width, 4)
        self.capacity = _check_size("capacity_frames", capacity_frames, 2)
        H, W, T = self.height, self.width, self.capacity
        self.block = B = max(2, min(MAX_BLOCK_FRAMES, T // 4))
        self.n_slots = R = T + B + 2
        self.ring = np.zeros((R, H, W), np.float32)
        self.bg = np.zeros((R, *fold.coarse_shape(H, W, fold.BG_SHIFT)), np.float32)
        self.act = np.zeros((R, *fold.coarse_shape(H, W, fold.ACT_SHIFT)), np.float32)
        self.sums = np.zeros((fold.N_STATS, H, W))
        self.ref = np.zeros((H, W), np.float32)  # the first frame's flat image (see above)
        self.n_block_slots = T // B + 4  # blocks held: [_removed, _added) and one being added
        self.block_peak = np.full((self.n_block_slots, H, W), -np.inf, np.float32)
        self.block_sums = np.zeros((self.n_block_slots, fold.N_STATS, H, W), np.float32)
        self._slot_frame = np.full(R, -1, np.int64)  # which frame each slot holds
        self._taps = fold.gaussian_taps(fold.BACKGROUND_SIGMA_PX / (1 << fold.BG_SHIFT))
        self._block8 = np.zeros(self.bg.shape[1:], np.float32)
        self._block4 = np.zeros(self.act.shape[1:], np.float32)
        self._blur_scratch = np.zeros(self.bg.shape[1:], np.float32)
        self._blur_padded = np.zeros(self.bg.shape[2] + len(self._taps) - 1, np.float32)
        n_bands = min(B, H)
        self._band_edges = np.linspace(0, H, n_bands + 1).astype(np.int64)
        self._acc = np.zeros((fold.N_STATS, fold.ROW_GROUP, W), np.float32)
        self._rows = np.zeros((3, fold.ROW_GROUP + 1, W), np.float32)
        self._offsets = np.arange(B, dtype=np.int64)
        # The fold call of the block being added: one run of B frames, weights +1.
        self._run_slots = np.zeros(B, np.int64)
        self._run_prev = np.full(1, -1, np.int64)
        self._run_bounds = np.array([0, B], np.int64)
        self._run_weight = np.ones(B)
        self._run_max = np.ones(B, np.bool_)
        self._no_store = np.zeros((fold.N_STATS, 1, 1), np.float32)
        self.n_pushed = 0
        self._added = 0  # blocks [0, _added) are in self.sums ...
        self._removed = 0  # ... and blocks [0, _removed) have been taken out again
        self._job_add = -1  # block being added in the current cycle of bands, or -1
        self._job_remove = -1  # block being removed in it, or -1
        self._phase = -1  # band of the current cycle, -1 between cycles

    def __len__(self) -> int:
        return min(self.n_pushed, self.capacity)

    @property
    def start(self) -> int:
        """Number (in push order) of the oldest frame in the window."""
        return max(0, self.n_pushed - self.capacity)

    def slot(self, frame_number: int) -> int:
        return frame_number % self.n_slots

    def window_slots(self) -> np.ndarray:
        """(T,) int64 ring slots of the window's frames, oldest first."""
        return np.arange(self.start, self.n_pushed, dtype=np.int64) % self.n_slots

    def push(self, frame: np.ndarray) -> None:
        """Add one frame: (H, W), any real dtype, finite."""
        if not isinstance(frame, np.ndarray) or frame.shape != (self.height, self.width):
            shape = getattr(frame, "shape", type(frame).__name__)
            raise KeyframeError(f"frame must be an array of shape {(self.height, self.width)}, "
                                f"got {shape}")
        if frame.dtype.kind not in "fiu" or frame.dtype == np.float16:
            raise KeyframeError(f"frame must be an integer, float32 or float64 array, "
                                f"got {frame.dtype}")
        s = self.slot(self.n_pushed)
        # The slot being overwritten is older than anything still being folded.
        if not fold.ingest_frame(frame, self.ring[s], self._block8, self._block4):
            raise KeyframeError("frame contains NaN or infinite values (or overflows float32)")
        fold.blur_background(self._block8, self._taps, self._blur_scratch, self._blur_padded,
                             self.bg[s])
        fold.flatten_blocks(self._block4, self.bg[s], self.act[s])
        if self.n_pushed == 0:
            step = 1 << fold.BG_SHIFT
            up = np.repeat(np.repeat(self.bg[s], step, 0), step, 1)[: self.height, : self.width]
            np.subtract(self.ring[s], up, out=self.ref)
        self._slot_frame[s] = self.n_pushed
        self.n_pushed += 1
        self._step()

    # --- block bookkeeping -------------------------------------------------------------

    def _add_due(self) -> bool:
        return (self._added + 1) * self.block <= self.n_pushed

    def _remove_due(self) -> bool:
        return (self._removed + 1) * self.block <= self.start and self._removed < self._added

    def _step(self) -> None:
        """One band of the current cycle; a cycle adds one complete block and removes
        one that has left the window, a band of rows per push."""
        if self._phase < 0:
            self._job_add = self._added if self._add_due() else -1
            self._job_remove = self._removed if self._remove_due() else -1
            if self._job_add < 0 and self._job_remove < 0:
                return
            if self._job_add >= 0:
                self._start_add(self._job_add)
            self._phase = 0
        r0 = int(self._band_edges[self._phase])
        r1 = int(self._band_edges[self._phase + 1])
        if self._job_add >= 0:
            k = self._job_add % self.n_block_slots
            fold.fold_rows(self.ring, self.bg, self.ref, self._run_slots, self._run_bounds,
                           self._run_prev, self._run_weight, self._run_weight, self._run_max,
                           r0, r1, self.sums, self.block_peak[k], self._acc, self._rows,
                           self.block_sums[k], 0)
        if self._job_remove >= 0:
            k = self._job_remove % self.n_block_slots
            fold.unfold_rows(self.sums, self.block_sums[k], r0, r1)
        self._phase += 1
        if self._phase == len(self._band_edges) - 1:
            self._added += self._job_add >= 0
            self._removed += self._job_remove >= 0
            self._phase = -1

    def _start_add(self, k: int) -> None:
        """Point the fold arguments at block k; check what it needs is still there."""
        B = self.block
        first = k * B
        np.add(self._offsets, first, out=self._run_slots)
        np.remainder(self._run_slots, self.n_slots, out=self._run_slots)
        self._run_prev[0] = self.slot(first - 1) if first >= 1 else -1
        oldest = max(first - 1, 0)
        if self._slot_frame[self.slot(oldest)] != oldest:
            raise AssertionError(f"frame {oldest} was overwritten before block {k} was added")
        if k - self._removed >= self.n_block_slots:
            raise AssertionError(f"block {k} would overwrite the stored sums of a block "
                                 "still in the window")
        self.block_peak[k % self.n_block_slots] = -np.inf

    def _catch_up(self) -> None:
        """Finish every pending band: afterwards sums hold exactly the blocks
        [_removed, _added) = [start // B, n_pushed // B)."""
        while True:
            self._step()
            if self._phase < 0 and not (self._add_due() or self._remove_due()):
                return

    # --- read-out ------------------------------------------------------------------

    def _exact_sums(self) -> tuple[np.ndarray, np.ndarray]:
        """Sums and pair-mean peak over exactly the window's frames and pairs."""
        self._catch_up()
        B, n, start = self.block, self.n_pushed, self.start
        a, r = self._added, self._removed
        sums = self.sums.copy()
        peak = np.full((self.height, self.width), -np.inf, np.float32)
        # Whole blocks whose pairs all lie inside the window give their stored peaks.
        first_whole = 0 if start == 0 else -(-(start + 1) // B)
        whole = range(first_whole, a) if first_whole < a else range(0)
        # The rest is read from the ring: [r B, ...) at the old end, [a B, n) at the new.
        old_end = first_whole * B if whole else n
        runs = [(r * B, min(max(old_end, start + 1), n))]
        if whole:
            runs.append((max(a * B, start + 1), n))
        self._correct([(lo, hi) for lo, hi in runs if hi > lo], sums, peak)
        for k in whole:
            np.maximum(peak, self.block_peak[k % self.n_block_slots], out=peak)
        return sums, peak

    def _correct(self, runs: list[tuple[int, int]], sums: np.ndarray, peak: np.ndarray) -> None:
        """Fold the frames of ``runs`` ([lo, hi) frame numbers) with weights (wanted -
        already summed) and their pair peaks where wanted, over all rows."""
        if not runs:
            return
        B, start, n = self.block, self.start, self.n_pushed
        t = np.concatenate([np.arange(lo, hi) for lo, hi in runs])
        have_frame = (t >= self._removed * B) & (t < self._added * B)
        want_pair = t >= start + 1
        w_frame = ((t >= start) & (t < n)).astype(np.float64) - have_frame
        w_pair = want_pair.astype(np.float64) - (have_frame & (t >= 1))
        bounds = np.cumsum([0] + [hi - lo for lo, hi in runs]).astype(np.int64)
        prev = np.array([self.slot(lo - 1) if lo >= 1 else -1 for lo, _ in runs], np.int64)
        fold.fold_rows(self.ring, self.bg, self.ref, t % self.n_slots, bounds, prev, w_frame,
                       w_pair, want_pair, 0, self.height, sums, peak, self._acc, self._rows,
                       self._no_store, -1)

    def stats(self) -> WindowStats:
        """Statistics of the current window (needs at least 2 frames)."""
        T = len(self)
        if T < 2:
            raise KeyframeError(f"window statistics need at least 2 frames, have {T}")
        sums, peak = self._exact_sums()
        shift = sums[0] / T  # mean of d = z - ref
        var = sums[1] / T - shift * shift
        mean = self.ref + shift
        # What is left of a constant pixel is rounding: of the float32 block sums of d
        # (relative 1e-7 of d^2) and of the float64 totals.
        var[var <= 1e-6 * shift * shift + 1e-12 * mean * mean] = 0.0
        std = np.sqrt(var)
        noise = np.maximum(sums[2] / (T - 1) * readout.SQRT_PI_OVER_2, readout.NOISE_FLOOR)
        corr = np.empty(std.shape, np.float32)
        readout.local_correlation(sums, shift, std, T, corr)
        slots = self.window_slots()
        activity = np.empty(T, np.float32)
        readout.activity_scores(self.act[slots], ACTIVITY_THRESHOLD, activity)
        bg_mean = self.bg[slots].mean(axis=0, dtype=np.float64)
        step = 1 << fold.BG_SHIFT
        bg_full = np.repeat(np.repeat(bg_mean, step, 0), step, 1)[: self.height, : self.width]
        return WindowStats(
            mean=(mean + bg_full).astype(np.float32),
            flat_mean=mean.astype(np.float32),
            std=std.astype(np.float32),
            corr=corr,
            noise=noise.astype(np.float32),
            hp_max=(peak - mean).astype(np.float32),
            activity=activity,
        )

    def flat_deviation(self, position: int, stats: WindowStats) -> np.ndarray:
        """Flat frame at window position ``position`` (0 = oldest) minus stats.flat_mean.
        float32 (H, W)."""
        if not 0 <= position < len(self):
            raise KeyframeError(f"window position {position} outside [0, {len(self)})")
        s = self.slot(self.start + position)
        step = 1 << fold.BG_SHIFT
        bg = np.repeat(np.repeat(self.bg[s], step, 0), step, 1)[: self.height, : self.width]
        return self.ring[s] - bg - stats.flat_mean
