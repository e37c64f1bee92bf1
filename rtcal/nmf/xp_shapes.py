"""Sufficient statistics and one block of footprint HALS, for any array module.

The maths of :mod:`rtcal.nmf.shapes` (OnACID, Giovannucci et al. 2017):

    W <- beta W + y c^T   (on the support pattern),   M <- beta M + c c^T,
    a_k <- max(0, a_k + (W_k - A^T M_k) / M_kk)        on the support of a_k,

then row and column k of G = A A^T (and of its footprint x background block)
from the new a_k. Components are refined one after another (a block of
``refine_per_frame`` per frame, round robin), each one vectorised over its
support: (A^T M_k)(s) for the pixels s of a_k is a segment sum over the
shared-pixel pairs of :mod:`rtcal.nmf.xp_footprints`, and so is the Gram row.
The arithmetic (float32 products, float64 sums and the M_kk < min_mkk skip)
follows the Numba kernels, so the results agree with them to rounding.
"""

from __future__ import annotations

from rtcal.backend import array_module, segment_sum
from rtcal.nmf.xp_footprints import DeviceFootprints


def update_stats(fp: DeviceFootprints, w, M, y, c, beta: float) -> None:
    """In place: w (float64 (nnz,)) <- beta w + y[pixel] c[component];
    M (float64 (K, K)) <- beta M + c c^T. y float32 (P,), c float32 (K,)."""
    if beta != 1.0:
        w *= beta
        M *= beta
    w += y[fp.indices] * c[fp.rows]  # float32 products, float64 sums (as update_stats)
    M += c[:, None] * c[None, :]


def refine_block(fp: DeviceFootprints, w, M, G, B64, order, min_mkk: float) -> None:
    """One HALS pass over the components ``order`` (host ints), in place on
    fp.data, fp.at_data and G (float64 (K + nb, K + nb)); B64: float64 (nb, P) background
    basis. Components with M_kk < min_mkk keep their footprint and Gram row;
    negative entries of ``order`` are skipped."""
    xp = array_module(w)
    K = fp.n_components
    data, at_data = fp.data, fp.at_data
    for k in order:
        k = int(k)
        if k < 0:  # an empty slot of a fixed-size block
            continue
        lo, hi = int(fp.indptr_host[k]), int(fp.indptr_host[k + 1])
        p0, p1 = int(fp.pair_ptr_host[lo]), int(fp.pair_ptr_host[hi])
        t, comp = fp.pair_t[p0:p1], fp.pair_comp[p0:p1]
        q = fp.pair_q[p0:p1] - lo
        mkk = M[k, k]
        ok = mkk >= min_mkk  # a 0-d array: no host round trip
        z = segment_sum(q, M[comp, k] * at_data[t], hi - lo)  # (A^T M_k) on k's support
        old = data[lo:hi]
        new = xp.maximum(old + (w[lo:hi] - z) / xp.where(ok, mkk, 1.0), 0.0)
        data[lo:hi] = xp.where(ok, new, old)
        at_data[fp.t_of_a[lo:hi]] = data[lo:hi]
        row = segment_sum(comp, data[lo:hi][q].astype(xp.float64) * at_data[t], K)
        row = xp.where(ok, row, G[k, :K])
        G[k, :K] = row
        G[:K, k] = row
        ab = (B64[:, fp.indices[lo:hi]] * data[lo:hi]).sum(axis=1)
        G[k, K:] = ab
        G[K:, k] = ab
