"""The low-rank (2p) background term B^T f of Y = A C + B^T f + noise, for any array module.

The same operations as the Numba kernels of :mod:`rtcal.nmf.background`:
projection of a frame on the smooth cosine basis (its part of the HALS right-hand
side) and subtraction of the fitted combination (for the residual). Written as
elementwise products and reductions, not matrix products, so that on a GPU they
are plain CuPy kernels (cuBLAS cannot be captured in a CUDA graph by CuPy).
"""

from __future__ import annotations

from rtcal.backend import array_module


def project_basis(B, y):
    """B y for B float32 (nb, P), y float32 (P,) -> float64 (nb,) (float32 products,
    float64 sums, as :func:`rtcal.nmf.background.project`)."""
    xp = array_module(B, y)
    return (B * y[None, :]).sum(axis=1, dtype=xp.float64)


def subtract_basis(y, B, f):
    """y - B^T f for y float32 (P,), B float32 (nb, P), f float32 (nb,) -> float32 (P,)."""
    return y - (B * f[:, None]).sum(axis=0)
