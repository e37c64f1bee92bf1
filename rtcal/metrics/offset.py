"""Global sub-pixel offset between the results' template frame and the truth frame.

The engine registers every frame to a running template, which may sit a few
pixels away from the frame the simulator drew its truth in. Before matching we
estimate one global displacement d = (dy, dx) with

    est(y, x) ~ truth(y - dy, x - dx),

bounded to |dy|, |dx| <= max_px, and move the estimates back by -d.

Method, in two steps:

1. Coarse: the footprint image F = sum_k A_k / max(A_k) is formed for both
   sides; their linear cross-correlation c(s) = sum_x F_true(x) F_est(x + s)
   (zero-padded FFT, so no wrap-around) peaks at s = d. The integer peak inside
   the bound is refined on a 1/upsample px grid within +-1 px by evaluating the
   band-limited interpolant of c directly from its spectrum (the matrix-multiply
   DFT of Guizar-Sicairos et al. 2008, Opt. Lett. 33:156). If the correlation's
   maximum lies outside the bound, the offset is clamped to the bound and flagged.
2. Fine: cells that are each other's nearest neighbour after the coarse shift
   (within 1.5 px) vote with their centroid displacement; the per-axis median is
   added. Unlike the correlation, the median is not pulled by missed cells or
   false positives that happen to overlap other cells.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.fft
import scipy.sparse as sp
from scipy.spatial import cKDTree

from rtcal.metrics.matching import binarise


@dataclass(frozen=True)
class Offset:
    """dy, dx: px, displacement of the estimates relative to the truth frame
    clamped: True if the offset would lie beyond max_px and was clamped
    max_px: the bound used
    n_pairs: cell pairs whose centroid displacements refined the offset (0: the
        correlation peak alone)
    """

    dy: float
    dx: float
    clamped: bool
    max_px: float
    n_pairs: int


def footprint_image(footprints: sp.csr_array, height: int, width: int) -> np.ndarray:
    """F = sum_k max(A_k, 0) / max_p A_k[p]: float64 (height, width).

    footprints: csr_array (K, height*width). Zero footprints are skipped.
    """
    a = sp.csr_array(footprints, dtype=np.float64)
    a.data = np.maximum(a.data, 0.0)
    peak = a.max(axis=1).toarray().ravel()
    scale = np.divide(1.0, peak, out=np.zeros_like(peak), where=peak > 0)
    image = sp.diags_array(scale) @ a
    return np.asarray(image.sum(axis=0)).reshape(height, width)


def _cross_spectrum(true_img: np.ndarray, est_img: np.ndarray, pad: int) -> np.ndarray:
    """X = conj(FFT F_true) * FFT F_est on a zero-padded grid: complex128 (Ny, Nx)."""
    shape = tuple(scipy.fft.next_fast_len(n + pad) for n in true_img.shape)
    return np.conj(scipy.fft.fft2(true_img, shape)) * scipy.fft.fft2(est_img, shape)


def _correlation_at(spectrum: np.ndarray, lag_y: np.ndarray, lag_x: np.ndarray) -> np.ndarray:
    """c(sy, sx) for every sy in lag_y and sx in lag_x, from the cross spectrum.

    c(s) = Re sum_k X[k] exp(2 pi i k.s / N) / (Ny Nx): float64 (len(lag_y), len(lag_x)).
    """
    ny, nx = spectrum.shape
    ky, kx = scipy.fft.fftfreq(ny), scipy.fft.fftfreq(nx)
    ey = np.exp(2j * np.pi * np.outer(lag_y, ky))  # (n_y, Ny)
    ex = np.exp(2j * np.pi * np.outer(kx, lag_x))  # (Nx, n_x)
    return (ey @ spectrum @ ex).real / (ny * nx)


def _argmax2(values: np.ndarray, lag_y: np.ndarray, lag_x: np.ndarray) -> tuple[float, float]:
    iy, ix = np.unravel_index(int(np.argmax(values)), values.shape)
    return float(lag_y[iy]), float(lag_x[ix])


def correlation_offset(
    true_img: np.ndarray, est_img: np.ndarray, max_px: float = 3.0, upsample: int = 20
) -> Offset:
    """Global displacement (dy, dx) of est_img relative to true_img, |d| <= max_px per axis.

    true_img, est_img: float (H, W) footprint images. Precision 1/upsample px on
    the correlation peak. Returns Offset(0, 0) when either image is empty.
    """
    if not (np.any(true_img) and np.any(est_img)):
        return Offset(0.0, 0.0, clamped=False, max_px=max_px, n_pairs=0)
    reach = int(np.ceil(max_px)) + 3
    spectrum = _cross_spectrum(true_img, est_img, pad=2 * reach + 2)
    lags = np.arange(-reach, reach + 1, dtype=np.float64)
    coarse = _correlation_at(spectrum, lags, lags)
    wide_peak = _argmax2(coarse, lags, lags)
    inside = np.abs(lags) <= max_px
    py, px = _argmax2(coarse[np.ix_(inside, inside)], lags[inside], lags[inside])
    step = np.arange(-upsample, upsample + 1) / upsample
    fine_y, fine_x = py + step, px + step
    fine = _correlation_at(spectrum, fine_y, fine_x)
    fine_peak = _argmax2(fine, fine_y, fine_x)
    ok_y, ok_x = np.abs(fine_y) <= max_px, np.abs(fine_x) <= max_px
    dy, dx = _argmax2(fine[np.ix_(ok_y, ok_x)], fine_y[ok_y], fine_x[ok_x])
    clamped = max(abs(v) for v in (*wide_peak, *fine_peak)) > max_px
    return Offset(dy, dx, clamped=bool(clamped), max_px=max_px, n_pairs=0)


def footprint_centroids(footprints: sp.csr_array, width: int) -> np.ndarray:
    """Centre of mass (row, col) of each footprint over its binarised support.

    Weights are A_k[p] where A_k[p] >= 0.2 max A_k (the pixels its mask keeps),
    so faint far-away tails cannot pull the centroid. float64 (K, 2); NaN if empty.
    """
    a = sp.csr_array(footprints, dtype=np.float64)
    weights = sp.csr_array(a * binarise(a))
    total = np.asarray(weights.sum(axis=1)).ravel()
    rows = np.arange(weights.shape[1]) // width
    cols = np.arange(weights.shape[1]) % width
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.column_stack([weights @ rows / total, weights @ cols / total])


def refine_with_centroids(
    coarse: Offset,
    true_centroids: np.ndarray,
    est_centroids: np.ndarray,
    pair_radius_px: float = 1.5,
    min_pairs: int = 3,
) -> Offset:
    """Refine an offset with the median displacement of clearly paired cells.

    After moving the estimated centroids back by the coarse offset, an estimate
    and a true cell pair up when each is the other's nearest neighbour and they
    lie within pair_radius_px. d = coarse + median over pairs of
    (c_est - coarse - c_true), per axis; the median ignores missed cells, false
    positives and mis-shaped estimates that bias a global correlation. Fewer
    than min_pairs pairs: the coarse offset is returned unchanged.
    """
    t = true_centroids[np.all(np.isfinite(true_centroids), axis=1)]
    e = est_centroids[np.all(np.isfinite(est_centroids), axis=1)]
    e = e - (coarse.dy, coarse.dx)
    if len(t) == 0 or len(e) == 0:
        return coarse
    dist_e, nearest_t = cKDTree(t).query(e)
    _, nearest_e = cKDTree(e).query(t)
    mutual = (nearest_e[nearest_t] == np.arange(len(e))) & (dist_e <= pair_radius_px)
    if np.count_nonzero(mutual) < min_pairs:
        return coarse
    resid = np.median(e[mutual] - t[nearest_t[mutual]], axis=0)
    dy, dx = coarse.dy + resid[0], coarse.dx + resid[1]
    bound = coarse.max_px
    clamped = coarse.clamped or abs(dy) > bound or abs(dx) > bound
    return Offset(float(np.clip(dy, -bound, bound)), float(np.clip(dx, -bound, bound)),
                  clamped=bool(clamped), max_px=bound, n_pairs=int(np.count_nonzero(mutual)))


def estimate_offset(
    true_footprints: sp.csr_array,
    est_footprints: sp.csr_array,
    height: int,
    width: int,
    max_px: float = 3.0,
) -> Offset:
    """Global displacement (dy, dx) of the estimates relative to the truth.

    footprints: csr_array (K, height*width). Correlation peak of the footprint
    images (bounded, sub-pixel), then the median centroid displacement of
    mutually nearest cell pairs.
    """
    coarse = correlation_offset(
        footprint_image(true_footprints, height, width),
        footprint_image(est_footprints, height, width),
        max_px=max_px,
    )
    return refine_with_centroids(
        coarse,
        footprint_centroids(true_footprints, width),
        footprint_centroids(est_footprints, width),
    )


def shift_footprints(
    footprints: sp.csr_array, height: int, width: int, dy: float, dx: float
) -> sp.csr_array:
    """Move every footprint by (dy, dx) px with bilinear interpolation.

    out(y, x) = A(y - dy, x - dx), A taken as 0 outside the frame (as
    ``scipy.ndimage.shift(A, (dy, dx), order=1, mode="grid-constant")``). Each
    stored pixel spreads over the four pixels around its new position, so the
    cost is 4 x nnz whatever the frame size.
    footprints: csr_array (K, height*width) -> csr_array float32 (K, height*width)
    """
    a = sp.coo_array(footprints)
    r, c = a.coords[1] // width, a.coords[1] % width
    iy, ix = int(np.floor(dy)), int(np.floor(dx))
    fy, fx = dy - iy, dx - ix
    parts_k, parts_p, parts_v = [], [], []
    for oy, wy in ((iy, 1.0 - fy), (iy + 1, fy)):
        for ox, wx in ((ix, 1.0 - fx), (ix + 1, fx)):
            rr, cc = r + oy, c + ox
            keep = (rr >= 0) & (rr < height) & (cc >= 0) & (cc < width) & (wy * wx > 0)
            parts_k.append(a.coords[0][keep])
            parts_p.append(rr[keep] * width + cc[keep])
            parts_v.append(a.data[keep] * (wy * wx))
    out = sp.coo_array(
        (np.concatenate(parts_v), (np.concatenate(parts_k), np.concatenate(parts_p))),
        shape=a.shape,
    )
    return sp.csr_array(out.tocsr(), dtype=np.float32)
