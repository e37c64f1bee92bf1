"""Run a stream of frames through the pipeline into a results file, frame by frame.

The wiring shared by ``rtcal run`` (frames from a movie file) and the demo:
each ``FrameOutput`` is appended to the results writer as soon as it exists;
footprints are written when the component set grows and refreshed every
``footprint_every`` frames (they are refined continuously), and once more at
the end.
"""

from __future__ import annotations

import sys
import threading
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from rtcal.buffer.keyframe import KeyframeBuffer
from rtcal.detect.proposal import FootprintProposer
from rtcal.engine.components import footprint_csr
from rtcal.engine.gc_pauses import freeze_heap
from rtcal.engine.pipeline import FrameOutput, Pipeline, PipelineConfig
from rtcal.engine.redetect import RedetectJob, Redetector
from rtcal.errors import RtcalError
from rtcal.store import ResultsWriter


@dataclass(frozen=True)
class RunSummary:
    """n_frames: frames written; n_components: components at the end; skipped:
    frames skipped by reason; init_seconds: initialisation time; frame_ms:
    float64 (n,) arrival-to-result time of the frames after initialisation;
    n_retired: components merged away or retired by the end (they keep their index);
    redetect: the detector re-runs (runs, failed, added, add_failed, seconds), None
    without them."""

    n_frames: int
    n_components: int
    skipped: dict[str, int]
    init_seconds: float
    frame_ms: np.ndarray
    n_retired: int = 0
    redetect: dict | None = None


class OfflineRedetect:
    """The live engine's periodic detector re-runs, between frames of ``rtcal run``.

    The same keyframe buffer (``rtcal.buffer.keyframe``) and the same re-run
    (``Redetector.run_now``: proposals matched to the existing components by IoU,
    kept once ``confirm_runs`` consecutive re-runs propose them); only the timing
    differs: the live engine runs the detector in another process while frames
    go on, and adds what it found a few components per frame, some frames later;
    here the frame loop waits for it and adds them at once, before the next
    frame. Nothing after the frame is seen either way.
    """

    def __init__(self, pipeline: Pipeline, every_frames: int, *, keyframe_frames: int = 300,
                 n_key: int = 3, confirm_runs: int = 2) -> None:
        self.pipeline = pipeline
        self.every_frames = every_frames
        self.keyframe_frames = keyframe_frames
        self.n_key = n_key
        self.redetector = Redetector(pipeline.detector, confirm_runs=confirm_runs, in_process=False)
        self.keyframes = None
        self.since = 0
        self.last_index = -1
        self.n_added = 0
        self.n_add_failed = 0
        self.seconds: list[float] = []

    def counters(self) -> dict:
        r = self.redetector
        return {"runs": r.n_runs, "failed": r.n_failed, "added": self.n_added,
                "add_failed": self.n_add_failed, "seconds": list(self.seconds)}

    def after(self, out: FrameOutput) -> None:
        """Push the frame's motion-corrected pixels into the keyframe buffer."""
        corrected = out.corrected
        if corrected is None:
            return
        if not isinstance(corrected, np.ndarray):  # a device array (backend "cuda")
            corrected = corrected.get()
        if self.keyframes is None:
            H, W = corrected.shape
            self.keyframes = KeyframeBuffer(H, W, self.keyframe_frames, self.n_key)
        self.keyframes.push(out.index, np.asarray(corrected, np.float32))
        self.since += 1
        self.last_index = out.index

    def between_frames(self) -> None:
        """Re-run if a period has ended (before the next frame: a re-run after the
        stream's last frame would add components with no frame to show them in)."""
        if self.since < self.every_frames:
            return
        self.since = 0
        existing = footprint_csr(self.pipeline)
        job = RedetectJob(self.last_index, self.keyframes.snapshot, existing, threading.Event())
        result = self.redetector.run_now(job)
        if result is None:
            return
        self.seconds.append(result.seconds)
        if not len(result.footprints):
            return
        try:
            added = self.pipeline.add_components(result.footprints, result.window)
        except RtcalError as e:  # the pipeline is left as it was: count, say, go on
            self.n_add_failed += len(result.footprints)
            print(f"rtcal run: {len(result.footprints)} detected component(s) not added: {e}",
                  file=sys.stderr)
            return
        self.n_added += len(added)


