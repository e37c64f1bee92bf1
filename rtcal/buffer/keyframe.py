"""The live keyframe buffer: a rolling window of recent frames, its running summary
images and activity-chosen key frames, read out as the detector's input.

``KeyframeBuffer.push`` is called once per (motion-corrected) frame by the frame
loop and costs a fixed, small amount of work (``SummaryAccumulator``);
``snapshot()`` copies the window and builds the detector's input channels
(``rtcal.detect.inputs`` defines them), for a detector re-run off the frame loop.
The same class computes the offline input (``rtcal.detect.inputs.input_channels``).

Key frames: the n_key frames with the largest activity score (``WindowStats.activity``:
summed rise of 4 x 4 block means of the flat frame above 2 noise sigmas), picked
greedily, best first, at least ``min(5, T // (2 n_key))`` frames apart so that one
long transient does not fill every slot.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from rtcal.buffer.accumulator import KeyframeError, SummaryAccumulator, _check_size
from rtcal.buffer.channels import N_SUMMARY, assemble_channels

KEY_MIN_GAP_FRAMES = 5

__all__ = [
    "KEY_MIN_GAP_FRAMES",
    "KeyframeBuffer",
    "KeyframeError",
    "KeyframeSnapshot",
    "select_key_frames",
]


def select_key_frames(activity: np.ndarray, n_key: int, min_gap: int) -> np.ndarray:
    """Positions (n_key,) int64 of the highest-scoring frames, best first, pairwise at
    least ``min_gap`` apart where the window allows (then the best of the rest).
    Ties go to the older frame."""
    order = np.argsort(-np.asarray(activity, np.float64), kind="stable")
    chosen: list[int] = []
    for pos in order:
        if all(abs(int(pos) - c) >= min_gap for c in chosen):
            chosen.append(int(pos))
            if len(chosen) == n_key:
                return np.asarray(chosen, np.int64)
    rest = [int(p) for p in order if int(p) not in chosen]
    return np.asarray(chosen + rest[: n_key - len(chosen)], np.int64)


@dataclass(frozen=True)
class KeyframeSnapshot:
    """One read-out of the buffer. frames: float32 (T, H, W), a copy, oldest first;
    indices: (T,) int64 the frames' indices as pushed; channels: float32
    (5 + n_key, H, W) the detector's input (``rtcal.detect.inputs``)."""

    frames: np.ndarray
    indices: np.ndarray
    channels: np.ndarray


class KeyframeBuffer:
    """Rolling window of the last ``capacity_frames`` frames of (height, width) pixels.

    push(index, frame): frame (H, W) float32, index strictly increasing (gaps allowed).
    All memory is allocated here (``SummaryAccumulator``: a ring of T + B + 2 frames,
    B <= 16, and 8 images per block of B frames held: 1.5 T + 64 frames in all at B = 16).
    """

    def __init__(self, height: int, width: int, capacity_frames: int, n_key: int = 3) -> None:
        self.n_key = _check_size("n_key", n_key, 1)
        capacity = _check_size("capacity_frames", capacity_frames, 2)
        if self.n_key > capacity:
            raise KeyframeError(f"n_key={n_key} exceeds capacity_frames={capacity}")
        self.acc = SummaryAccumulator(height, width, capacity)
        self._indices = np.full(self.acc.n_slots, -1, np.int64)
        self._last_index: int | None = None

    @property
    def n_channels(self) -> int:
        return N_SUMMARY + self.n_key

    def __len__(self) -> int:
        return len(self.acc)

    def push(self, index: int, frame: np.ndarray) -> None:
        """Add frame number ``index``; the oldest frame leaves once the buffer is full."""
        if isinstance(index, bool) or not isinstance(index, (int, np.integer)):
            raise KeyframeError(f"index must be an integer, got {index!r}")
        if self._last_index is not None and index <= self._last_index:
            raise KeyframeError(f"index {index} does not follow the previous index "
                                f"{self._last_index} (must increase)")
        if not isinstance(frame, np.ndarray) or frame.dtype != np.float32:
            dtype = getattr(frame, "dtype", type(frame).__name__)
            raise KeyframeError(f"frame must be a float32 array, got {dtype} "
                                "(convert with frame.astype(np.float32))")
        self._indices[self.acc.slot(self.acc.n_pushed)] = index
        self.acc.push(frame)
        self._last_index = int(index)

    def key_positions(self, activity: np.ndarray) -> np.ndarray:
        """Window positions (n_key,) int64 of the key frames for these activity scores."""
        gap = max(1, min(KEY_MIN_GAP_FRAMES, len(activity) // (2 * self.n_key)))
        return select_key_frames(activity, self.n_key, gap)

    def channels(self) -> np.ndarray:
        """The detector input of the current window: float32 (5 + n_key, H, W)."""
        need = max(2, self.n_key)
        if len(self) < need:
            raise KeyframeError(f"the buffer holds {len(self)} frames; the detector input "
                                f"needs at least {need}")
        stats = self.acc.stats()
        keys = self.key_positions(stats.activity)
        deviations = np.stack([self.acc.flat_deviation(int(p), stats) for p in keys])
        return assemble_channels(stats, deviations)

    def snapshot(self) -> KeyframeSnapshot:
        """Copy of the window (oldest first), its indices and its detector input."""
        channels = self.channels()
        slots = self.acc.window_slots()
        return KeyframeSnapshot(
            frames=self.acc.ring[slots],
            indices=self._indices[slots].copy(),
            channels=channels,
        )
