"""The fused rigid-registration kernels (rtcal.backend.cuda_motion), run on CPU threads.

Their CUDA C is compiled with g++ against the emulation of the CUDA built-ins
in test_backend_cuda_emulated.py (a thread per CUDA thread, real barriers and
atomics); NumPy does the FFTs. FusedRigid's launch order and buffers are the
ones a GPU runs, and its numbers are compared with the xp-generic kernels
(rtcal.motion.xp_rigid) and, through DeviceMotionCorrector, with the CPU
motion corrector frame by frame. On a GPU the same comparisons run through
CuPy (marked ``gpu``). Skipped without g++.
"""

import ctypes
import shutil
import subprocess
import sys

import numpy as np
import pytest

sys.path.insert(0, __file__.rsplit("/", 1)[0])  # the sibling test modules' helpers

from test_backend_cuda_emulated import EMULATION  # noqa: E402

from rtcal.backend import cuda_available, get_backend  # noqa: E402
from rtcal.backend.cuda_motion import (  # noqa: E402
    KERNEL_PARAMS,
    MOTION_SOURCE,
    FusedRigid,
    fits,
    typed_args,
)
from rtcal.motion.corrector import MotionConfig, MotionCorrector  # noqa: E402
from rtcal.motion.device_corrector import DeviceMotionCorrector, DeviceMotionError  # noqa: E402
from rtcal.motion.frame_check import FrameQuality  # noqa: E402
from rtcal.motion.xp_rigid import (  # noqa: E402
    apply_shift,
    centre,
    normalised_score,
    rigid_tables,
    shift_from_product,
    spectrum_and_power,
)

GPU = [pytest.mark.gpu, pytest.mark.skipif(not cuda_available(), reason="no CUDA")]
needs_gxx = pytest.mark.skipif(shutil.which("g++") is None, reason="needs g++ (C++20)")

_CTYPES = {"int": ctypes.c_int, "long long": ctypes.c_longlong, "float": ctypes.c_float,
           "double": ctypes.c_double}


def _entry_points() -> str:
    """extern "C" run_<kernel>(grid, block, params...) for every fused motion kernel."""
    out = []
    for name, params in KERNEL_PARAMS.items():
        decl = ", ".join(f"{t} a{i}" for i, t in enumerate(params))
        call = ", ".join(f"a{i}" for i in range(len(params)))
        out.append(f'extern "C" void run_{name}(unsigned grid, unsigned block, {decl}) {{\n'
                   f"    launch(grid, block, [=] {{ {name}({call}); }});\n}}\n")
    return "\n".join(out)


@pytest.fixture(scope="module")
def emulated(tmp_path_factory):
    """A Launcher that runs the kernels' CUDA C on CPU threads."""
    if shutil.which("g++") is None:
        pytest.skip("needs g++ (C++20)")
    folder = tmp_path_factory.mktemp("cuda_motion_emulated")
    source = folder / "motion.cpp"
    source.write_text(EMULATION + MOTION_SOURCE + _entry_points())
    library = folder / "motion.so"
    subprocess.run(["g++", "-std=c++20", "-O1", "-shared", "-fPIC", "-pthread", str(source),
                    "-o", str(library)], check=True, capture_output=True, text=True)
    lib = ctypes.CDLL(str(library))
    calls = []

    def launch(name, blocks, threads, args, shared_bytes):
        assert shared_bytes <= 8192 * 8, "the emulation's shared memory holds 8192 doubles"
        params = KERNEL_PARAMS[name]
        c_args = []
        for c_type, value in zip(params, typed_args(name, args), strict=True):
            if c_type in _CTYPES:
                c_args.append(_CTYPES[c_type](value))
            else:
                assert value.flags.c_contiguous, f"{name}: a non-contiguous array"
                if not c_type.startswith("const"):
                    assert value.flags.writeable, f"{name}: writes a read-only array"
                c_args.append(ctypes.c_void_p(value.ctypes.data))
        getattr(lib, f"run_{name}")(ctypes.c_uint(blocks), ctypes.c_uint(threads), *c_args)
        calls.append(name)

    launch.calls = calls
    launch.threads, launch.stats_blocks = 32, 2  # a thread per CUDA thread: small blocks
    return launch


def _pair(seed, shape, shift, noise=5.0):
    """A textured template and the same texture shifted by ``shift`` (plus noise)."""
    rng = np.random.default_rng(seed)
    H, W = shape
    yy, xx = np.mgrid[:H, :W]
    image = np.full(shape, 200.0, np.float32)
    for _ in range(12):
        cy, cx = rng.uniform(4, H - 4), rng.uniform(4, W - 4)
        image += rng.uniform(50, 150) * np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / 8.0)
    moved = apply_shift(image, *shift) + rng.normal(0, noise, shape).astype(np.float32)
    return image.astype(np.float32), moved.astype(np.float32)


