"""The device steppers track the CPU steppers frame by frame, and the Pipeline hook.

DeviceNMF and DeviceMotionCorrector run here on the "cpu" backend (NumPy
arrays through the device code path) and, marked ``gpu``, on "cuda" (fused
kernels, with and without CUDA graphs); the cuda cases skip without a GPU.
"""

import dataclasses
import sys

import numpy as np
import pytest

from rtcal.backend import BackendUnavailableError, cuda, cuda_available, get_backend
from rtcal.engine.pipeline import Pipeline, PipelineConfigError, pipeline_config
from rtcal.motion.corrector import MotionConfig, MotionCorrector
from rtcal.motion.device_corrector import DeviceMotionCorrector, DeviceMotionError
from rtcal.motion.frame_check import FrameQuality
from rtcal.nmf.device_step import DeviceNMF, DeviceNMFError
from rtcal.nmf.online import OnlineNMF, OnlineNMFConfig
from rtcal.sim import Simulation, make_config, static_truth

GPU = [pytest.mark.gpu, pytest.mark.skipif(not cuda_available(), reason="no CUDA")]
N_INIT = 60


def _simulate(seed, motion_px, n_frames=220):
    activity = dataclasses.replace(make_config("2p").activity, rate_median_hz=0.5)
    cfg = make_config(
        "2p",
        height=96,
        width=96,
        n_frames=n_frames,
        n_neurons=10,
        seed=seed,
        motion_px=motion_px,
        activity=activity,
    )
    sim = Simulation(cfg)
    frames, calcium = [], []
    for f in sim.stream():
        frames.append(f.image)
        calcium.append(f.calcium)
    return cfg, static_truth(sim), np.stack(frames), np.stack(calcium, 1)


@pytest.fixture(scope="module")
def still_movie():
    return _simulate(seed=7, motion_px=0.0)


@pytest.fixture(scope="module")
def moving_movie():
    return _simulate(seed=3, motion_px=2.5)


def _rel(a, b):
    return float(np.abs(a - b).max() / max(np.abs(b).max(), 1e-12))


@pytest.mark.parametrize(
    "backend,options",
    [
        ("cpu", {}),
        pytest.param("cuda", {}, marks=GPU, id="cuda-fused"),
        pytest.param("cuda", {"fused": False}, marks=GPU, id="cuda-generic"),
        pytest.param("cuda", {"use_graph": True}, marks=GPU, id="cuda-graph"),
    ],
)
def test_device_nmf_tracks_online_nmf(still_movie, backend, options):
    cfg, truth, frames, calcium = still_movie
    frames = frames.astype(np.float32)
    # The cell with the largest transient after initialisation is left out, so that
    # the residual search adds it and the device state is rebuilt mid-run.
    target = int(np.argmax(truth["baseline"] * calcium[:, N_INIT:].max(axis=1)))
    keep = np.delete(np.arange(len(truth["footprints"])), target)
    nmf = OnlineNMF(
        OnlineNMFConfig(radius_px=6.0), cfg.fps_hz, truth["footprints"][keep], frames[:N_INIT]
    )
    dev = DeviceNMF(nmf, get_backend(backend), **options)
    worst = worst_noisy = 0.0
    for f in frames[N_INIT:]:
        want, got = nmf.step(f), dev.step(f)
        np.testing.assert_array_equal(got.added, want.added)
        np.testing.assert_allclose(got.added_traces, want.added_traces, rtol=1e-4, atol=1e-3)
        assert got.traces.dtype == np.float32 and got.traces.shape == want.traces.shape
        assert got.noisy.dtype == np.float32 and got.noisy.shape == want.noisy.shape
        worst = max(worst, _rel(got.traces, want.traces))
        worst_noisy = max(worst_noisy, _rel(got.noisy, want.noisy))
    assert dev.n_components == nmf.n_components > len(keep)  # the search added components
    assert worst < 1e-4, worst
    assert worst_noisy < 1e-4, worst_noisy
    assert _rel(dev.A.csr.data, nmf.A.csr.data) < 1e-4  # refined footprints
    np.testing.assert_array_equal(dev.A.born_frame, nmf.A.born_frame)
    np.testing.assert_allclose(
        dev.resting_level(np.arange(dev.n_components)),
        nmf.resting_level(np.arange(nmf.n_components)),
        rtol=1e-4,
    )


