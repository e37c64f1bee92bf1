"""Shared pieces of the live-engine tests: a small movie, an engine on random
ports or inproc, and collecting what it publishes."""

from __future__ import annotations

import time
import uuid
from dataclasses import replace

import numpy as np

from rtcal.backend import get_backend
from rtcal.client import ResultsSubscriber
from rtcal.engine.config import EngineConfig
from rtcal.engine.live import Engine
from rtcal.engine.pipeline import pipeline_config
from rtcal.net import Event, FootprintUpdate, FrameResult
from rtcal.sim import ActivityParams, Simulation, make_config

INIT_FRAMES = 40
STARTED: list[Engine] = []  # closed by the tests' context fixture, even after a failure
# fires when component 0 or 1 crosses dF/F 0.3 upward (a few times in 200 frames)
FIRING_RULES = [{"name": "dff-0-1", "kind": "threshold", "neurons": [0, 1], "threshold": 0.3}]


def small_movie(n_frames: int = 300, seed: int = 3) -> np.ndarray:
    """(T, 64, 64) uint16, a few active neurons."""
    activity = ActivityParams(**{**make_config("2p").activity.__dict__, "rate_median_hz": 1.0})
    cfg = make_config(
        "2p",
        height=64,
        width=64,
        n_frames=n_frames,
        n_neurons=6,
        seed=seed,
        radius_min_px=3.5,
        radius_max_px=5,
        motion_px=0.3,
        activity=activity,
    )
    return np.concatenate([c.images for c in Simulation(cfg).chunks()])


def endpoints(transport: str) -> dict:
    if transport == "tcp":
        return {
            f"{n}_endpoint": "tcp://127.0.0.1:*" for n in ("frames", "results", "events", "control")
        }
    tag = uuid.uuid4().hex[:8]
    return {
        f"{n}_endpoint": f"inproc://{n}-{tag}" for n in ("frames", "results", "events", "control")
    }


def start_engine(ctx, transport="tcp", rules=None, pipeline_overrides=None, device_path=False,
                 **engine_kw) -> Engine:
    """device_path: run the pipeline's device steppers (DeviceNMF,
    DeviceMotionCorrector) with NumPy arrays, as ``--backend cuda`` runs them."""
    # warm_kernels off: these runs are lossless ("block") and time nothing
    kw = {**endpoints(transport), "detect_every_frames": 0, "drop_policy": "block",
          "warm_kernels": False, **engine_kw}
    pipeline = replace(
        pipeline_config(30.0, 4.0), init_frames=INIT_FRAMES, **(pipeline_overrides or {})
    )
    engine = Engine(EngineConfig(**kw), pipeline, rules or [], context=ctx)
    if device_path:
        engine.pipeline._device = get_backend("cpu")
    STARTED.append(engine)
    return engine.start()


def close_all() -> None:
    while STARTED:
        STARTED.pop().close()


def subscribe(engine: Engine, ctx, **kw) -> ResultsSubscriber:
    sub = ResultsSubscriber(
        engine.endpoints["results"], engine.endpoints["events"], context=ctx, **kw
    )
    time.sleep(0.3)  # let the subscriptions reach the engine (PUB drops before that)
    return sub


def collect(sub: ResultsSubscriber, n_frames: int, timeout_s: float = 20.0):
    """(frame results, footprint updates, events) until n_frames results or timeout."""
    frames, footprints, events = [], [], []
    deadline = time.monotonic() + timeout_s
    while len(frames) < n_frames and time.monotonic() < deadline:
        msg = sub.recv(timeout_ms=200)
        if isinstance(msg, FrameResult):
            frames.append(msg)
        elif isinstance(msg, FootprintUpdate):
            footprints.append(msg)
        elif isinstance(msg, Event):
            events.append(msg)
    end = time.monotonic() + 0.3  # events and updates published after the last frame
    while time.monotonic() < end:
        msg = sub.recv(timeout_ms=50)
        if isinstance(msg, Event):
            events.append(msg)
        elif isinstance(msg, FootprintUpdate):
            footprints.append(msg)
    return frames, footprints, events


def wait_processed(engine: Engine, n: int, timeout_s: float = 20.0) -> dict:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        status = engine.status()
        c = status["counters"]
        if c["processed"] + c["dropped"] + c["skipped_bad_frames"] >= n:
            return status
        time.sleep(0.05)
    return engine.status()
