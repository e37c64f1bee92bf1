"""xp-generic per-frame kernels against the NumPy / Numba reference kernels.

Every test runs on the "cpu" backend (NumPy arrays through the device code
path) and, marked ``gpu``, on "cuda" with CuPy, where the fused kernels of
rtcal.backend.cuda are checked too. Without a GPU the cuda cases skip.
"""

import numpy as np
import pytest
import scipy.fft

from rtcal.backend import cuda_available, get_backend, segment_sum
from rtcal.motion.bandpass import spectrum_and_power as spectrum_and_power_cpu
from rtcal.motion.frame_check import centre_frame_reference
from rtcal.motion.rigid import apply_shift, apply_shift_reference, shift_from_product
from rtcal.motion.xp_rigid import apply_shift as apply_shift_xp
from rtcal.motion.xp_rigid import centre, rigid_tables, spectrum_and_power
from rtcal.motion.xp_rigid import shift_from_product as shift_from_product_xp
from rtcal.nmf.background import cosine_basis
from rtcal.nmf.device_step import gram_with_background, grown_gram
from rtcal.nmf.footprints import FootprintSet
from rtcal.nmf.hals import hals, hals_reference
from rtcal.nmf.residual import ResidualBuffer, bin_and_smooth_reference
from rtcal.nmf.residual import bin_and_smooth as bin_and_smooth_numba
from rtcal.nmf.shapes import overlap_lists, refine_footprints, update_stats
from rtcal.nmf.xp_background import project_basis, subtract_basis
from rtcal.nmf.xp_footprints import device_footprints
from rtcal.nmf.xp_hals import device_schedule, hals_levels, hals_schedule
from rtcal.nmf.xp_residual import DeviceResidualBuffer, bin_and_smooth
from rtcal.nmf.xp_shapes import refine_block
from rtcal.nmf.xp_shapes import update_stats as update_stats_xp

BACKENDS = [
    "cpu",
    pytest.param(
        "cuda",
        marks=[pytest.mark.gpu, pytest.mark.skipif(not cuda_available(), reason="no CUDA")],
    ),
]


@pytest.fixture(params=BACKENDS)
def backend(request):
    return get_backend(request.param)


def _blobs(rng, K, H, W, r=3.0):
    yy, xx = np.mgrid[:H, :W]
    out = np.zeros((K, H, W), np.float32)
    for k in range(K):
        cy, cx = rng.uniform(4, H - 4), rng.uniform(4, W - 4)
        out[k] = 10 * np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / (2 * r**2))
        out[k][out[k] < 1] = 0
    return out


def _problem(seed=0, K=30, H=40, W=44, n_background=3):
    """Overlapping footprints, a cosine background, a frame made of both, its HALS inputs."""
    rng = np.random.default_rng(seed)
    fs = FootprintSet(H, W)
    fs.add(_blobs(rng, K, H, W), born_frame=0, margin_px=2)
    B = cosine_basis(H, W, n_background)
    c_true = (rng.random(K) * (rng.random(K) < 0.6)).astype(np.float32)
    y = (
        fs.csr.T @ c_true + B.T @ rng.normal(size=B.shape[0]) * 20 + rng.normal(size=H * W)
    ).astype(np.float32)
    G = gram_with_background(fs.csr, B)
    b = np.r_[(fs.csr @ y).astype(np.float64), B.astype(np.float64) @ y]
    c0 = np.r_[c_true + rng.normal(size=K) * 0.1, np.zeros(B.shape[0])].astype(np.float32)
    nonneg = np.r_[np.ones(K, bool), np.zeros(B.shape[0], bool)]
    return rng, fs, B, y, G, b, c0, nonneg


def _close(got, want, rtol):
    got, want = np.asarray(got), np.asarray(want)  # complex stays complex
    assert np.abs(got - want).max() <= rtol * max(np.abs(want).max(), 1e-30), (
        np.abs(got - want).max(),
        np.abs(want).max(),
    )


def test_grown_gram_equals_the_gram_of_the_grown_set():
    rng, fs, B, _, G_old, *_ = _problem(seed=3)
    K_old, H, W = fs.n_components, fs.height, fs.width
    fs.add(_blobs(rng, 5, H, W), born_frame=1, margin_px=2)  # some overlap the old ones
    want = gram_with_background(fs.csr, B)
    cpu = get_backend("cpu")
    got = grown_gram(cpu.asarray(G_old), fs.csr, K_old, B, cpu)
    _close(got, want, 1e-6)
    assert np.abs(want[K_old:fs.n_components, :K_old]).max() > 0  # new rows touch old ones