@pytest.mark.parametrize("backend", ["cpu", pytest.param("cuda", marks=GPU)])
def test_device_nmf_adds_components_from_a_detector_like_online_nmf(still_movie, backend):
    cfg, truth, frames, _ = still_movie
    frames = frames.astype(np.float32)
    A = truth["footprints"]
    config = OnlineNMFConfig(radius_px=6.0, max_new_per_search=0)
    nmf = OnlineNMF(config, cfg.fps_hz, A[2:], frames[:N_INIT])
    dev = DeviceNMF(nmf, get_backend(backend))
    for f in frames[N_INIT : N_INIT + 30]:
        nmf.step(f), dev.step(f)
    traces = np.abs(np.random.default_rng(0).normal(size=(2, nmf.buffer.length)))
    traces = traces.astype(np.float32)
    with pytest.raises(DeviceNMFError, match="add_components"):
        dev.add_components(A[:2], traces[:, 1:])
    np.testing.assert_array_equal(
        dev.add_components(A[:2], traces), nmf.add_components(A[:2], traces)
    )
    for f in frames[N_INIT + 30 : N_INIT + 60]:
        want, got = nmf.step(f), dev.step(f)
        assert _rel(got.traces, want.traces) < 1e-4
        assert _rel(got.noisy, want.noisy) < 1e-4
    assert dev.n_components == nmf.n_components == len(A)


@pytest.mark.parametrize("backend", ["cpu", pytest.param("cuda", marks=GPU)])
def test_device_motion_tracks_the_rigid_corrector(moving_movie, backend):
    _, _, frames, _ = moving_movie
    config = MotionConfig(radius_px=6.0, template_update_every=20)
    cpu = MotionCorrector.from_frames(config, frames[:N_INIT])
    dev = DeviceMotionCorrector(cpu, get_backend(backend))
    bad = frames[N_INIT].astype(np.float32)
    bad[:30] = np.nan  # too many non-finite pixels
    tests = [bad, np.full_like(frames[0], 500), *frames[N_INIT:]]  # + a featureless frame
    qualities = []
    for f in tests:
        want, got = cpu.step(f), dev.step(f)
        assert got.quality == want.quality and got.trusted == want.trusted
        np.testing.assert_allclose(got.shift, want.shift, atol=1e-3)
        assert abs(got.score - want.score) < 1e-4
        corrected = dev.backend.to_host(got.corrected)
        assert _rel(corrected, want.corrected) < 1e-5
        qualities.append(got.quality)
    assert qualities[:2] == [FrameQuality.NON_FINITE, FrameQuality.FEATURELESS]
    assert dev.n_untrusted == cpu.n_untrusted >= 2
    assert _rel(dev.template, cpu.template) < 1e-5  # the template was refreshed on both


@pytest.mark.parametrize("backend", ["cpu", pytest.param("cuda", marks=GPU)])
def test_device_nmf_merges_and_retires_like_online_nmf(still_movie, backend):
    cfg, truth, frames, _ = still_movie
    frames = frames.astype(np.float32)
    A = truth["footprints"]
    # retire_silent_s 1 s: cells that rest for a second are retired as silent
    config = OnlineNMFConfig(radius_px=6.0, max_new_per_search=0, retire_silent_s=1.0,
                             merge_every=20)
    nmf = OnlineNMF(config, cfg.fps_hz, A, frames[:N_INIT])
    dev = DeviceNMF(nmf, get_backend(backend))
    for f in frames[N_INIT : N_INIT + 20]:
        nmf.step(f), dev.step(f)
    # a copy of component 0 arrives: merged at once, on both
    traces = np.abs(np.random.default_rng(1).normal(size=(1, nmf.buffer.length)))
    traces = traces.astype(np.float32)
    np.testing.assert_array_equal(
        dev.add_components(A[:1], traces), nmf.add_components(A[:1], traces)
    )
    for f in frames[N_INIT + 20 :]:
        want, got = nmf.step(f), dev.step(f)
        np.testing.assert_array_equal(got.retired, want.retired)
        assert _rel(got.traces, want.traces) < 1e-4
        assert _rel(got.noisy, want.noisy) < 1e-4
        assert not got.noisy[got.retired].any()  # retired components report 0
    kinds = [(m.kind, m.keep, m.gone) for m in nmf.merges]
    assert kinds == [(m.kind, m.keep, m.gone) for m in dev.merges]
    assert ("merge", 0, len(A)) in kinds  # the copy, merged into component 0
    assert any(k == "retire" for k, _, _ in kinds)
    assert _rel(dev.A.csr.data, nmf.A.csr.data) < 1e-4
    for k in np.nonzero(~want.retired)[0]:  # the centres the merge distance rule reads
        assert dev._centre(k) == pytest.approx(nmf._centre(k), abs=1e-3)


