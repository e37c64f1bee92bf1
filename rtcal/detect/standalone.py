"""A detector alone on one window of a movie: register, propose, extract traces.

What ``rtcal detect`` and ``bench/detector.py`` run. The window is registered as
the pipeline registers its initialisation frames (``Pipeline._initialise``):
a rigid template from the window itself (``RigidMotionCorrector.from_frames``),
each frame's shift measured against it and undone by a Fourier shift (no
interpolation, so the noise statistics the detectors read stay intact). The
detector proposes footprints on the registered window and their traces are
extracted over the same frames (``rtcal.detect.window_traces``).
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np

from rtcal.detect.proposal import FootprintProposer, Proposal
from rtcal.detect.window_traces import denoise, window_traces
from rtcal.engine.pipeline import PipelineConfig
from rtcal.motion.corrector import MotionConfig, RigidMotionCorrector
from rtcal.motion.fourier import fourier_shift
from rtcal.store.results import Results


@dataclass(frozen=True)
class WindowDetection:
    """proposal: the detector's footprints; shifts float32 (T, 2) (dy, dx) px;
    traces float32 (K, T) raw, denoised and spikes float32 (K, T) (OASIS);
    register_s, detector_s, traces_s: wall-clock seconds of each step."""

    proposal: Proposal
    shifts: np.ndarray
    traces: np.ndarray
    denoised: np.ndarray
    spikes: np.ndarray
    register_s: float
    detector_s: float
    traces_s: float


def register_window(frames: np.ndarray, motion: MotionConfig) -> tuple[np.ndarray, np.ndarray]:
    """(registered float32 (T, H, W), shifts float32 (T, 2)) of frames (T, H, W)."""
    registered = np.array(frames, dtype=np.float32)  # a copy, registered in place
    corrector = RigidMotionCorrector.from_frames(motion, registered)
    shifts = np.array([corrector.step(f).shift for f in registered], np.float32).reshape(-1, 2)
    for f, (dy, dx) in zip(registered, shifts, strict=True):
        f[:] = fourier_shift(f, -float(dy), -float(dx))
    return registered, shifts


def detect_window(frames: np.ndarray, detector: FootprintProposer, config: PipelineConfig
                  ) -> WindowDetection:
    """Register ``frames`` (T, H, W), run ``detector`` on them, extract the traces."""
    t0 = time.perf_counter()
    registered, shifts = register_window(frames, config.motion)
    t1 = time.perf_counter()
    proposal = detector.propose(registered)
    t2 = time.perf_counter()
    traces = window_traces(proposal.footprints, registered, config.nmf, config.fps_hz)
    denoised, spikes = denoise(traces, config.fps_hz, tau_decay_s=config.tau_decay_s,
                               spike_sd=config.spike_sd)
    return WindowDetection(proposal, shifts, traces, denoised, spikes, t1 - t0, t2 - t1,
                           time.perf_counter() - t2)


def to_results(det: WindowDetection, frame_index: np.ndarray, fps_hz: float,
               attrs: dict | None = None) -> Results:
    """A results record of a window detection: the footprints from the window's first
    frame on, the denoised traces and spikes, one column per movie frame in
    ``frame_index`` (int64 (T,)). Timestamps are 0: the frames were not streamed."""
    K, T = det.denoised.shape
    zeros = np.zeros(T, np.int64)
    return Results(
        height=det.proposal.footprints.shape[1], width=det.proposal.footprints.shape[2],
        fps_hz=fps_hz, footprints=det.proposal.footprints, traces=det.denoised,
        spikes=det.spikes, born_frame=np.zeros(K, np.int64),
        frame_index=np.asarray(frame_index, np.int64), shifts=det.shifts,
        t_received_ns=zeros, t_done_ns=zeros, attrs=dict(attrs or {}),
    )