def run_frames(
    frames: Iterable[np.ndarray],
    out_path: str | Path,
    config: PipelineConfig,
    *,
    height: int,
    width: int,
    footprint_every: int = 500,
    attrs: dict | None = None,
    detector: FootprintProposer | None = None,
    freeze_gc: bool = False,
    detect_every: int = 0,
    confirm_runs: int = 2,
    keyframe_frames: int = 300,
    keyframe_n_key: int = 3,
) -> RunSummary:
    """Feed frames (each (H, W)) in order; write ``out_path``; return a summary.
    detector: initial footprint proposer (default: the seed detector);
    freeze_gc: once initialised, move every live object out of the garbage
    collector's reach, as the live engine does (``rtcal.engine.gc_pauses``; for a
    command-line run: it is process-wide); detect_every: frames between detector
    re-runs (0: none; ``OfflineRedetect``), with the live engine's confirm_runs
    and keyframe buffer (keyframe_frames, keyframe_n_key)."""
    pipeline = Pipeline(config, detector)
    redetect = None
    if detect_every:
        redetect = OfflineRedetect(pipeline, detect_every, keyframe_frames=keyframe_frames,
                                   n_key=keyframe_n_key, confirm_runs=confirm_runs)
    meta = {
        "pipeline": "online",
        "init_frames": config.init_frames,
        "radius_px": config.radius_px,
        **(attrs or {}),
    }
    frame_ms: list[float] = []
    born = np.zeros(0, np.int64)  # results-file column at which each component appeared
    retired = np.zeros(0, np.int64)  # column from which each component is retired, -1 alive
    with ResultsWriter(
        out_path, height=height, width=width, fps_hz=config.fps_hz, attrs=meta
    ) as writer:

        def write(outputs: list[FrameOutput]) -> None:
            nonlocal born, retired
            for out in outputs:
                column = writer.n_frames_appended
                K = len(out.traces)
                if K > len(born):
                    born = np.r_[born, np.full(K - len(born), column, np.int64)]
                    retired = np.r_[retired, np.full(K - len(retired), -1, np.int64)]
                if K > writer.n_components or (column and column % footprint_every == 0):
                    writer.set_footprints(pipeline.footprints, born)
                newly = [] if out.retired is None else np.flatnonzero(out.retired & (retired < 0))
                if len(newly):  # their footprints are now zero, a merge changed another
                    retired[newly] = column
                    writer.set_footprints(pipeline.footprints, born)
                    writer.set_retired(retired)
                writer.append_frame(
                    index=out.index,
                    traces=out.denoised,
                    spikes=out.spikes,
                    shift=out.shift,
                    t_received_ns=out.t_received_ns,
                    t_done_ns=out.t_done_ns,
                )

        frozen = not freeze_gc
        for index, frame in enumerate(frames):
            if not frozen and pipeline.initialised:
                freeze_heap()
                frozen = True
            if redetect is not None:
                redetect.between_frames()
            outputs = pipeline.push(index, frame)
            write(outputs)
            if redetect is not None and pipeline.initialised:
                for out in outputs:
                    redetect.after(out)
            if pipeline.initialised and len(outputs) == 1:
                frame_ms.append((outputs[0].t_done_ns - outputs[0].t_received_ns) / 1e6)
        write(pipeline.finish())
        if len(born):
            writer.set_footprints(pipeline.footprints, born)
        n_written = writer.n_frames_appended
    return RunSummary(
        n_written,
        len(born),
        dict(pipeline.skipped),
        pipeline.init_seconds,
        np.asarray(frame_ms),
        int((retired >= 0).sum()),
        None if redetect is None else redetect.counters(),
    )
