"""The footprint set A on a backend: CSR, its transpose, and the shared-pixel pairs.

A (K, P) stays sparse on the device, never densified: the backend's CSR matrix
(scipy.sparse on "cpu", cupyx.scipy.sparse on "cuda"), whose ``data`` the
footprint refinement updates in place, and A^T (P, K) as a second CSR matrix
whose data mirror A's (``at_data[t_of_a[q]] = data[q]``) for the residual
A^T c. Footprint HALS (:mod:`rtcal.nmf.xp_shapes`) needs, for every stored
entry q of A at pixel s, the entries of all footprints at s: those are A^T's
row s, listed once as *pairs* (q, t) in CSR form (pair_ptr over q). With
supports a few cells wide, there are 1-3 pairs per entry.

Everything here is built on the host from the host FootprintSet's CSR and
uploaded; it changes only when components are added.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp

from rtcal.backend import Backend
from rtcal.nmf.shapes import overlap_lists


@dataclass
class DeviceFootprints:
    """A (K, P) on a backend. Device arrays unless named ``*_host``.

    csr: A, backend CSR float32, its ``data`` is :attr:`data`; csr_t: A^T (P, K),
    its ``data`` is :attr:`at_data`; indptr, indices, at_indptr, at_indices: int64
    copies of the structures of A and A^T (for the fused kernels); rows: int64
    (nnz,) component of each entry; t_of_a: int64 (nnz,) position in A^T of each
    entry of A; pair_ptr: int64 (nnz + 1,); pair_t, pair_comp, pair_q: int64
    (n_pairs,) A^T position, its component, and the entry q of each pair; ov_ptr,
    ov_idx: overlap lists (:func:`rtcal.nmf.shapes.overlap_lists`); ``*_host``:
    NumPy copies, to slice one component's entries without a device round trip.
    """

    csr: object
    csr_t: object
    indptr: object
    indices: object
    at_indptr: object
    at_indices: object
    rows: object
    t_of_a: object
    pair_ptr: object
    pair_t: object
    pair_comp: object
    pair_q: object
    ov_ptr: object
    ov_idx: object
    indptr_host: np.ndarray
    pair_ptr_host: np.ndarray
    ov_ptr_host: np.ndarray
    ov_idx_host: np.ndarray
    shape: tuple[int, int]

    @property
    def data(self):
        return self.csr.data

    @property
    def at_data(self):
        return self.csr_t.data

    @property
    def n_components(self) -> int:
        return self.shape[0]

    @property
    def max_row_nnz(self) -> int:
        return int(np.diff(self.indptr_host).max(initial=0))


def transpose_map(csr: sp.csr_matrix) -> tuple[sp.csr_matrix, np.ndarray]:
    """(A^T as CSR (P, K), t_of_a int64 (nnz,)): A^T.data[t_of_a[q]] == A.data[q].

    Entries of one pixel are ordered by component, as scipy's tocsr would order them.
    """
    K, P = csr.shape
    rows = np.repeat(np.arange(K, dtype=np.int64), np.diff(csr.indptr))
    order = np.argsort(csr.indices, kind="stable")  # by pixel, then by component
    t_of_a = np.empty(csr.nnz, np.int64)
    t_of_a[order] = np.arange(csr.nnz)
    counts = np.bincount(csr.indices, minlength=P)
    indptr = np.r_[0, np.cumsum(counts)].astype(np.int64)
    at = sp.csr_matrix(
        (csr.data[order].astype(np.float32), rows[order].astype(np.int32), indptr), shape=(P, K)
    )
    return at, t_of_a


def shared_pixel_pairs(
    csr: sp.csr_matrix, at: sp.csr_matrix
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(pair_ptr (nnz + 1,), pair_t, pair_q): for entry q of A, the A^T positions at its pixel."""
    counts = np.diff(at.indptr)[csr.indices]  # entries at the pixel of each q
    pair_ptr = np.r_[0, np.cumsum(counts)].astype(np.int64)
    pair_q = np.repeat(np.arange(csr.nnz, dtype=np.int64), counts)
    # position within the run of q's pairs, added to the start of q's pixel in A^T
    within = np.arange(pair_ptr[-1], dtype=np.int64) - pair_ptr[pair_q]
    pair_t = at.indptr[csr.indices].astype(np.int64)[pair_q] + within
    return pair_ptr, pair_t, pair_q


def device_footprints(csr: sp.csr_matrix, backend: Backend) -> DeviceFootprints:
    """Upload a host CSR footprint set (float32, sorted indices) to ``backend``."""
    csr = csr.astype(np.float32)
    K, P = csr.shape
    at, t_of_a = transpose_map(csr)
    pair_ptr, pair_t, pair_q = shared_pixel_pairs(csr, at)
    ov_ptr, ov_idx = overlap_lists(csr)
    up = backend.asarray
    indptr = csr.indptr.astype(np.int64)
    rows = np.repeat(np.arange(K, dtype=np.int64), np.diff(indptr))
    # Own copies of data: the host FootprintSet keeps its own until it is synced.
    a = sp.csr_matrix((csr.data.copy(), csr.indices, csr.indptr), shape=(K, P))
    return DeviceFootprints(
        csr=backend.csr(a),
        csr_t=backend.csr(at),
        indptr=up(indptr),
        indices=up(csr.indices.astype(np.int64)),
        at_indptr=up(at.indptr.astype(np.int64)),
        at_indices=up(at.indices.astype(np.int64)),
        rows=up(rows),
        t_of_a=up(t_of_a),
        pair_ptr=up(pair_ptr),
        pair_t=up(pair_t),
        pair_comp=up(at.indices.astype(np.int64)[pair_t]),
        pair_q=up(pair_q),
        ov_ptr=up(ov_ptr),
        ov_idx=up(ov_idx),
        indptr_host=indptr,
        pair_ptr_host=pair_ptr,
        ov_ptr_host=ov_ptr,
        ov_idx_host=ov_idx,
        shape=(K, P),
    )
