"""Run a stream of frames through the pipeline into a results file, frame by frame.

The wiring shared by ``rtcal run`` (frames from a movie file) and the demo:
each ``FrameOutput`` is appended to the results writer as soon as it exists;
footprints are written when the component set grows and refreshed every
``footprint_every`` frames (they are refined continuously), and once more at
the end.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from rtcal.detect.proposal import FootprintProposer
from rtcal.engine.gc_pauses import freeze_heap
from rtcal.engine.pipeline import FrameOutput, Pipeline, PipelineConfig
from rtcal.store import ResultsWriter


@dataclass(frozen=True)
class RunSummary:
    """n_frames: frames written; n_components: components at the end; skipped:
    frames skipped by reason; init_seconds: initialisation time; frame_ms:
    float64 (n,) arrival-to-result time of the frames after initialisation;
    n_retired: components merged away or retired by the end (they keep their index)."""

    n_frames: int
    n_components: int
    skipped: dict[str, int]
    init_seconds: float
    frame_ms: np.ndarray
    n_retired: int = 0


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
) -> RunSummary:
    """Feed frames (each (H, W)) in order; write ``out_path``; return a summary.
    detector: initial footprint proposer (default: the seed detector);
    freeze_gc: once initialised, move every live object out of the garbage
    collector's reach, as the live engine does (``rtcal.engine.gc_pauses``; for a
    command-line run: it is process-wide)."""
    pipeline = Pipeline(config, detector)
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
            outputs = pipeline.push(index, frame)
            write(outputs)
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
    )