def _generic(frame, template, tables, bin_px, saturation):
    """The xp-generic measurement: (mean, non-finite, saturated, power, dy, dx, score)."""
    t = centre(template, float("inf"), bin_px)
    spec_t, power_t = spectrum_and_power(t.image, tables)
    c = centre(frame, saturation, bin_px)
    spec, power = spectrum_and_power(c.image, tables)
    dy, dx, peak = shift_from_product(spec * np.conj(spec_t), tables)
    score = normalised_score(peak, tables.shape, power, power_t)
    return [float(v) for v in (c.mean, c.n_nonfinite, c.n_saturated, power, dy, dx, score)]


def _fused(frame, template, tables, bin_px, saturation, launch, **options):
    cpu = get_backend("cpu")
    fused = FusedRigid(tables, frame.shape, bin_px, np, np.fft, launch, cpu.to_host,
                       **options)
    t = centre(template, float("inf"), bin_px)
    spec_t, power_t = spectrum_and_power(t.image, tables)
    m = fused.measure(np.ascontiguousarray(frame, np.float32), saturation,
                      np.ascontiguousarray(np.conj(spec_t)), float(power_t))
    return fused, [m.mean, m.n_nonfinite, m.n_saturated, m.power, m.dy, m.dx, m.score]


def _assert_measurements_agree(got, want):
    mean, n_bad, n_sat, power, dy, dx, score = got
    assert mean == pytest.approx(want[0], rel=1e-6) or (np.isnan(mean) and np.isnan(want[0]))
    assert (n_bad, n_sat) == (want[1], want[2])
    assert power == pytest.approx(want[3], rel=1e-4)
    assert abs(dy - want[4]) < 1e-3 and abs(dx - want[5]) < 1e-3
    assert abs(score - want[6]) < 1e-4


