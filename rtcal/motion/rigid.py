"""Rigid sub-pixel registration of a frame to a template.

Shift estimation is FFT cross-correlation of band-passed images
(:mod:`rtcal.motion.bandpass`: cell-scale structure of the images' periodic
parts, so that neither slow illumination nor pixel noise nor the frame edge
pulls the peak): the integer peak is found within +-max_shift_px on the inverse
FFT of the cross-power spectrum P = F conj(T), then refined by the upsampled-DFT
method of Guizar-Sicairos, Thurman & Fienup (2008), Opt. Lett. 33:156 (see
:mod:`rtcal.motion.upsampled_dft`), which has no pull towards whole pixels.
Applying the shift is bilinear interpolation (Numba), with edges replicated.

Sign convention (shared with the simulator's truth): a frame whose content is
displaced by (dy, dx) relative to the template has shift (dy, dx), and
``apply_shift(frame, -dy, -dx)`` registers it.
"""

from __future__ import annotations

import numba
import numpy as np
import scipy.fft
from scipy import ndimage

from rtcal.motion.bandpass import band_pass_spectrum, spectrum_power
from rtcal.motion.upsampled_dft import refine_peak

__all__ = [
    "apply_shift",
    "apply_shift_reference",
    "band_pass_spectrum",
    "estimate_shift",
    "shift_from_product",
]


def shift_from_product(
    product: np.ndarray, shape: tuple[int, int], max_shift_px: float, upsample: int
) -> tuple[float, float, float]:
    """Peak (dy, dx) px of c = irfft2(product) within +-max_shift_px, and c there.

    product: complex (H, W//2+1) cross-power spectrum F conj(T); shape (H, W).
    The integer peak is refined to 1 / upsample px and then by a parabola
    (upsample=1: integer only). The peak value is unnormalised.
    """
    H, W = shape
    xc = scipy.fft.irfft2(product, s=shape, workers=1)
    m = int(min(np.floor(max_shift_px), (H - 1) // 2, (W - 1) // 2))
    # Candidate lags -m..m on each axis, as indices into the circular correlation.
    rows = np.arange(-m, m + 1) % H
    cols = np.arange(-m, m + 1) % W
    local = xc[np.ix_(rows, cols)]
    iy, ix = np.unravel_index(int(np.argmax(local)), local.shape)
    dy, dx, peak = float(iy - m), float(ix - m), float(local[iy, ix])
    if upsample > 1:
        ry, rx, rpeak = refine_peak(product[None], W, np.array([dy]), np.array([dx]), upsample)
        dy = float(np.clip(ry[0], -max_shift_px, max_shift_px))
        dx = float(np.clip(rx[0], -max_shift_px, max_shift_px))
        peak = max(peak, float(rpeak[0]))
    return dy, dx, peak


def normalised_score(peak: float, shape: tuple[int, int], power_f: float, power_t: float) -> float:
    """Normalised cross-correlation c / sqrt(sum f^2 sum t^2) from the spectra's powers.

    By Parseval sum f^2 = power_f / (H W), so the score is c H W / sqrt(power_f power_t);
    1 for a perfect match, about 0 for unrelated images, 0 if either is blank.
    """
    energy = np.sqrt(power_f * power_t)
    return float(peak * shape[0] * shape[1] / energy) if energy > 0 else 0.0


def estimate_shift(
    frame_spectrum: np.ndarray,
    template_spectrum: np.ndarray,
    shape: tuple[int, int],
    max_shift_px: float,
    upsample: int = 4,
) -> tuple[float, float, float]:
    """Shift (dy, dx) of the frame's content relative to the template, and the peak score.

    Spectra from :func:`band_pass_spectrum`, complex (H, W // 2 + 1); shape (H, W).
    The score is the normalised cross-correlation at the peak: a low score means
    the shift is not to be trusted.
    """
    W = shape[1]
    product = frame_spectrum * np.conj(template_spectrum)
    dy, dx, peak = shift_from_product(product, shape, max_shift_px, upsample)
    score = normalised_score(
        peak, shape, spectrum_power(frame_spectrum, W), spectrum_power(template_spectrum, W)
    )
    return dy, dx, score


def apply_shift_reference(frame: np.ndarray, dy: float, dx: float) -> np.ndarray:
    """Bilinear shift by (dy, dx) with replicated edges (scipy reference). -> float32.

    out[y, x] = frame(y - dy, x - dx), sampled bilinearly, coordinates clamped to the frame.
    """
    out = ndimage.shift(frame.astype(np.float64), (dy, dx), order=1, mode="nearest")
    return out.astype(np.float32)


@numba.njit(cache=True)
def source_taps(n, shift):  # pragma: no cover - compiled
    """Per output index i, the clamped source s = i - shift as bilinear taps (i0, i1, w1)."""
    i0 = np.empty(n, np.int64)
    i1 = np.empty(n, np.int64)
    w1 = np.empty(n, np.float32)
    for i in range(n):
        s = min(max(i - shift, 0.0), n - 1.0)
        j = int(np.floor(s))
        i0[i] = j
        i1[i] = min(j + 1, n - 1)
        w1[i] = s - j
    return i0, i1, w1


@numba.njit(cache=True, fastmath=True)
def _bilinear_shift(frame, dy, dx, out):  # pragma: no cover - compiled
    H, W = frame.shape
    one = np.float32(1.0)
    y0, y1, wy = source_taps(H, dy)
    x0, x1, wx = source_taps(W, dx)
    # Away from the edges, output column x reads source columns x - k and x - k + 1
    # with one weight a: written over slices indexed from 0, so that Numba drops its
    # negative-index checks and LLVM vectorises. The edge columns take the clamped taps.
    k = int(np.ceil(dx))
    a = np.float32(np.ceil(dx) - dx)
    lo = min(max(k, 0), W)
    hi = max(min(W - 1 + k, W), lo)
    n = hi - lo
    for y in range(H):
        b = wy[y]
        r0 = frame[y0[y]]
        r1 = frame[y1[y]]
        s0 = r0[lo - k : hi - k + 1]
        s1 = r1[lo - k : hi - k + 1]
        o = out[y, lo:hi]
        for j in range(n):
            top = np.float32(s0[j]) * (one - a) + np.float32(s0[j + 1]) * a
            bottom = np.float32(s1[j]) * (one - a) + np.float32(s1[j + 1]) * a
            o[j] = top * (one - b) + bottom * b
        for e in range(lo + W - hi):  # the edge columns only: 0 .. lo-1, hi .. W-1
            x = e if e < lo else hi + e - lo
            top = np.float32(r0[x0[x]]) * (one - wx[x]) + np.float32(r0[x1[x]]) * wx[x]
            bottom = np.float32(r1[x0[x]]) * (one - wx[x]) + np.float32(r1[x1[x]]) * wx[x]
            out[y, x] = top * (one - b) + bottom * b
    return out


def apply_shift(
    frame: np.ndarray, dy: float, dx: float, out: np.ndarray | None = None
) -> np.ndarray:
    """Numba bilinear shift; same result as :func:`apply_shift_reference`.

    frame: (H, W) float32 or an integer dtype (read as is, no copy) -> float32 (H, W).
    """
    if out is None:
        out = np.empty(frame.shape, np.float32)
    if frame.dtype.kind not in "ui" and frame.dtype != np.float32:
        frame = frame.astype(np.float32)
    return _bilinear_shift(np.ascontiguousarray(frame), float(dy), float(dx), out)
