"""Global offset: sub-pixel shift of footprints and its estimation."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import ndimage

from rtcal.metrics.matching import MAIN, binarise, match_masks, score
from rtcal.metrics.offset import (
    Offset,
    correlation_offset,
    estimate_offset,
    footprint_centroids,
    footprint_image,
    refine_with_centroids,
    shift_footprints,
)
from rtcal.metrics.truth import dense_to_csr

H, W = 96, 112


def gaussian_cells(centres: np.ndarray, h: int = H, w: int = W, sigma: float = 2.5) -> np.ndarray:
    """float32 (K, h, w) Gaussian footprints (max 1 at a pixel centre only if the
    centre is integral), truncated below 0.01, at sub-pixel centres (row, col)."""
    yy, xx = np.mgrid[0:h, 0:w]
    out = np.zeros((len(centres), h, w), np.float32)
    for k, (cy, cx) in enumerate(centres):
        g = np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / (2 * sigma**2))
        out[k] = np.where(g < 0.01, 0.0, g)
    return out


def random_centres(n: int, seed: int, margin: float = 10.0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return np.column_stack([rng.uniform(margin, H - margin, n), rng.uniform(margin, W - margin, n)])


def images(true_fp: np.ndarray, est_fp: np.ndarray):
    return (footprint_image(dense_to_csr(true_fp), H, W),
            footprint_image(dense_to_csr(est_fp), H, W))


def offset(true_fp: np.ndarray, est_fp: np.ndarray) -> Offset:
    return estimate_offset(dense_to_csr(true_fp), dense_to_csr(est_fp), H, W)


@pytest.mark.parametrize("shift", [(1.5, -2.0), (0.3, 0.7), (-2.25, 2.9), (0.0, 0.0)])
def test_shift_footprints_is_bilinear_grid_constant_shift(shift):
    rng = np.random.default_rng(0)
    img = (rng.random((20, 30)) * (rng.random((20, 30)) > 0.5)).astype(np.float32)
    out = shift_footprints(sp.csr_array(img.reshape(1, -1)), 20, 30, *shift)
    ref = ndimage.shift(img.astype(np.float64), shift, order=1, mode="grid-constant",
                        cval=0.0, prefilter=False)
    assert out.dtype == np.float32
    np.testing.assert_allclose(out.toarray().reshape(20, 30), ref, atol=1e-6)


def test_shift_by_integer_moves_pixels_exactly():
    a = np.zeros((2, 10, 10), np.float32)
    a[0, 2, 3] = 1.0
    a[1, 9, 9] = 2.0  # moves out of the frame
    out = shift_footprints(dense_to_csr(a), 10, 10, 3, -2).toarray().reshape(2, 10, 10)
    assert out[0, 5, 1] == 1.0 and out[0].sum() == 1.0
    assert out[1].sum() == 0.0


def test_footprint_image_normalises_each_footprint():
    a = np.zeros((2, 4, 4), np.float32)
    a[0, 1, 1], a[0, 1, 2] = 4.0, 2.0
    a[1, 1, 1] = 0.5
    img = footprint_image(dense_to_csr(a), 4, 4)
    assert img[1, 1] == 2.0 and img[1, 2] == 0.5 and img.sum() == 2.5


@pytest.mark.parametrize("method", ["correlation", "full"])
def test_offset_recovers_1p5_minus_2(method):
    c = random_centres(40, 1)
    t, e = gaussian_cells(c), gaussian_cells(c + (1.5, -2.0))
    off = correlation_offset(*images(t, e)) if method == "correlation" else offset(t, e)
    assert abs(off.dy - 1.5) <= 0.2 and abs(off.dx + 2.0) <= 0.2
    assert not off.clamped
    assert off.n_pairs == (0 if method == "correlation" else 40)


@settings(max_examples=20, deadline=None)
@given(st.floats(-3.0, 3.0), st.floats(-3.0, 3.0), st.integers(0, 1000))
def test_offset_recovers_any_shift_within_bound(dy, dx, seed):
    c = random_centres(30, seed)
    off = offset(gaussian_cells(c), gaussian_cells(c + (dy, dx)))
    assert abs(off.dy - dy) <= 0.1 and abs(off.dx - dx) <= 0.1
    assert abs(off.dy) <= 3.0 and abs(off.dx) <= 3.0


def test_offset_survives_missing_and_extra_cells():
    # 15 of 50 cells missed, 10 false positives at random places (they overlap
    # other cells and bias the correlation peak by up to ~0.3 px here; the
    # centroid median is not fooled)
    c = random_centres(50, 3)
    est = np.concatenate([gaussian_cells(c[:35] + (-1.2, 0.8)),
                          gaussian_cells(random_centres(10, 4))])
    off = offset(gaussian_cells(c), est)
    assert abs(off.dy + 1.2) <= 0.1 and abs(off.dx - 0.8) <= 0.1
    assert 30 <= off.n_pairs <= 40


def test_offset_of_binary_truth_against_float_estimates():
    # regions.json truth is binary; estimates are smooth
    c = np.round(random_centres(40, 5))
    truth = (gaussian_cells(c) >= 0.3).astype(np.float32)
    off = offset(truth, gaussian_cells(c + (0.5, 1.5)))
    assert abs(off.dy - 0.5) <= 0.1 and abs(off.dx - 1.5) <= 0.1


@pytest.mark.parametrize("shift", [(5.0, 0.5), (-4.0, -4.0), (3.6, 0.0)])
def test_offset_beyond_bound_is_clamped_and_flagged(shift):
    c = random_centres(40, 2)
    off = offset(gaussian_cells(c), gaussian_cells(c + shift))
    assert off.clamped
    assert abs(off.dy) <= 3.0 and abs(off.dx) <= 3.0
    for got, want in zip((off.dy, off.dx), shift, strict=True):
        if abs(want) > 3.0:
            assert got == pytest.approx(np.sign(want) * 3.0)  # pinned at the bound


def test_offset_within_bound_is_not_flagged():
    c = random_centres(40, 2)
    off = offset(gaussian_cells(c), gaussian_cells(c + (2.8, -2.9)))
    assert not off.clamped
    assert abs(off.dy - 2.8) <= 0.1 and abs(off.dx + 2.9) <= 0.1


def test_offset_of_empty_images_is_zero():
    off = correlation_offset(np.zeros((H, W)), np.ones((H, W)))
    assert (off.dy, off.dx, off.clamped) == (0.0, 0.0, False)
    none = np.zeros((0, H, W), np.float32)
    off = offset(none, gaussian_cells(random_centres(3, 0)))
    assert (off.dy, off.dx, off.clamped) == (0.0, 0.0, False)


def test_footprint_centroids_weight_only_the_binarised_support():
    a = np.zeros((1, 10, 10), np.float32)
    a[0, 2, 2], a[0, 2, 4] = 1.0, 3.0  # centroid col (2*1 + 4*3) / 4 = 3.5
    a[0, 9, 9] = 0.1  # below 0.2 x 3: ignored
    np.testing.assert_allclose(footprint_centroids(dense_to_csr(a), 10), [[2.0, 3.5]])


def test_refinement_takes_the_median_of_mutual_pairs():
    true_c = np.array([[10.0, 10.0], [30.0, 30.0], [50.0, 50.0], [70.0, 70.0], [90, 10]])
    # three cells displaced by (1.0, -0.5) +- small noise, one badly placed
    # estimate (2 px off: not paired), one false positive far from everything
    est_c = np.array([[11.0, 9.5], [31.1, 29.5], [50.9, 49.4], [72.0, 72.0], [5, 90]])
    coarse = Offset(0.8, -0.3, clamped=False, max_px=3.0, n_pairs=0)
    fine = refine_with_centroids(coarse, true_c, est_c)
    assert fine.n_pairs == 3
    assert (fine.dy, fine.dx) == pytest.approx((1.0, -0.5))
    # fewer than 3 pairs: keep the coarse offset
    assert refine_with_centroids(coarse, true_c[:2], est_c[:2]) == coarse


def test_aligning_restores_matches_that_the_shift_destroyed():
    c = random_centres(40, 6)
    true_fp = dense_to_csr(gaussian_cells(c))
    est_fp = dense_to_csr(gaussian_cells(c + (1.5, -2.0)))
    off = estimate_offset(true_fp, est_fp, H, W)
    aligned = shift_footprints(est_fp, H, W, -off.dy, -off.dx)
    true_masks = binarise(true_fp)
    before = score(match_masks(binarise(est_fp), true_masks, W, MAIN))
    after = score(match_masks(binarise(aligned), true_masks, W, MAIN))
    assert after.f1 == 1.0
    assert before.f1 < 0.5
