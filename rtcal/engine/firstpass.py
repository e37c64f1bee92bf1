"""First-pass extraction: seed detector on the first frames, fixed footprints after.

This is the simplest honest pipeline built from rtcal's kernels and the first
step towards the online core: the greedy seed detector proposes footprints on
the first ``init_frames`` frames, then every frame (the initial ones included)
goes through the warm-started trace solver in arrival order, and OASIS
denoises each trace. Footprints are not refined and no component is added
later. Frames are registered by the rigid motion corrector, whose first
template comes from the same initial frames. The online core replaces all of
this with per-frame footprint refinement and new components.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

import numpy as np

from rtcal.deconv.oasis import decay_factor, oasis_ar1
from rtcal.detect.seed import SeedConfig, SeedDetector
from rtcal.errors import RtcalError
from rtcal.motion.corrector import MotionConfig, RigidMotionCorrector
from rtcal.nmf.background import cosine_basis
from rtcal.nmf.traces import TraceStepper
from rtcal.store.results import Results


class FirstPassConfigError(RtcalError):
    pass


@dataclass(frozen=True)
class FirstPassConfig:
    """fps_hz: frame rate; radius_px: soma radius; init_frames: frames the
    detector sees; tau_decay_s: calcium decay for OASIS; n_background: cosine
    basis functions per axis for the background; spike_sd: OASIS minimum spike
    size in units of each trace's noise sigma."""

    fps_hz: float = 30.0
    radius_px: float = 6.0
    init_frames: int = 300
    tau_decay_s: float = 1.0
    n_background: int = 3
    spike_sd: float = 3.0
    max_shift_px: float = 15.0

    def __post_init__(self) -> None:
        if not 0 < self.fps_hz <= 10_000:
            raise FirstPassConfigError(f"fps_hz must be in (0, 10000], got {self.fps_hz}")
        if self.init_frames < 10:
            raise FirstPassConfigError(f"init_frames must be >= 10, got {self.init_frames}")
        if self.tau_decay_s * self.fps_hz <= 0.5:
            raise FirstPassConfigError(
                f"tau_decay_s={self.tau_decay_s} is shorter than half a frame at "
                f"{self.fps_hz} Hz: OASIS cannot model it"
            )
        if self.n_background < 1:
            raise FirstPassConfigError(f"n_background must be >= 1, got {self.n_background}")
        if self.spike_sd < 0:
            raise FirstPassConfigError(f"spike_sd must be >= 0, got {self.spike_sd}")


@dataclass(frozen=True)
class FirstPassResult:
    """footprints float32 (K, H, W) in the template frame; raw, denoised, spikes
    float32 (K, T); shifts float32 (T, 2) estimated (dy, dx); t_received_ns,
    t_done_ns int64 (T,) (monotonic clock) per frame."""

    footprints: np.ndarray
    shifts: np.ndarray
    raw: np.ndarray
    denoised: np.ndarray
    spikes: np.ndarray
    t_received_ns: np.ndarray
    t_done_ns: np.ndarray
    init_seconds: float


def run_first_pass(frames: Iterable[np.ndarray], config: FirstPassConfig) -> FirstPassResult:
    """Extract footprints and traces from frames (each (H, W)), in arrival order."""
    stream = iter(frames)
    window, t_received = _take(stream, config.init_frames)
    if len(window) < 10:
        raise FirstPassConfigError(f"movie has only {len(window)} frames; need at least 10")
    t0 = time.perf_counter()
    raw_window = np.stack(window).astype(np.float32)
    motion = RigidMotionCorrector.from_frames(
        MotionConfig(max_shift_px=config.max_shift_px, radius_px=config.radius_px), raw_window
    )
    steps = [motion.step(frame) for frame in raw_window]
    Y = np.stack([s.corrected for s in steps])
    proposal = SeedDetector(SeedConfig(radius_px=config.radius_px)).propose(Y)
    baseline = np.median(Y, axis=0)
    H, W = baseline.shape
    stepper = TraceStepper(proposal.footprints, baseline, cosine_basis(H, W, config.n_background))
    init_seconds = time.perf_counter() - t0
    raw, done = [], []
    shifts = [s.shift for s in steps]
    for registered in Y:
        raw.append(stepper.step(registered))
        done.append(time.monotonic_ns())
    for frame in stream:
        t_received.append(time.monotonic_ns())
        step = motion.step(frame)
        shifts.append(step.shift)
        raw.append(stepper.step(step.corrected))
        done.append(time.monotonic_ns())
    C = np.stack(raw, axis=1) if raw else np.zeros((len(proposal), 0), np.float32)
    denoised, spikes = _deconvolve(C, decay_factor(config.tau_decay_s, config.fps_hz), config)
    return FirstPassResult(
        footprints=proposal.footprints,
        shifts=np.asarray(shifts, np.float32).reshape(-1, 2),
        raw=C,
        denoised=denoised,
        spikes=spikes,
        t_received_ns=np.asarray(t_received, np.int64),
        t_done_ns=np.asarray(done, np.int64),
        init_seconds=init_seconds,
    )


def to_results(
    result: FirstPassResult, config: FirstPassConfig, height: int, width: int
) -> Results:
    """The first pass's output in the results-file layout (every component born at frame 0)."""
    K, T = result.denoised.shape
    return Results(
        height=height,
        width=width,
        fps_hz=config.fps_hz,
        footprints=result.footprints,
        traces=result.denoised,
        spikes=result.spikes,
        born_frame=np.zeros(K, np.int64),
        frame_index=np.arange(T, dtype=np.int64),
        shifts=result.shifts,
        t_received_ns=result.t_received_ns,
        t_done_ns=result.t_done_ns,
        attrs={
            "pipeline": "firstpass",
            "init_frames": min(config.init_frames, T),
            "radius_px": config.radius_px,
            "tau_decay_s": config.tau_decay_s,
        },
    )


def _take(stream: Iterator[np.ndarray], n: int) -> tuple[list[np.ndarray], list[int]]:
    frames, stamps = [], []
    for frame in stream:
        stamps.append(time.monotonic_ns())
        frames.append(frame)
        if len(frames) == n:
            break
    return frames, stamps


def _deconvolve(C: np.ndarray, g: float, config: FirstPassConfig) -> tuple[np.ndarray, np.ndarray]:
    """OASIS per component after removing each trace's resting level (its 10th percentile)."""
    denoised = np.zeros_like(C)
    spikes = np.zeros_like(C)
    for k, trace in enumerate(C):
        if trace.size < 2:
            continue
        y = trace - np.percentile(trace, 10)
        sigma = 1.4826 * np.median(np.abs(np.diff(y))) / np.sqrt(2)
        denoised[k], spikes[k] = oasis_ar1(y, g, s_min=config.spike_sd * sigma)
    return denoised, spikes
