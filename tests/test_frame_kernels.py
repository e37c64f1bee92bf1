"""The online core's fused per-frame kernels against their plain references: the
separable background (centring + projection, model residual), the residual
buffer's in-place push and smoothing, and the residual search's extraction with
the smoothing moved onto the footprint."""

import numpy as np
import pytest
import scipy.sparse as sp
from scipy import ndimage

from rtcal.detect.soma import SomaGate
from rtcal.nmf.background import (
    centre_and_project,
    centre_and_project_reference,
    cosine_basis,
    cosine_factors,
    model_residual,
    model_residual_reference,
)
from rtcal.nmf.residual import (
    ResidualBuffer,
    _extract,
    _extract_reference,
    bin_and_smooth,
    bin_and_smooth_reference,
)


@pytest.mark.parametrize("shape, n", [((24, 31), 3), ((16, 16), 1), ((9, 40), 2)])
def test_cosine_factors_are_the_basis_rows(shape, n):
    U, V = cosine_factors(*shape, n)
    B = cosine_basis(*shape, n)
    outer = np.einsum("iy,jx->ijyx", U, V).reshape(n * n, -1)
    np.testing.assert_allclose(outer, B, atol=1e-6)


@pytest.mark.parametrize("dtype", [np.float32, np.uint16, np.float64])
def test_centre_and_project_matches_the_full_basis(dtype):
    rng = np.random.default_rng(1)
    H, W, n = 30, 44, 3
    frame = rng.uniform(0, 2000, (H, W)).astype(dtype)
    baseline = rng.uniform(0, 500, (H, W)).astype(np.float32)
    U, V = cosine_factors(H, W, n)
    y, proj = np.full((H, W), np.nan, np.float32), np.full(n * n, np.nan)
    centre_and_project(frame, baseline, U, V, y, proj)
    want_y, want_proj = centre_and_project_reference(frame, baseline, cosine_basis(H, W, n))
    np.testing.assert_allclose(y, want_y, rtol=1e-6)
    np.testing.assert_allclose(proj, want_proj, rtol=1e-5, atol=1e-6 * np.abs(want_proj).max())


def test_model_residual_matches_the_full_model_and_writes_in_place():
    rng = np.random.default_rng(2)
    H, W, n, K = 26, 33, 3, 7
    U, V = cosine_factors(H, W, n)
    A = sp.random(K, H * W, density=0.05, format="csr", dtype=np.float32, random_state=3)
    c = rng.uniform(0, 5, K).astype(np.float32)
    c[2] = 0.0  # skipped by the kernel: must change nothing
    f = rng.normal(0, 50, n * n).astype(np.float32)
    y = rng.normal(100, 10, (H, W)).astype(np.float32)
    ring = np.zeros((3, H, W), np.float32)
    out = model_residual(y, U, V, f, A.indptr, A.indices, A.data, c, ring[1])
    assert out.base is ring or np.shares_memory(out, ring[1])
    want = model_residual_reference(y, cosine_basis(H, W, n), f.astype(np.float64), A, c)
    np.testing.assert_allclose(ring[1], want, atol=1e-4 * np.abs(want).max())
    assert not ring[0].any() and not ring[2].any()


def test_model_residual_without_background_basis():
    rng = np.random.default_rng(4)
    H, W = 12, 10
    A = sp.random(3, H * W, density=0.2, format="csr", dtype=np.float32, random_state=5)
    c = rng.uniform(0, 2, 3).astype(np.float32)
    y = rng.normal(size=(H, W)).astype(np.float32)
    U, V = np.zeros((0, H), np.float32), np.zeros((0, W), np.float32)
    out = model_residual(y, U, V, np.zeros(0, np.float32), A.indptr, A.indices, A.data, c,
                         np.empty((H, W), np.float32))
    np.testing.assert_allclose(out.reshape(-1), y.reshape(-1) - A.T @ c, atol=1e-5)


@pytest.mark.parametrize("shape", [(2, 2), (2, 6), (6, 2), (5, 5), (37, 42), (64, 64)])
def test_bin_and_smooth_matches_the_reference_on_every_shape(shape):
    frame = np.random.default_rng(sum(shape)).normal(size=shape).astype(np.float32)
    h, w = shape[0] // 2, shape[1] // 2
    got = bin_and_smooth(frame, np.zeros((h, w), np.float32), np.zeros((h, w), np.float32))
    np.testing.assert_allclose(got, bin_and_smooth_reference(frame), atol=1e-6)


def test_push_of_the_slot_written_in_place_equals_a_copied_push():
    rng = np.random.default_rng(6)
    copied, in_place = (ResidualBuffer(7, 20, 24, block=3, decay=0.8) for _ in range(2))
    for _ in range(17):
        r = rng.normal(size=(20, 24)).astype(np.float32)
        copied.push(r)
        in_place.slot()[...] = r
        in_place.push(in_place.slot())
    np.testing.assert_array_equal(in_place.raw, copied.raw)
    np.testing.assert_array_equal(in_place.small, copied.small)
    np.testing.assert_array_equal(in_place.small_max(), copied.small_max())


