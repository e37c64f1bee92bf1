"""Sufficient statistics and footprint refinement (online HALS on the footprints).

Online CNMF (Giovannucci et al. 2017, "OnACID", NeurIPS; Mairal et al. 2010 for
online dictionary learning) keeps, instead of the movie, the statistics

    W = sum_t beta^(t_now - t) y_t c_t^T      (P, K), stored only on each footprint's support
    M = sum_t beta^(t_now - t) c_t c_t^T      (K, K)

and refines footprints by block-coordinate descent on them (HALS):

    a_k <- max(0, a_k + (W_k - A^T M_k) / M_kk)   on the support of a_k,

where (A^T M_k)(s) = sum_j M_jk a_j(s) runs only over components j whose
supports overlap k's. After a_k changes, row and column k of the Gram matrix
G = A A^T are recomputed from the same overlap lists.

All kernels take the CSR arrays of A (indptr, indices, data) and an overlap
list in CSR form (ov_ptr, ov_idx): the components whose supports overlap each
component, itself included.
"""

from __future__ import annotations

import numba
import numpy as np
import scipy.sparse as sp


def overlap_lists(csr: sp.csr_matrix) -> tuple[np.ndarray, np.ndarray]:
    """(ov_ptr, ov_idx): for each row k, the rows whose support overlaps k's (k included)."""
    pattern = sp.csr_matrix(
        (np.ones(csr.nnz, np.float32), csr.indices, csr.indptr), shape=csr.shape
    )
    ov = (pattern @ pattern.T).tocsr()
    ov.sort_indices()
    return ov.indptr.astype(np.int64), ov.indices.astype(np.int64)


@numba.njit(cache=True)
def new_rows_overlap(indptr, indices, data, first, scratch, mark):  # pragma: no cover
    """For rows first..K-1 just appended to a CSR (K, P): cross float64 (K, n), the
    Gram entries a_k . a_(first+j) of every row with each new row, and touch bool
    (K, n), whether their supports share a pixel (stored zeros count).
    scratch: float64 (P,) and mark: bool (P,), zeros / False, returned so.
    One pass over all rows per new row: O(n nnz)."""
    K = indptr.shape[0] - 1
    n = K - first
    cross = np.zeros((K, n))
    touch = np.zeros((K, n), np.bool_)
    for j in range(n):
        r = first + j
        for p in range(indptr[r], indptr[r + 1]):
            scratch[indices[p]] = data[p]
            mark[indices[p]] = True
        for k in range(K):
            acc = 0.0
            hit = False
            for p in range(indptr[k], indptr[k + 1]):
                if mark[indices[p]]:
                    hit = True
                    acc += data[p] * scratch[indices[p]]
            cross[k, j] = acc
            touch[k, j] = hit
        for p in range(indptr[r], indptr[r + 1]):
            scratch[indices[p]] = 0.0
            mark[indices[p]] = False
    return cross, touch


@numba.njit(cache=True)
def extend_overlaps(ov_ptr, ov_idx, touch, first):  # pragma: no cover - compiled
    """Overlap lists (ov_ptr, ov_idx) of rows 0..first-1, extended by the rows
    first..K-1 whose overlaps are touch bool (K, n) -> the lists of all K rows,
    each sorted, as :func:`overlap_lists` of the grown matrix."""
    K, n = touch.shape
    sizes = np.zeros(K, np.int64)
    for k in range(first):
        sizes[k] = ov_ptr[k + 1] - ov_ptr[k]
    for k in range(K):
        for j in range(n):
            if touch[k, j]:
                sizes[first + j] += 1
                if k < first:
                    sizes[k] += 1
    ptr = np.zeros(K + 1, np.int64)
    for k in range(K):
        ptr[k + 1] = ptr[k] + sizes[k]
    idx = np.empty(ptr[K], np.int64)
    for k in range(first):  # old list (all < first), then the new rows it touches
        q = ptr[k]
        for p in range(ov_ptr[k], ov_ptr[k + 1]):
            idx[q] = ov_idx[p]
            q += 1
        for j in range(n):
            if touch[k, j]:
                idx[q] = first + j
                q += 1
    for j in range(n):  # a new row: every row it touches, ascending
        q = ptr[first + j]
        for k in range(K):
            if touch[k, j]:
                idx[q] = k
                q += 1
    return ptr, idx


