"""Footprint set, sufficient statistics and footprint HALS against plain references."""

import numpy as np
import scipy.sparse as sp

from rtcal.nmf.footprints import FootprintSet, support_of, support_of_reference
from rtcal.nmf.shapes import (
    overlap_lists,
    refine_footprints,
    refine_footprints_reference,
    update_stats,
    update_stats_reference,
)


def _blobs(rng, K, H, W, r=3.0):
    yy, xx = np.mgrid[:H, :W]
    out = np.zeros((K, H, W), np.float32)
    for k in range(K):
        cy, cx = rng.uniform(4, H - 4), rng.uniform(4, W - 4)
        out[k] = np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / (2 * r**2))
        out[k][out[k] < 0.1] = 0
    return out


def _setup(seed=0, K=12, H=30, W=34, margin=2):
    rng = np.random.default_rng(seed)
    fs = FootprintSet(H, W)
    fs.add(_blobs(rng, K, H, W), born_frame=0, margin_px=margin)
    return rng, fs


def test_support_keeps_margin_and_csr_keeps_explicit_zeros():
    rng, fs = _setup()
    dense = fs.dense()
    for k in range(fs.n_components):
        supp = support_of(dense[k], 2)
        assert fs.csr.indptr[k + 1] - fs.csr.indptr[k] == supp.sum()
    assert (fs.csr.data == 0).any()  # margin pixels are stored, as zeros


def test_update_stats_matches_reference():
    rng, fs = _setup()
    K, nnz = fs.n_components, fs.csr.nnz
    w = rng.normal(size=nnz)
    M = rng.normal(size=(K, K))
    y = rng.normal(size=fs.height * fs.width).astype(np.float32)
    c = np.abs(rng.normal(size=K)).astype(np.float32)
    w_ref, M_ref = update_stats_reference(fs.csr, w.copy(), M.copy(), y, c, 0.97)
    update_stats(fs.csr.indptr, fs.csr.indices, w, M, y, c, 0.97)
    np.testing.assert_allclose(w, w_ref, rtol=1e-6)
    np.testing.assert_allclose(M, M_ref, rtol=1e-6)


def test_refine_matches_dense_reference_and_keeps_gram_consistent():
    rng, fs = _setup(seed=1)
    K, P = fs.n_components, fs.height * fs.width
    # statistics of a movie made from perturbed footprints
    truth = fs.dense().reshape(K, P) * rng.uniform(0.7, 1.3, size=(K, P)).astype(np.float32)
    C = np.abs(rng.normal(size=(K, 200))) * (rng.random((K, 200)) < 0.3)
    Y = truth.T @ C
    rows = np.repeat(np.arange(K), np.diff(fs.csr.indptr))
    w = (Y @ C.T)[fs.csr.indices, rows]
    M = C @ C.T
    order = np.arange(K)
    ov_ptr, ov_idx = overlap_lists(fs.csr)
    data_ref, G_ref = refine_footprints_reference(fs.csr, w, M, order, 1e-6)
    data = fs.csr.data.copy()
    G = fs.gram()
    scratch = np.zeros(P)
    n = refine_footprints(
        fs.csr.indptr, fs.csr.indices, data, w, M, G, ov_ptr, ov_idx, order, 1e-6, scratch
    )
    assert n == K
    np.testing.assert_allclose(data, data_ref, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(G, G_ref, rtol=1e-5, atol=1e-6)
    assert not scratch.any()


def test_repeated_refinement_approaches_the_true_footprints():
    rng, fs = _setup(seed=2, K=8)
    K, P = fs.n_components, fs.height * fs.width
    truth = sp.csr_matrix(
        (
            fs.csr.data * rng.uniform(0.5, 1.5, fs.csr.nnz).astype(np.float32),
            fs.csr.indices,
            fs.csr.indptr,
        ),
        shape=fs.csr.shape,
    ).toarray()
    C = np.abs(rng.normal(size=(K, 500))) * (rng.random((K, 500)) < 0.3)
    Y = truth.T @ C
    rows = np.repeat(np.arange(K), np.diff(fs.csr.indptr))
    w = (Y @ C.T)[fs.csr.indices, rows]
    M = C @ C.T
    ov_ptr, ov_idx = overlap_lists(fs.csr)
    data, G, scratch = fs.csr.data.copy(), fs.gram(), np.zeros(P)
    err0 = np.abs(data - truth[rows, fs.csr.indices]).max()
    for _ in range(50):
        refine_footprints(
            fs.csr.indptr,
            fs.csr.indices,
            data,
            w,
            M,
            G,
            ov_ptr,
            ov_idx,
            np.arange(K),
            1e-6,
            scratch,
        )
    err = np.abs(data - truth[rows, fs.csr.indices]).max()
    assert err < 1e-3 < err0


def test_silent_components_are_left_alone():
    rng, fs = _setup(seed=3, K=4)
    data = fs.csr.data.copy()
    M = np.zeros((4, 4))
    G = fs.gram()
    n = refine_footprints(
        fs.csr.indptr,
        fs.csr.indices,
        data,
        np.zeros(fs.csr.nnz),
        M,
        G,
        *overlap_lists(fs.csr),
        np.arange(4),
        1e-6,
        np.zeros(fs.height * fs.width),
    )
    assert n == 0 and np.array_equal(data, fs.csr.data)


def test_support_dilated_in_its_box_equals_the_whole_frame_dilated():
    rng = np.random.default_rng(3)
    for _ in range(40):
        fp = np.zeros((40, 50), np.float32)
        y, x = rng.integers(0, 40), rng.integers(0, 50)  # at the edges too
        h, w = rng.integers(1, 9, 2)
        block = fp[y : y + h, x : x + w]  # cut at the edges
        block[:] = rng.random(block.shape) * (rng.random(block.shape) > 0.3)
        for margin in (0, 1, 2, 5):
            np.testing.assert_array_equal(support_of(fp, margin), support_of_reference(fp, margin))
    empty = np.zeros((10, 10), np.float32)
    assert not support_of(empty, 3).any()