# ----------------------------------------------------------------- traces
def test_schedule_is_a_valid_level_order():
    _, fs, B, *_ = _problem()
    ov_ptr, ov_idx = overlap_lists(fs.csr)
    s = hals_schedule(ov_ptr, ov_idx, B.shape[0])
    n = fs.n_components + B.shape[0]
    level = np.empty(n, np.int64)
    for lv, rows in enumerate(s.rows_by_level()):
        level[rows] = lv
    assert np.array_equal(np.sort(s.level_rows), np.arange(n))
    assert 1 < s.n_levels < n  # parallel, but overlapping cells do chain
    for k in range(n):
        cols = s.pattern_idx[s.pattern_ptr[k] : s.pattern_ptr[k + 1]]
        assert k in cols
        # every coupled row before k is updated before k, every one after k after it
        assert (level[cols[cols < k]] < level[k]).all()
        assert (level[cols[cols > k]] > level[k]).all()


def test_hals_levels_equals_the_sequential_sweep(backend):
    _, fs, B, _, G, b, c0, nonneg = _problem(seed=1)
    ov_ptr, ov_idx = overlap_lists(fs.csr)
    schedule = device_schedule(hals_schedule(ov_ptr, ov_idx, B.shape[0]), backend)
    up = backend.asarray
    got = hals_levels(up(G), up(b), up(c0), up(nonneg), schedule.levels, 3)
    want = hals(G, b, c0, nonneg, 3)
    _close(backend.to_host(got), want, 1e-6)
    _close(want, hals_reference(G, b, c0, nonneg, 3), 1e-6)
    assert (want[: fs.n_components] >= 0).all() and (want[fs.n_components :] < 0).any()
    if backend.on_device:
        from rtcal.backend import cuda

        c64 = up(c0.astype(np.float64))
        cuda.hals_levels_fused(up(G), up(b), c64, up(nonneg.astype(np.uint8)), schedule, 3)
        _close(backend.to_host(c64), want, 1e-6)


# ------------------------------------------------------------- background
def test_basis_projection_and_subtraction(backend):
    rng, _, B, y, *_ = _problem(seed=2)
    f = rng.normal(size=B.shape[0]).astype(np.float32)
    up = backend.asarray
    B64, y64 = B.astype(np.float64), y.astype(np.float64)
    _close(backend.to_host(project_basis(up(B), up(y))), B64 @ y64, 1e-6)
    want = y64 - B64.T @ f.astype(np.float64)
    _close(backend.to_host(subtract_basis(up(y), up(B), up(f))), want, 1e-6)


# ------------------------------------------------------------- footprints
def test_device_footprints_products_and_pairs(backend):
    rng, fs, _, y, *_ = _problem(seed=3)
    fp = device_footprints(fs.csr, backend)
    c = rng.random(fs.n_components).astype(np.float32)
    _close(backend.to_host(fp.csr @ backend.asarray(y)), fs.csr @ y, 1e-6)
    _close(backend.to_host(fp.csr_t @ backend.asarray(c)), fs.csr.T @ c, 1e-6)
    data, at_data = backend.to_host(fp.data), backend.to_host(fp.at_data)
    t_of_a = backend.to_host(fp.t_of_a)
    np.testing.assert_array_equal(at_data[t_of_a], data)
    # pairs of entry q: every footprint entry at q's pixel, and nothing else
    pixel_of_t = np.repeat(
        np.arange(fs.csr.shape[1]),
        np.diff(fp.csr_t.indptr.get() if backend.on_device else fp.csr_t.indptr),
    )
    pair_t, pair_q = backend.to_host(fp.pair_t), backend.to_host(fp.pair_q)
    np.testing.assert_array_equal(pixel_of_t[pair_t], fs.csr.indices[pair_q])
    counts = np.bincount(fs.csr.indices, minlength=fs.csr.shape[1])
    assert len(pair_t) == counts[fs.csr.indices].sum()
    if backend.on_device:
        from rtcal.backend import cuda

        xp = backend.xp
        out = xp.zeros(fs.n_components, xp.float32)
        cuda.csr_matvec(fp.indptr, fp.indices, fp.data, backend.asarray(y), out, long_rows=True)
        _close(backend.to_host(out), fs.csr @ y, 1e-5)
        out = xp.zeros(fs.csr.shape[1], xp.float32)
        cuda.csr_matvec(
            fp.at_indptr, fp.at_indices, fp.at_data, backend.asarray(c), out, long_rows=False
        )
        _close(backend.to_host(out), fs.csr.T @ c, 1e-5)


