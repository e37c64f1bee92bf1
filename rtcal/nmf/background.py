"""Spatial bases for the background term b f of Y = A C + b f + noise.

The 2p neuropil and slow illumination changes are spatially smooth, so a few
low-frequency 2-D cosine (DCT-II) functions span them well. Their temporal
weights f are solved each frame together with the traces, unconstrained in sign.
"""

from __future__ import annotations

import numba
import numpy as np


def cosine_basis(height: int, width: int, n_per_axis: int) -> np.ndarray:
    """Low-frequency 2-D cosine basis, float32 (n_per_axis**2, height * width), rows unit norm.

    Row i * n + j is cos(pi i (y + 1/2) / H) cos(pi j (x + 1/2) / W); row 0 is constant.
    """
    if n_per_axis < 1:
        raise ValueError(f"n_per_axis must be >= 1, got {n_per_axis}")
    ys = np.cos(np.pi * np.outer(np.arange(n_per_axis), np.arange(height) + 0.5) / height)
    xs = np.cos(np.pi * np.outer(np.arange(n_per_axis), np.arange(width) + 0.5) / width)
    basis = np.einsum("iy,jx->ijyx", ys, xs).reshape(n_per_axis**2, height * width)
    basis /= np.linalg.norm(basis, axis=1, keepdims=True)
    return basis.astype(np.float32)


# Reassociation lets LLVM vectorise the float64 sums (the projection of a
# 256 x 256 frame on 9 bases took 0.6 ms without it, 0.06 ms with it, before the
# separable form below). No "nnan"/"ninf": a NaN still propagates.
SUM_FASTMATH = {"reassoc", "contract", "nsz", "arcp"}


# ------------------------------------------------------- separable fast path
# Every row of the cosine basis is an outer product u_i(y) v_j(x). B (n^2, P)
# float32 is 2.4 MB at 256 x 256 and 9.4 MB at 512 x 512: projecting a frame on
# it and subtracting b f each streamed all of it from memory (~75 us each at
# 256 x 256, past the 2 MB L2). Through its factors U (n, H), V (n, W) both cost
# n multiply-adds per pixel with nothing but the frame in memory, and each is
# fused with its neighbour in the frame loop (centring; the footprints' part of
# the residual).


def cosine_factors(height: int, width: int, n_per_axis: int) -> tuple[np.ndarray, np.ndarray]:
    """U float32 (n, height) and V float32 (n, width), rows unit norm, such that
    row i * n + j of ``cosine_basis(height, width, n)`` is outer(U[i], V[j]) flattened."""
    if n_per_axis < 1:
        raise ValueError(f"n_per_axis must be >= 1, got {n_per_axis}")
    factors = []
    for size in (height, width):
        f = np.cos(np.pi * np.outer(np.arange(n_per_axis), np.arange(size) + 0.5) / size)
        factors.append((f / np.linalg.norm(f, axis=1, keepdims=True)).astype(np.float32))
    return factors[0], factors[1]


@numba.njit(cache=True, fastmath=SUM_FASTMATH)
def centre_and_project(frame, baseline, U, V, y, out):  # pragma: no cover - compiled
    """y = frame - baseline and out = B y for B = the separable basis of factors U
    (n, H), V (n, W), in one pass. frame (H, W) any real dtype, baseline float32
    (H, W), y float32 (H, W) written, out (n * n,) float64: out[i n + j] =
    sum_yx U[i, y] y[y, x] V[j, x]. float64 accumulation."""
    n = U.shape[0]
    H, W = frame.shape
    for k in range(n * n):
        out[k] = 0.0
    for r in range(H):
        for x in range(W):
            y[r, x] = np.float32(frame[r, x]) - baseline[r, x]
        for j in range(n):  # one row's projection on V[j]: a vectorised float64 sum
            acc = 0.0
            for x in range(W):
                acc += y[r, x] * V[j, x]
            for i in range(n):
                out[i * n + j] += U[i, r] * acc
    return out


def centre_and_project_reference(frame, baseline, B):
    """Plain version of :func:`centre_and_project` on the full basis B (n^2, P):
    -> (y float32 (H, W), B y float64 (n^2,))."""
    y = (np.asarray(frame, np.float32) - baseline).astype(np.float32)
    return y, B.astype(np.float64) @ y.reshape(-1).astype(np.float64)


@numba.njit(cache=True)
def model_residual(y, U, V, f, indptr, indices, data, c, out):  # pragma: no cover - compiled
    """out = y - B^T f - A^T c in one pass over the frame: B the separable basis of
    factors U (n, H), V (n, W) with weights f (n * n,) (row i n + j: U[i] x V[j]),
    A a CSR (K, H*W) float32 (indptr, indices, data) with traces c (K,). y, out
    float32 (H, W) (out may be a view to write in place, e.g. a ring slot)."""
    n = U.shape[0]
    H, W = y.shape
    g = np.zeros((n, W), np.float32)  # g[i] = sum_j f[i n + j] V[j]
    for i in range(n):
        for j in range(n):
            fij = np.float32(f[i * n + j])
            for x in range(W):
                g[i, x] += fij * V[j, x]
    for r in range(H):
        for x in range(W):
            out[r, x] = y[r, x]
        for i in range(n):
            u = U[i, r]
            for x in range(W):
                out[r, x] -= u * g[i, x]
    flat = out.reshape(H * W)
    for k in range(indptr.shape[0] - 1):
        ck = np.float32(c[k])
        if ck == 0:
            continue
        for q in range(indptr[k], indptr[k + 1]):
            flat[indices[q]] -= data[q] * ck
    return out


def model_residual_reference(y, B, f, A, c):
    """Plain version of :func:`model_residual` on the full basis B (n^2, P) and a
    scipy CSR A: -> float32 (H, W)."""
    flat = y.reshape(-1).astype(np.float64) - B.T.astype(np.float64) @ f - A.T @ c
    return flat.reshape(y.shape).astype(np.float32)
