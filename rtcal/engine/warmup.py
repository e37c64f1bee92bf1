"""Compile the frame loop's kernels before the first frame arrives.

Numba compiles a kernel on its first call (or loads it from its on-disk cache,
which a fresh machine does not have). Left to the first real frames, that costs
seconds inside the frame loop: on a cold 2-core machine the keyframe buffer's
first push took 6.6 s and the pipeline's first step 1 s, and the engine fell so
far behind a 50 Hz stream that it never caught up. ``warm_kernels`` runs the
same stages (a Pipeline with the engine's own settings, its component adding
and a keyframe buffer) on a small simulated movie, so that every kernel the
frame loop calls is compiled, for uint16 and float32 frames, before the engine
binds its sockets. With a warm cache it takes about a second.
"""

from __future__ import annotations

import dataclasses
import time

import numpy as np

from rtcal.engine.pipeline import MIN_FRAMES_FOR_G, Pipeline, PipelineConfig

STEP_FRAMES = 24  # frames stepped after initialisation, per dtype


def warm_kernels(config: PipelineConfig, *, keyframe_n_key: int = 3) -> float:
    """Run the pipeline's stages on a small simulated movie; returns seconds.

    config: the engine's pipeline settings (backend and mode included); only
    ``init_frames`` is shortened (enough frames to reach every initialisation
    branch). Nothing it computes is kept."""
    from rtcal.buffer.keyframe import KeyframeBuffer
    from rtcal.sim import Simulation, make_config

    t0 = time.perf_counter()
    r = float(config.radius_px)
    size = int(max(48, 10 * r))
    init = max(20, min(config.init_frames, MIN_FRAMES_FOR_G))
    n = init + 3 * STEP_FRAMES
    sim = Simulation(
        make_config(
            "2p",
            height=size,
            width=size,
            n_frames=n,
            n_neurons=max(3, int(size * size / (16 * r * r))),
            fps_hz=config.fps_hz,
            radius_min_px=0.8 * r,
            radius_max_px=1.2 * r,
            seed=0,
        )
    )
    frames = [f.image for f in sim.stream()]
    pipeline = Pipeline(dataclasses.replace(config, init_frames=init))
    keyframes = KeyframeBuffer(size, size, min(n, 64), keyframe_n_key)
    window: list[np.ndarray] = []
    for i, frame in enumerate(frames):
        if i >= init + STEP_FRAMES:
            frame = frame.astype(np.float32)  # cameras send uint16; simulators float32
        for out in pipeline.push(i, frame):
            corrected = out.corrected
            if corrected is None:
                continue
            if not isinstance(corrected, np.ndarray):  # a device array (backend "cuda")
                corrected = corrected.get()
            keyframes.push(out.index, corrected)
            window.append(corrected.copy())  # the output's is not a copy
        if i == init + 2 * STEP_FRAMES and pipeline.initialised and config.backend == "cpu":
            # a detector re-run's component: one disc, traces back-filled
            yy, xx = np.mgrid[:size, :size]
            disc = ((yy - size / 2) ** 2 + (xx - size / 2) ** 2 <= r * r).astype(np.float32)
            pipeline.add_components(disc[None], np.stack(window[-16:]))
    if len(keyframes):
        keyframes.channels()
        keyframes.snapshot()
    return time.perf_counter() - t0