def test_segment_sum(backend):
    rng = np.random.default_rng(4)
    seg = rng.integers(0, 7, 100)
    val = rng.normal(size=100)
    want = np.array([val[seg == s].sum() for s in range(9)])
    _close(backend.to_host(segment_sum(backend.asarray(seg), backend.asarray(val), 9)), want, 1e-12)


def test_update_stats_matches_numba(backend):
    rng, fs, _, y, *_ = _problem(seed=5)
    K = fs.n_components
    w = rng.normal(size=fs.csr.nnz)
    M = rng.normal(size=(K, K))
    c = rng.random(K).astype(np.float32)
    fp = device_footprints(fs.csr, backend)
    for beta in (1.0, 0.97):
        w_dev, M_dev = backend.asarray(w.copy()), backend.asarray(M.copy())
        update_stats_xp(fp, w_dev, M_dev, backend.asarray(y), backend.asarray(c), beta)
        w_ref, M_ref = w.copy(), M.copy()
        update_stats(fs.csr.indptr, fs.csr.indices, w_ref, M_ref, y, c, beta)
        _close(backend.to_host(w_dev), w_ref, 1e-12)
        _close(backend.to_host(M_dev), M_ref, 1e-12)


def _refine_reference(fs, w, M, G, B, order):
    """OnlineNMF._refine's kernel calls on copies: (data, G)."""
    K = fs.n_components
    csr = fs.csr.copy()
    G = G.copy()
    GA = np.ascontiguousarray(G[:K, :K])
    ov_ptr, ov_idx = overlap_lists(csr)
    refine_footprints(
        csr.indptr,
        csr.indices,
        csr.data,
        w,
        M,
        GA,
        ov_ptr,
        ov_idx,
        order,
        1e-3,
        np.zeros(csr.shape[1]),
    )
    G[:K, :K] = GA
    for k in order:
        lo, hi = csr.indptr[k], csr.indptr[k + 1]
        ab = B[:, csr.indices[lo:hi]] @ csr.data[lo:hi].astype(np.float64)
        G[k, K:], G[K:, k] = ab, ab
    return csr.data, G


def test_refine_block_matches_numba(backend):
    rng, fs, B, _, G, *_ = _problem(seed=6)
    K, P = fs.n_components, fs.csr.shape[1]
    truth = fs.dense().reshape(K, P) * rng.uniform(0.7, 1.3, (K, P)).astype(np.float32)
    C = np.abs(rng.normal(size=(K, 200))) * (rng.random((K, 200)) < 0.3)
    C[3] = 0  # a silent component: M_33 = 0 < min_mkk, left as it is
    Y = truth.T @ C
    rows = np.repeat(np.arange(K), np.diff(fs.csr.indptr))
    w = (Y @ C.T)[fs.csr.indices, rows]
    M = C @ C.T
    order = np.r_[np.arange(1, 9), 3, 20, 21, 22]
    data_ref, G_ref = _refine_reference(fs, w, M, G, B, order)
    assert np.abs(data_ref - fs.csr.data).max() > 0.1  # the block changed something
    fp = device_footprints(fs.csr, backend)
    up = backend.asarray
    G_dev, w_dev, M_dev, B64 = up(G.copy()), up(w), up(M), up(B.astype(np.float64))
    refine_block(fp, w_dev, M_dev, G_dev, B64, order, 1e-3)
    _close(backend.to_host(fp.data), data_ref, 1e-5)
    _close(backend.to_host(G_dev), G_ref, 1e-5)
    np.testing.assert_array_equal(
        backend.to_host(fp.at_data)[backend.to_host(fp.t_of_a)], backend.to_host(fp.data)
    )
    if backend.on_device:
        from rtcal.backend import cuda

        fp = device_footprints(fs.csr, backend)
        G_dev = up(G.copy())
        order_dev = up(order.astype(np.int32))
        cuda.refine_block_fused(fp, w_dev, M_dev, G_dev, B64, order_dev, len(order), 1e-3)
        _close(backend.to_host(fp.data), data_ref, 1e-5)
        _close(backend.to_host(G_dev), G_ref, 1e-5)


# --------------------------------------------------------------- residual
def test_bin_and_smooth_matches_numba_and_reference(backend):
    frame = np.random.default_rng(7).normal(size=(37, 42)).astype(np.float32)
    h, w = 18, 21
    want = bin_and_smooth_numba(frame, np.zeros((h, w), np.float32), np.zeros((h, w), np.float32))
    got = backend.to_host(bin_and_smooth(backend.asarray(frame)))
    _close(got, want, 1e-6)
    _close(got, bin_and_smooth_reference(frame), 1e-5)