def test_pipeline_device_hook_gives_the_cpu_outputs(moving_movie):
    cfg, truth, frames, _ = moving_movie
    config = pipeline_config(cfg.fps_hz, 6.0, init_frames=N_INIT)  # curation on
    plain = Pipeline(config)
    hooked = Pipeline(config)
    hooked._device = get_backend("cpu")  # the device path, run with NumPy arrays
    n_out = 0
    for i, f in enumerate(frames):
        for a, b in zip(plain.push(i, f), hooked.push(i, f), strict=True):
            assert a.index == b.index
            np.testing.assert_array_equal(a.added, b.added)
            np.testing.assert_allclose(a.shift, b.shift, atol=1e-3)
            assert _rel(b.traces, a.traces) < 1e-4
            np.testing.assert_allclose(
                b.denoised, a.denoised, rtol=1e-3, atol=1e-3 * (np.abs(a.denoised).max() + 1)
            )
            n_out += 1
    assert n_out == len(frames)
    # a detector re-run's components, added through the same Pipeline method
    footprints = truth["footprints"][:1]
    window = frames[-40:].astype(np.float32)
    np.testing.assert_array_equal(
        hooked.add_components(footprints, window), plain.add_components(footprints, window)
    )
    a, b = plain.push(len(frames), frames[-1])[0], hooked.push(len(frames), frames[-1])[0]
    assert _rel(b.traces, a.traces) < 1e-4
    assert isinstance(hooked._nmf, DeviceNMF)
    assert isinstance(hooked._motion, DeviceMotionCorrector)
    assert _rel(hooked.footprints, plain.footprints) < 1e-4


def test_unsupported_device_settings_are_named():
    with pytest.raises(PipelineConfigError, match="backend must be one of"):
        pipeline_config(30.0, 6.0, backend="gpu")
    with pytest.raises(PipelineConfigError, match="1p"):
        pipeline_config(30.0, 6.0, "1p", backend="cuda")
    with pytest.raises(PipelineConfigError, match="cuda_graphs needs backend 'cuda'"):
        pipeline_config(30.0, 6.0, cuda_graphs=True)
    rng = np.random.default_rng(0)
    frames = rng.normal(100, 5, (30, 64, 64)).astype(np.float32)
    fp = np.zeros((1, 64, 64), np.float32)
    fp[0, 20:26, 20:26] = 1
    ring = OnlineNMF(OnlineNMFConfig(background="ring"), 30.0, fp, frames)
    with pytest.raises(DeviceNMFError, match="ring background"):
        DeviceNMF(ring, get_backend("cpu"))
    lowrank = OnlineNMF(OnlineNMFConfig(), 30.0, fp, frames)
    with pytest.raises(DeviceNMFError, match="fused"):
        DeviceNMF(lowrank, get_backend("cpu"), fused=True)
    with pytest.raises(DeviceNMFError, match="graphs need the fused"):
        DeviceNMF(lowrank, get_backend("cpu"), use_graph=True)
    piecewise = MotionCorrector(
        MotionConfig(piecewise=True, patch_px=32, overlap_px=8), frames.mean(0)
    )
    with pytest.raises(DeviceMotionError, match="piecewise"):
        DeviceMotionCorrector(piecewise, get_backend("cpu"))


def test_pipeline_on_cuda_without_cupy_fails_at_construction(monkeypatch):
    monkeypatch.setitem(sys.modules, "cupy", None)
    monkeypatch.setattr(cuda, "_CUPY", None)
    with pytest.raises(BackendUnavailableError, match="CuPy"):
        Pipeline(pipeline_config(30.0, 6.0, backend="cuda"))