@needs_gxx
@pytest.mark.parametrize(
    "shape,bin_px,upsample,shift",
    [
        ((48, 40), 1, 4, (2.3, -1.6)),  # W even: the Nyquist column's weight
        ((40, 45), 1, 10, (-3.7, 0.45)),  # W odd, a finer grid
        ((64, 64), 2, 4, (4.2, 3.1)),  # binned 2 x 2 (the shift comes back in binned px)
        ((48, 40), 1, 1, (3.0, -2.0)),  # integer shifts only: no refinement
    ],
)
def test_fused_measurement_matches_the_generic_kernels(emulated, shape, bin_px, upsample,
                                                       shift):
    template, frame = _pair(1, shape, shift)
    small = (shape[0] // bin_px, shape[1] // bin_px)
    tables = rigid_tables(small, 0.75 / bin_px, 3.0 / bin_px, 8.0 / bin_px, upsample,
                          get_backend("cpu"))
    want = _generic(frame, template, tables, bin_px, float("inf"))
    _, got = _fused(frame, template, tables, bin_px, float("inf"), emulated, threads=64,
                    stats_blocks=3)
    _assert_measurements_agree(got, want)
    # and the shift is the one the frame was given (binned px; the generic path's own test)
    assert abs(got[4] * bin_px - shift[0]) < 0.15 and abs(got[5] * bin_px - shift[1]) < 0.15
    if upsample == 1:
        assert "rtcal_dft_partial" not in emulated.calls[-3:]


@needs_gxx
def test_fused_counts_bad_pixels_and_fills_them_when_shifting(emulated):
    template, frame = _pair(2, (48, 40), (1.4, 2.2))
    frame[5, :7] = np.nan
    frame[9, 3] = np.inf
    frame[20:23, 30:33] = 4000.0  # saturated at 3000
    tables = rigid_tables((48, 40), 0.75, 3.0, 8.0, 4, get_backend("cpu"))
    want = _generic(frame, template, tables, 1, 3000.0)
    fused, got = _fused(frame, template, tables, 1, 3000.0, emulated, threads=32,
                        stats_blocks=5)
    _assert_measurements_agree(got, want)
    assert (got[1], got[2]) == (8, 9)
    fill = got[0]
    out = fused.shift(np.ascontiguousarray(frame), -got[4], -got[5], fill)
    ref = apply_shift(np.where(np.isfinite(frame), frame, np.float32(fill)), -got[4], -got[5])
    np.testing.assert_allclose(out, ref, rtol=1e-5, atol=1e-3)
    plain = fused.shift(np.ascontiguousarray(template), 2.6, -7.5, None)  # past the edge
    np.testing.assert_allclose(plain, apply_shift(template, 2.6, -7.5), rtol=1e-6, atol=1e-3)


@needs_gxx
def test_fused_all_nan_frame_gives_no_mean_and_no_shift(emulated):
    template, _ = _pair(3, (48, 40), (0, 0))
    frame = np.full((48, 40), np.nan, np.float32)
    tables = rigid_tables((48, 40), 0.75, 3.0, 8.0, 4, get_backend("cpu"))
    want = _generic(frame, template, tables, 1, float("inf"))
    _, got = _fused(frame, template, tables, 1, float("inf"), emulated, threads=32,
                    stats_blocks=2)
    assert np.isnan(got[0]) and got[1] == 48 * 40 and got[3] == 0.0 == want[3]
    assert got[6] == 0.0 == want[6]


def _movie(seed, n, shape=(48, 44)):
    rng = np.random.default_rng(seed)
    template, _ = _pair(seed, shape, (0, 0), noise=0)
    shifts = rng.normal(0, 1.5, (n, 2))
    frames = [apply_shift(template, *s) + rng.normal(0, 4, shape).astype(np.float32)
              for s in shifts]
    return np.stack(frames).astype(np.float32)


@needs_gxx
def test_device_corrector_with_the_fused_kernels_tracks_the_cpu_corrector(emulated):
    frames = _movie(4, 26, shape=(36, 32))
    config = MotionConfig(radius_px=4.0, max_shift_px=6.0, template_update_every=5)
    cpu = MotionCorrector.from_frames(config, frames[:12])
    dev = DeviceMotionCorrector(cpu, get_backend("cpu"), fused=emulated)
    assert dev.fused
    bad = frames[12].copy()
    bad[:20] = np.nan  # too many non-finite pixels: untrusted
    some_nan = frames[13].copy()
    some_nan[3, :5] = np.nan  # a few: trusted, filled
    qualities = []
    for f in [bad, np.full_like(frames[0], 300.0), some_nan, *frames[14:]]:
        want, got = cpu.step(f), dev.step(f)
        qualities.append(got.quality)
        assert got.quality == want.quality and got.trusted == want.trusted
        np.testing.assert_allclose(got.shift, want.shift, atol=1e-3)
        assert abs(got.score - want.score) < 1e-4
        np.testing.assert_allclose(got.corrected, want.corrected, rtol=1e-5, atol=1e-2)
    assert qualities[:3] == [FrameQuality.NON_FINITE, FrameQuality.FEATURELESS,
                             FrameQuality.OK]
    assert dev.n_untrusted == cpu.n_untrusted >= 2
    np.testing.assert_allclose(dev.template, cpu.template, rtol=1e-5)  # refreshed twice


def test_fused_needs_the_cuda_backend_and_checks_its_arguments():
    cpu = get_backend("cpu")
    corrector = MotionCorrector.from_frames(MotionConfig(radius_px=4.0), _movie(5, 5))
    assert not DeviceMotionCorrector(corrector, cpu).fused  # the generic kernels on the CPU
    with pytest.raises(DeviceMotionError, match="'cuda' backend"):
        DeviceMotionCorrector(corrector, cpu, fused=True)
    with pytest.raises(TypeError, match="takes 4 arguments"):
        typed_args("rtcal_frame_stats", (1, 2))
    tables = rigid_tables((48, 44), 0.75, 2.0, 8.0, 4, cpu)
    with pytest.raises(ValueError, match="power of two"):
        FusedRigid(tables, (48, 44), 1, np, np.fft, lambda *a: None, cpu.to_host, threads=48)
    assert fits(tables) and not fits(rigid_tables((48, 44), 0.75, 2.0, 8.0, 60, cpu))
    with pytest.raises(ValueError, match="shared memory"):
        FusedRigid(rigid_tables((48, 44), 0.75, 2.0, 8.0, 60, cpu), (48, 44), 1, np, np.fft,
                   lambda *a: None, cpu.to_host)


@pytest.mark.gpu
@pytest.mark.skipif(not cuda_available(), reason="no CUDA")
def test_fused_kernels_on_cuda_match_the_generic_ones():
    import cupy as cp

    cuda = get_backend("cuda")
    frames = _movie(6, 30, shape=(128, 96))
    config = MotionConfig(radius_px=4.0, max_shift_px=8.0, template_update_every=10)
    a = DeviceMotionCorrector(MotionCorrector.from_frames(config, frames[:10]), cuda,
                              fused=False)
    b = DeviceMotionCorrector(MotionCorrector.from_frames(config, frames[:10]), cuda)
    assert b.fused and not a.fused
    for f in frames[10:]:
        want, got = a.step(f), b.step(f)
        assert got.trusted == want.trusted
        np.testing.assert_allclose(got.shift, want.shift, atol=1e-3)
        assert abs(got.score - want.score) < 1e-4
        np.testing.assert_allclose(cp.asnumpy(got.corrected), cp.asnumpy(want.corrected),
                                   rtol=1e-5, atol=1e-2)