@pytest.mark.parametrize("decay", [0.0, 0.8])
def test_device_residual_buffer_serves_the_search_like_the_host_buffer(backend, decay):
    rng = np.random.default_rng(8)
    host = ResidualBuffer(6, 20, 24, decay=decay)
    dev = DeviceResidualBuffer(6, 20, 24, backend, decay=decay)
    for _ in range(9):  # wraps around
        r = rng.normal(size=(20, 24)).astype(np.float32)
        host.push(r)
        dev.push(backend.asarray(r), bin_and_smooth(backend.asarray(r)))
    view = dev.view()
    _close(view.small.max(axis=0), host.small.max(axis=0), 1e-6)
    box = (slice(3, 11), slice(5, 17))
    np.testing.assert_array_equal(view.patch(box), host.patch(box))
    np.testing.assert_array_equal(dev.patch(box), host.patch(box))
    idx = np.array([0, 7, 100, 479])
    np.testing.assert_array_equal(dev.pixels(idx), host.pixels(idx))


# ----------------------------------------------------------------- motion
def _textured(rng, shape):
    img = np.zeros(shape)
    for _ in range(40):
        cy, cx = rng.uniform(0, shape[0]), rng.uniform(0, shape[1])
        yy, xx = np.mgrid[: shape[0], : shape[1]]
        img += rng.uniform(50, 200) * np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / 8)
    return img + np.linspace(0, 30, shape[1])


@pytest.mark.parametrize("bin_px", [1, 2])
def test_centre_matches_reference(backend, bin_px):
    rng = np.random.default_rng(9)
    frame = (rng.normal(size=(34, 41)) * 10 + 100).astype(np.float32)
    frame[2, 3], frame[5, 6], frame[7, 8] = np.nan, np.inf, 200.0
    got = centre(backend.asarray(frame), 150.0, bin_px)
    want, stats = centre_frame_reference(frame, 150.0, bin_px)
    _close(backend.to_host(got.image), want, 1e-5)
    assert abs(float(got.mean) - stats.mean) < 1e-9 * stats.mean
    assert int(got.n_nonfinite) == stats.n_nonfinite == 2
    assert int(got.n_saturated) == stats.n_saturated


@pytest.mark.parametrize("shape", [(48, 64), (45, 51)])
def test_spectrum_and_shift_match_the_cpu_path(backend, shape):
    rng = np.random.default_rng(10)
    tables = rigid_tables(shape, 0.75, 3.0, 6.0, 4, backend)
    img = _textured(rng, shape).astype(np.float32)
    img -= img.mean()
    got, power = spectrum_and_power(backend.asarray(img), tables)
    want, power_ref = spectrum_and_power_cpu(img, 0.75, 3.0)
    _close(backend.to_host(got), want, 1e-5)
    assert abs(float(power) - power_ref) < 1e-5 * power_ref
    for dy, dx in [(1.3, -2.6), (-4.2, 0.4), (9.0, -9.0)]:  # the last is beyond the bound
        moved = np.real(
            scipy.fft.ifft2(
                scipy.fft.fft2(img)
                * np.exp(
                    -2j
                    * np.pi
                    * (scipy.fft.fftfreq(shape[0])[:, None] * dy + scipy.fft.fftfreq(shape[1]) * dx)
                )
            )
        )
        spec = spectrum_and_power_cpu(moved.astype(np.float32), 0.75, 3.0)[0]
        product = (spec * np.conj(want)).astype(np.complex64)
        ref = shift_from_product(product, shape, 6.0, 4)
        out = shift_from_product_xp(backend.asarray(product), tables)
        got3 = [float(v) for v in out]
        np.testing.assert_allclose(got3[:2], ref[:2], atol=1e-4)
        assert abs(got3[2] - ref[2]) < 1e-4 * abs(ref[2])
        if abs(dy) < 6:
            np.testing.assert_allclose(got3[:2], (dy, dx), atol=0.05)


def test_apply_shift_matches_numba_and_scipy(backend):
    frame = _textured(np.random.default_rng(11), (30, 37)).astype(np.float32)
    for dy, dx in [(0.3, -1.7), (-2.0, 2.5), (4.25, 0.0)]:
        got = backend.to_host(apply_shift_xp(backend.asarray(frame), dy, dx))
        _close(got, apply_shift(frame, dy, dx), 2e-6)
        _close(got, apply_shift_reference(frame, dy, dx), 2e-6)
    u16 = (frame * 10).astype(np.uint16)
    _close(
        backend.to_host(apply_shift_xp(backend.asarray(u16), 1.5, -0.5)),
        apply_shift(u16, 1.5, -0.5),
        2e-6,
    )
