"""Footprint matching: exact counts on geometries whose IoUs are known by construction."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.optimize import linear_sum_assignment

from rtcal.metrics.matching import (
    CAIMAN,
    MAIN,
    binarise,
    iou_pairs,
    mask_centroids,
    match_masks,
    score,
)

H, W = 64, 96


def rect(r0: int, c0: int, n_rows: int, n_cols: int, h: int = H, w: int = W) -> np.ndarray:
    """Binary footprint (h, w) float32: 1 on rows r0:r0+n_rows, cols c0:c0+n_cols."""
    a = np.zeros((h, w), np.float32)
    a[r0 : r0 + n_rows, c0 : c0 + n_cols] = 1.0
    return a


def csr(*footprints: np.ndarray) -> sp.csr_array:
    """Stack (h, w) footprints into csr (K, h*w)."""
    if not footprints:
        return sp.csr_array((0, H * W), dtype=np.float32)
    return sp.csr_array(np.stack([f.ravel() for f in footprints]))


def run(est: list, true: list, convention=MAIN):
    """Scores of matching binarised est against binarised true footprints."""
    m = match_masks(binarise(csr(*est)), binarise(csr(*true)), W, convention)
    return m, score(m)


def grid_cells(n: int) -> list[np.ndarray]:
    """n disjoint 6x7 rectangles on a grid, 4 px apart."""
    return [rect(2 + 10 * (k // 8), 2 + 11 * (k % 8), 6, 7) for k in range(n)]


# --- binarisation and IoU ---------------------------------------------------------


def test_binarise_threshold_is_inclusive_fraction_of_each_maximum():
    a = np.zeros((H, W), np.float32)
    a[0, :5] = [10.0, 2.0, 1.999, 0.0, 5.0]  # max 10 -> threshold 2.0
    b = np.zeros((H, W), np.float32)
    b[1, 0:3] = [5.0, 1.0, 0.999]  # max 5 -> threshold 1.0 (per footprint)
    masks = binarise(csr(a, b, np.zeros((H, W), np.float32))).toarray()
    assert masks.dtype == bool
    assert set(np.flatnonzero(masks[0])) == {0, 1, 4}
    assert set(np.flatnonzero(masks[1])) == {W + 0, W + 1}
    assert not masks[2].any()  # an all-zero footprint is an empty mask


def test_iou_pairs_matches_dense_reference_and_skips_disjoint_pairs():
    est = [rect(0, 0, 10, 10), rect(0, 4, 10, 10), rect(40, 40, 3, 3)]
    true = [rect(0, 0, 10, 10), rect(0, 5, 10, 5)]
    iou = iou_pairs(binarise(csr(*est)), binarise(csr(*true))).toarray()
    # hand-computed: |A&B| / |A|B|
    expected = np.array([
        [1.0, 50 / 100],
        [60 / 140, 50 / 100],
        [0.0, 0.0],
    ])
    np.testing.assert_allclose(iou, expected, rtol=0, atol=1e-15)
    assert iou_pairs(binarise(csr(*est)), binarise(csr(*true))).nnz == 4


def test_centroids_are_row_col_means():
    c = mask_centroids(binarise(csr(rect(4, 10, 3, 5), np.zeros((H, W), np.float32))), W)
    np.testing.assert_allclose(c[0], [5.0, 12.0])
    assert np.isnan(c[1]).all()


# --- the designed cases --------------------------------------------------------------


def test_perfect_estimates_give_f1_exactly_one():
    cells = grid_cells(20)
    m, s = run(cells, cells)
    assert (s.n_tp, s.n_fp, s.n_fn) == (20, 0, 0)
    assert s.precision == 1.0 and s.recall == 1.0 and s.f1 == 1.0
    np.testing.assert_array_equal(m.est_index, m.true_index)
    assert s.median_iou == 1.0


@pytest.mark.parametrize("n_drop", [1, 5, 19])
def test_dropped_footprints(n_drop):
    cells = grid_cells(20)
    rng = np.random.default_rng(n_drop)
    keep = np.sort(rng.choice(20, 20 - n_drop, replace=False))
    _, s = run([cells[k] for k in keep], cells)
    assert (s.n_tp, s.n_fn, s.n_fp) == (20 - n_drop, n_drop, 0)
    assert s.precision == 1.0
    assert s.recall == (20 - n_drop) / 20


def test_split_cell_gives_two_false_positives_and_one_miss():
    # true cell 8 x 11 = 88 px; two halves 8 x 5 = 40 px with a 1-column gap:
    # IoU(half, cell) = 40 / 88 = 0.4545 < 0.5; the halves' centroids are 3 px away.
    cell = rect(10, 10, 8, 11)
    halves = [rect(10, 10, 8, 5), rect(10, 16, 8, 5)]
    others = [rect(40, 50 + 10 * k, 6, 6) for k in range(4)]  # well away from the cell
    m, s = run(halves + others, [cell] + others)
    assert (s.n_tp, s.n_fp, s.n_fn) == (4, 2, 1)
    assert m.iou[m.true_index == 0] == pytest.approx(40 / 88)
    # CaImAn: IoU 0.4545 > 0.3 and centroids 3 px apart -> one half counts
    _, c = run(halves + others, [cell] + others, CAIMAN)
    assert (c.n_tp, c.n_fp, c.n_fn) == (5, 1, 0)


def test_merged_pair_with_unequal_cells_matches_the_larger_one():
    # A 10x6 = 60 px and B 10x4 = 40 px side by side; estimate = their union.
    # IoU(E, A) = 60/100 = 0.6 (TP), IoU(E, B) = 0.4 -> B missed.
    a, b = rect(5, 5, 10, 6), rect(5, 11, 10, 4)
    m, s = run([a + b], [a, b])
    assert (s.n_tp, s.n_fp, s.n_fn) == (1, 0, 1)
    assert m.true_index.tolist() == [0] and m.iou.tolist() == [0.6]
    _, c = run([a + b], [a, b], CAIMAN)
    assert (c.n_tp, c.n_fp, c.n_fn) == (1, 0, 1)


def test_merged_triple_is_no_match_but_caiman_counts_one():
    # three 10x5 cells in a row; the union has IoU 50/150 = 1/3 with each.
    cells = [rect(5, 5 + 5 * k, 10, 5) for k in range(3)]
    union = cells[0] + cells[1] + cells[2]
    m, s = run([union], cells)
    assert (s.n_tp, s.n_fp, s.n_fn) == (0, 1, 3)
    assert len(m.iou) == 1 and m.iou[0] == pytest.approx(1 / 3)  # matched, but not a TP
    # CaImAn: 1/3 > 0.3; union centroid (9.5, 12) is 0 or 5 px from the cells'
    _, c = run([union], cells, CAIMAN)
    assert (c.n_tp, c.n_fp, c.n_fn) == (1, 0, 2)


def test_false_positive_blobs_count_as_fp():
    cells = grid_cells(10)
    blobs = [rect(50, 10 * k, 4, 4) for k in range(1, 7)]  # rows 50+, no cell there
    _, s = run(cells + blobs, cells)
    assert (s.n_tp, s.n_fp, s.n_fn) == (10, 6, 0)
    assert s.precision == 10 / 16 and s.recall == 1.0
    assert s.f1 == 2 * 10 / (16 + 10)


def test_iou_exactly_half_counts_under_main():
    # IoU 50/100 = 0.5: the main rule is IoU >= 0.5
    _, s = run([rect(0, 0, 10, 5)], [rect(0, 0, 10, 10)])
    assert s.n_tp == 1


def test_iou_04_counts_under_caiman_only():
    # estimate 10x4 inside a 10x10 cell: IoU 0.4, centroids 3 px apart
    est, true = [rect(10, 10, 10, 4)], [rect(10, 10, 10, 10)]
    _, s = run(est, true)
    _, c = run(est, true, CAIMAN)
    assert (s.n_tp, c.n_tp) == (0, 1)


def test_iou_exactly_03_does_not_count_under_caiman():
    # 10x3 inside 10x10: IoU = 0.3 exactly; CaImAn needs IoU > 0.3
    _, c = run([rect(10, 10, 10, 3)], [rect(10, 10, 10, 10)], CAIMAN)
    assert c.n_tp == 0


@pytest.mark.parametrize(("shift", "caiman_tp"), [(9, 1), (10, 0), (12, 0)])
def test_caiman_centroid_distance(shift, caiman_tp):
    # long 2x40 cells displaced along their length: IoU = (40-s)/(40+s) >= 0.5
    # for s <= 13, so the main rule counts them; CaImAn needs centroids < 10 px.
    true = [rect(20, 5, 2, 40)]
    est = [rect(20, 5 + shift, 2, 40)]
    _, s = run(est, true)
    _, c = run(est, true, CAIMAN)
    assert s.n_tp == 1
    assert c.n_tp == caiman_tp


def test_gated_pairs_do_not_block_caiman_matches():
    # est 0 overlaps true 0 at IoU 0.25 (not allowed under CaImAn) and true 1 at
    # IoU 0.4; est 1 equals true 0. With gating, est 0 -> true 1 and est 1 -> true 0.
    t0, t1 = rect(0, 0, 10, 10), rect(20, 0, 10, 10)
    e1 = t0.copy()
    e0 = rect(20, 0, 10, 4)  # inside t1: IoU 0.4
    _, c = run([e0, e1], [t0, t1], CAIMAN)
    assert (c.n_tp, c.n_fp, c.n_fn) == (2, 0, 0)


def test_hungarian_prefers_the_assignment_with_more_total_iou():
    # est 0 overlaps both true cells: IoU 70/130 with t0, 30/170 with t1; est 1
    # lies inside t0: IoU 0.8. Taking estimates in order, each to its best cell,
    # gives (0, 0) alone (total 0.54); the optimum is (0, 1), (1, 0) (total 0.98).
    t0, t1 = rect(0, 0, 10, 10), rect(0, 10, 10, 10)
    e0 = rect(0, 3, 10, 10)
    e1 = rect(0, 0, 10, 8)
    m, s = run([e0, e1], [t0, t1])
    pairs = sorted(zip(m.est_index.tolist(), m.true_index.tolist(), strict=True))
    assert pairs == [(0, 1), (1, 0)]
    assert s.n_tp == 1  # only e1 -> t0 (0.8); e0 -> t1 is 30/170


def test_empty_estimate_and_empty_truth():
    m, s = run([], grid_cells(3))
    assert (s.n_tp, s.n_fn, s.n_est) == (0, 3, 0)
    assert np.isnan(s.precision) and s.recall == 0.0 and s.f1 == 0.0
    assert m.est_index.dtype == np.int64


# --- properties -----------------------------------------------------------------------


@st.composite
def rect_sets(draw):
    """Two lists of random rectangles on a 24 x 24 frame (overlaps likely)."""
    def one():
        r, c = draw(st.integers(0, 20)), draw(st.integers(0, 20))
        return (r, c, draw(st.integers(1, 6)), draw(st.integers(1, 6)))
    n_est, n_true = draw(st.integers(0, 8)), draw(st.integers(0, 8))
    return [one() for _ in range(n_est)], [one() for _ in range(n_true)]


def small_masks(rects: list) -> sp.csr_array:
    out = np.zeros((len(rects), 24 * 24), bool)
    for k, (r, c, nr, nc) in enumerate(rects):
        m = np.zeros((24, 24), bool)
        m[r : r + nr, c : c + nc] = True
        out[k] = m.ravel()
    return sp.csr_array(out.reshape(len(rects), 24 * 24))


def dense_iou(est: sp.csr_array, true: sp.csr_array) -> np.ndarray:
    e, t = est.toarray().astype(float), true.toarray().astype(float)
    inter = e @ t.T
    union = e.sum(1)[:, None] + t.sum(1)[None, :] - inter
    return np.divide(inter, union, out=np.zeros_like(inter), where=union > 0)


@settings(max_examples=150, deadline=None)
@given(rect_sets(), st.randoms(use_true_random=False))
def test_permuting_estimates_and_truth_never_changes_counts(sets, rnd):
    est_r, true_r = sets
    est, true = small_masks(est_r), small_masks(true_r)
    pe = list(range(len(est_r)))
    pt = list(range(len(true_r)))
    rnd.shuffle(pe)
    rnd.shuffle(pt)
    for conv in (MAIN, CAIMAN):
        a = match_masks(est, true, 24, conv)
        b = match_masks(est[pe], true[pt], 24, conv)
        assert a.n_tp == b.n_tp
        assert a.iou.sum() == pytest.approx(b.iou.sum(), abs=1e-12)


@settings(max_examples=150, deadline=None)
@given(rect_sets())
def test_sparse_matching_equals_dense_hungarian(sets):
    est_r, true_r = sets
    est, true = small_masks(est_r), small_masks(true_r)
    iou = dense_iou(est, true)
    np.testing.assert_allclose(iou_pairs(est, true).toarray(), iou, atol=1e-15)
    m = match_masks(est, true, 24, MAIN)
    ri, ci = linear_sum_assignment(iou, maximize=True)
    assert m.iou.sum() == pytest.approx(iou[ri, ci].sum(), abs=1e-7)
    # every reported pair carries its true IoU; no estimate or truth is used twice
    np.testing.assert_allclose(m.iou, iou[m.est_index, m.true_index], atol=1e-15)
    assert len(set(m.est_index.tolist())) == len(m.est_index)
    assert len(set(m.true_index.tolist())) == len(m.true_index)
    s = score(m)
    assert s.n_tp + s.n_fp == len(est_r) and s.n_tp + s.n_fn == len(true_r)
    np.testing.assert_array_equal(m.is_tp, m.iou >= 0.5)


@settings(max_examples=100, deadline=None)
@given(rect_sets())
def test_caiman_pairs_satisfy_both_gates(sets):
    est_r, true_r = sets
    est, true = small_masks(est_r), small_masks(true_r)
    m = match_masks(est, true, 24, CAIMAN)
    ce, ct = mask_centroids(est, 24), mask_centroids(true, 24)
    assert np.all(m.iou > 0.3)
    assert np.all(np.hypot(*(ce[m.est_index] - ct[m.true_index]).T) < 10)
    assert m.is_tp.all()


# --- scale ----------------------------------------------------------------------------


def disc_csr(centres: np.ndarray, radius: float, h: int, w: int) -> sp.csr_array:
    """Binary discs as csr (K, h*w), built sparse (no dense K x h x w array)."""
    r = int(np.ceil(radius))
    dy, dx = np.mgrid[-r : r + 1, -r : r + 1]
    inside = dy**2 + dx**2 <= radius**2
    dy, dx = dy[inside], dx[inside]
    rows = centres[:, :1] + dy[None, :]
    cols = centres[:, 1:] + dx[None, :]
    ok = (rows >= 0) & (rows < h) & (cols >= 0) & (cols < w)
    k = np.broadcast_to(np.arange(len(centres))[:, None], rows.shape)
    return sp.csr_array(
        (np.ones(ok.sum(), np.float32), (k[ok], rows[ok] * w + cols[ok])),
        shape=(len(centres), h * w),
    )


def test_matching_1500_by_1500_at_1024():
    from rtcal.metrics.evaluate import score_footprints
    from rtcal.metrics.truth import Truth

    rng = np.random.default_rng(7)
    h = w = 1024
    centres = rng.integers(6, 1018, size=(1500, 2))
    true = disc_csr(centres, 5.0, h, w)
    drop = rng.choice(1500, 100, replace=False)
    keep = np.setdiff1d(np.arange(1500), drop)
    # 100 extra 2x2 blobs: IoU <= 4/81 with any cell, so never a TP and never
    # worth more to the assignment than a cell's own estimate (IoU 1)
    extra = disc_csr(rng.integers(2, 1022, size=(100, 2)), 0.8, h, w)
    est = sp.csr_array(sp.vstack([true[keep], extra]))
    truth = Truth(footprints=true, height=h, width=w)
    fe = score_footprints(est, truth)  # timed by bench/evaluate.py
    s, c = score(fe.main), score(fe.caiman)
    assert (fe.offset.dy, fe.offset.dx) == (0.0, 0.0)
    assert (s.n_tp, s.n_fp, s.n_fn) == (1400, 100, 100)
    assert (c.n_tp, c.n_fp, c.n_fn) == (1400, 100, 100)