def _cell_patch(rng, amplitude, *, neighbour=False, shape=(40, 31, 31), centre=(15, 15)):
    L, h, w = shape
    yy, xx = np.mgrid[:h, :w]
    cell = np.exp(-((yy - centre[0]) ** 2 + (xx - centre[1]) ** 2) / (2 * 4.0**2))
    trace = np.zeros(L)
    trace[20:] = amplitude * np.exp(-np.arange(L - 20) / 8.0)
    local = trace[:, None, None] * cell + rng.normal(0, 1, shape)
    if neighbour:  # another cell 11 px away firing at other times
        other = np.exp(-((yy - centre[0]) ** 2 + (xx - centre[1] - 11) ** 2) / (2 * 4.0**2))
        t2 = np.zeros(L)
        t2[5:15] = amplitude
        local += t2[:, None, None] * other
    return local.astype(np.float32)


@pytest.mark.parametrize(
    "amplitude, neighbour, shape, centre",
    [
        (3.0, False, (40, 31, 31), (15, 15)),
        (1.0, False, (40, 31, 31), (15, 15)),
        (3.0, True, (40, 31, 31), (15, 15)),
        (0.3, False, (40, 31, 31), (15, 15)),  # noise only: rejected or nothing
        (3.0, False, (60, 19, 31), (4, 15)),  # clipped at the frame's edge
        (3.0, False, (25, 31, 22), (15, 18)),
    ],
)
@pytest.mark.parametrize("local_background", [False, True])
def test_extraction_smoothing_the_footprint_equals_smoothing_the_patch(
    amplitude, neighbour, shape, centre, local_background
):
    rng = np.random.default_rng(int(10 * amplitude) + shape[0])
    local = _cell_patch(rng, amplitude, neighbour=neighbour, shape=shape, centre=centre)
    gate = SomaGate(6.0, min_area_frac=0.75)
    patch, trace, r = _extract(local, centre, 6.0, 0.9, gate, local_background)
    want_patch, want_trace, want_r = _extract_reference(local, centre, 6.0, 0.9, gate,
                                                        local_background)
    assert np.isnan(r) == np.isnan(want_r)
    if not np.isnan(r):
        assert r == pytest.approx(want_r, abs=1e-4)
    assert (patch is None) == (want_patch is None)
    assert (trace is None) == (want_trace is None)
    if patch is not None:
        np.testing.assert_allclose(patch, want_patch, atol=1e-4)
    if trace is not None:
        np.testing.assert_allclose(trace, want_trace, rtol=1e-4, atol=1e-4 * want_trace.max())
    # a clear cell: accepted by both (the background fit's footprint matches a weak
    # cell's transient a little less well: space r 0.90 against 0.92 at amplitude 1)
    if amplitude >= (3.0 if local_background else 1.0) and not neighbour:
        assert trace is not None and int(np.argmax(trace)) >= 20


def test_extraction_with_local_background_keeps_a_coupled_neuropil_out():
    """A cell (r = 4 px) on a patch whose neuropil rises with it (the population's
    activity) and fluctuates on its own: rank-1 factorisation spreads the footprint
    over the whole neuropil; the fit with the patch's background trace keeps it on
    the cell (as smoothed by the extraction)."""
    L, h, w = 60, 31, 31
    yy, xx = np.mgrid[:h, :w]
    cell = (np.hypot(yy - 15, xx - 15) <= 4.0).astype(np.float64)
    spikes = np.zeros(L)
    spikes[[5, 18, 30, 44]] = 1.0
    calcium = np.convolve(spikes, np.exp(-np.arange(L) / 6.0))[:L]
    neuropil = 0.6 * calcium + 0.6 * np.sin(np.arange(L) / 4.0)
    seen = ndimage.gaussian_filter(cell, 1.5, mode="constant")  # the extraction's 0.25 r
    cell_area = int((seen >= 0.2 * seen.max()).sum())
    gate = SomaGate(6.0, min_area_frac=0.3, max_area_frac=30.0)
    for seed in range(3):
        rng = np.random.default_rng(seed)
        local = (4.0 * calcium[:, None, None] * cell + neuropil[:, None, None]
                 + rng.normal(0, 0.5, (L, h, w))).astype(np.float32)
        areas = {}
        for local_background in (False, True):
            patch, _, _ = _extract(local, (15, 15), 6.0, -0.99, gate, local_background)
            areas[local_background] = int((patch >= 0.2).sum())
        assert areas[True] <= 3 * cell_area, (seed, areas, cell_area)  # 135-179 vs 73
        assert areas[False] >= 3 * areas[True], (seed, areas, cell_area)  # ~730: the patch