@numba.njit(cache=True)
def background_rows(indptr, indices, data, BT, order, G, K):  # pragma: no cover
    """For the components in ``order``: G[k, K + b] = G[K + b, k] = a_k . B_b, from
    the CSR arrays of A and BT = B^T float32 (P, nb); float64 sums. In place."""
    nb = BT.shape[1]
    acc = np.zeros(nb)
    for k in order:
        acc[:] = 0.0
        for p in range(indptr[k], indptr[k + 1]):
            v = np.float64(data[p])
            row = indices[p]
            for b in range(nb):
                acc[b] += BT[row, b] * v
        for b in range(nb):
            G[k, K + b] = acc[b]
            G[K + b, k] = acc[b]


def background_rows_reference(csr, B, order, G, K) -> None:
    """Plain version of :func:`background_rows`."""
    for k in order:
        lo, hi = csr.indptr[k], csr.indptr[k + 1]
        ab = B[:, csr.indices[lo:hi]] @ csr.data[lo:hi].astype(np.float64)
        G[k, K:] = ab
        G[K:, k] = ab


@numba.njit(cache=True)
def update_stats(indptr, indices, w_data, M, y, c, beta):  # pragma: no cover - compiled
    """W <- beta W + y c^T on the support pattern; M <- beta M + c c^T. In place."""
    K = c.shape[0]
    for k in range(K):
        ck = c[k]
        for j in range(indptr[k], indptr[k + 1]):
            w_data[j] = beta * w_data[j] + y[indices[j]] * ck
    for i in range(K):
        for j in range(K):
            M[i, j] = beta * M[i, j] + c[i] * c[j]


def update_stats_reference(csr, w_data, M, y, c, beta) -> tuple[np.ndarray, np.ndarray]:
    """Plain version of :func:`update_stats`; returns new (w_data, M)."""
    rows = np.repeat(np.arange(csr.shape[0]), np.diff(csr.indptr))
    w_new = beta * w_data + y[csr.indices] * c[rows]
    return w_new, beta * M + np.outer(c, c)


@numba.njit(cache=True)
def refine_footprints(
    indptr, indices, data, w_data, M, G, ov_ptr, ov_idx, order, min_mkk, scratch
):  # pragma: no cover - compiled
    """One HALS pass over the components in ``order``; updates data and G in place.

    scratch: float64 (P,) of zeros, returned to zeros. Components with
    M_kk < min_mkk (never active enough) are left as they are. Returns the
    number of components updated.
    """
    n_updated = 0
    for k in order:
        mkk = M[k, k]
        if mkk < min_mkk:
            continue
        # scratch <- A^T M_k on the union of overlapping supports
        for q in range(ov_ptr[k], ov_ptr[k + 1]):
            j = ov_idx[q]
            m = M[j, k]
            for p in range(indptr[j], indptr[j + 1]):
                scratch[indices[p]] += m * data[p]
        for p in range(indptr[k], indptr[k + 1]):
            v = data[p] + (w_data[p] - scratch[indices[p]]) / mkk
            data[p] = v if v > 0.0 else 0.0
        for q in range(ov_ptr[k], ov_ptr[k + 1]):
            j = ov_idx[q]
            for p in range(indptr[j], indptr[j + 1]):
                scratch[indices[p]] = 0.0
        # Gram row/column k from the new a_k
        for p in range(indptr[k], indptr[k + 1]):
            scratch[indices[p]] = data[p]
        for q in range(ov_ptr[k], ov_ptr[k + 1]):
            j = ov_idx[q]
            acc = 0.0
            for p in range(indptr[j], indptr[j + 1]):
                acc += data[p] * scratch[indices[p]]
            G[k, j] = acc
            G[j, k] = acc
        for p in range(indptr[k], indptr[k + 1]):
            scratch[indices[p]] = 0.0
        n_updated += 1
    return n_updated


def refine_footprints_reference(
    csr: sp.csr_matrix, w_data: np.ndarray, M: np.ndarray, order, min_mkk: float
) -> tuple[np.ndarray, np.ndarray]:
    """Dense, plain HALS with the same order and rules. Returns (new data, new G)."""
    K, P = csr.shape
    A = csr.toarray().astype(np.float64)
    support = np.zeros((K, P), bool)
    rows = np.repeat(np.arange(K), np.diff(csr.indptr))
    support[rows, csr.indices] = True
    W = np.zeros((K, P))
    W[rows, csr.indices] = w_data
    for k in order:
        if M[k, k] < min_mkk:
            continue
        new = A[k] + (W[k] - M[:, k] @ A) / M[k, k]
        A[k] = np.where(support[k], np.maximum(new, 0.0), 0.0)
    return A[rows, csr.indices], A @ A.T
