"""The engine compiles its kernels before binding: the first frames do not pay for it."""

import zmq

from rtcal.engine.config import EngineConfig
from rtcal.engine.live import Engine
from rtcal.engine.pipeline import PipelineConfig
from rtcal.engine.warmup import warm_kernels
from tests.engine_live_helpers import endpoints


def test_warm_kernels_runs_every_stage_and_returns_its_time():
    seconds = warm_kernels(PipelineConfig(radius_px=4.0, init_frames=60))
    assert 0 < seconds < 300


def test_engine_warms_before_binding_and_reports_it():
    ctx = zmq.Context()
    engine = Engine(
        EngineConfig(**endpoints("inproc"), detect_every_frames=0),
        PipelineConfig(radius_px=4.0, init_frames=60),
        context=ctx,
    )
    try:
        engine.start()
        status = engine.status()
        assert status["warm_kernels_seconds"] > 0
        assert status["counters"]["processed"] == 0  # nothing of the warm-up leaks out
        assert status["n_components"] == 0
    finally:
        engine.close()
        ctx.term()


def test_engine_without_warm_up_reports_zero():
    ctx = zmq.Context()
    engine = Engine(
        EngineConfig(**endpoints("inproc"), detect_every_frames=0, warm_kernels=False),
        PipelineConfig(radius_px=4.0, init_frames=60),
        context=ctx,
    )
    try:
        assert engine.start().status()["warm_kernels_seconds"] == 0.0
    finally:
        engine.close()
        ctx.term()
