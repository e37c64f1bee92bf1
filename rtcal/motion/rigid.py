"""Rigid sub-pixel registration of a frame to a template.

Shift estimation is FFT cross-correlation of band-passed images (cell-scale
structure only, so that slow illumination changes and pixel noise do not pull
the peak), searched within +-max_shift_px, refined to sub-pixel precision by a
Gaussian (log-parabola) fit through the peak and its neighbours on each axis.
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


def band_pass_spectrum(image: np.ndarray, sigma_lo: float, sigma_hi: float) -> np.ndarray:
    """rfft2 of a mean-subtracted image multiplied by a DoG(sigma_lo, sigma_hi) transfer.

    image: (H, W) -> complex64 (H, W // 2 + 1).
    """
    H, W = image.shape
    fy = scipy.fft.fftfreq(H)[:, None]
    fx = scipy.fft.rfftfreq(W)[None, :]
    r2 = fy**2 + fx**2
    transfer = np.exp(-2 * (np.pi * sigma_lo) ** 2 * r2) - np.exp(-2 * (np.pi * sigma_hi) ** 2 * r2)
    img = image.astype(np.float32) - np.float32(image.mean())
    return (scipy.fft.rfft2(img, workers=1) * transfer).astype(np.complex64)


def _subpixel(left: float, centre: float, right: float) -> float:
    """Offset in (-0.5, 0.5) of a peak from three samples: Gaussian fit, parabola fallback."""
    if left > 0 and centre > 0 and right > 0:
        ll, lc, lr = np.log(left), np.log(centre), np.log(right)
        denom = ll - 2 * lc + lr
        if denom < 0:
            return float(np.clip(0.5 * (ll - lr) / denom, -0.5, 0.5))
    denom = left - 2 * centre + right
    if denom < 0:
        return float(np.clip(0.5 * (left - right) / denom, -0.5, 0.5))
    return 0.0


def estimate_shift(
    frame_spectrum: np.ndarray,
    template_spectrum: np.ndarray,
    shape: tuple[int, int],
    max_shift_px: float,
) -> tuple[float, float, float]:
    """Shift (dy, dx) of the frame's content relative to the template, and the peak score.

    Spectra from :func:`band_pass_spectrum`. The score is the normalised
    cross-correlation at the peak (1 for a perfect match, ~0 for unrelated
    images): a low score means the shift is not to be trusted.
    """
    H, W = shape
    xc = scipy.fft.irfft2(frame_spectrum * np.conj(template_spectrum), s=shape, workers=1)
    m = int(np.floor(max_shift_px))
    # Candidate lags -m..m on each axis, as indices into the circular correlation.
    rows = np.arange(-m, m + 1) % H
    cols = np.arange(-m, m + 1) % W
    local = xc[np.ix_(rows, cols)]
    iy, ix = np.unravel_index(int(np.argmax(local)), local.shape)
    peak = local[iy, ix]

    def at(dy: int, dx: int) -> float:
        return float(xc[(iy - m + dy) % H, (ix - m + dx) % W])

    dy = iy - m + _subpixel(at(-1, 0), peak, at(1, 0))
    dx = ix - m + _subpixel(at(0, -1), peak, at(0, 1))
    energy = np.sqrt(_power(frame_spectrum, W) * _power(template_spectrum, W))
    score = float(peak * H * W / energy) if energy > 0 else 0.0
    return float(dy), float(dx), score


def _power(spectrum: np.ndarray, width: int) -> float:
    """sum |x|^2 over the full 2-D spectrum, from its rfft half (Parseval)."""
    p = np.abs(spectrum) ** 2
    total = 2 * p.sum() - p[:, 0].sum()
    if width % 2 == 0:
        total -= p[:, -1].sum()
    return float(total)


def apply_shift_reference(frame: np.ndarray, dy: float, dx: float) -> np.ndarray:
    """Bilinear shift by (dy, dx) with replicated edges (scipy reference). -> float32."""
    out = ndimage.shift(frame.astype(np.float64), (dy, dx), order=1, mode="nearest")
    return out.astype(np.float32)


@numba.njit(cache=True)
def _bilinear_shift(frame, dy, dx, out):  # pragma: no cover - compiled
    H, W = frame.shape
    for y in range(H):
        sy = y - dy
        if sy < 0.0:
            sy = 0.0
        elif sy > H - 1:
            sy = H - 1.0
        y0 = int(np.floor(sy))
        y1 = min(y0 + 1, H - 1)
        wy = sy - y0
        for x in range(W):
            sx = x - dx
            if sx < 0.0:
                sx = 0.0
            elif sx > W - 1:
                sx = W - 1.0
            x0 = int(np.floor(sx))
            x1 = min(x0 + 1, W - 1)
            wx = sx - x0
            top = frame[y0, x0] * (1 - wx) + frame[y0, x1] * wx
            bottom = frame[y1, x0] * (1 - wx) + frame[y1, x1] * wx
            out[y, x] = top * (1 - wy) + bottom * wy
    return out


def apply_shift(
    frame: np.ndarray, dy: float, dx: float, out: np.ndarray | None = None
) -> np.ndarray:
    """Numba bilinear shift; same result as :func:`apply_shift_reference`. -> float32 (H, W)."""
    if out is None:
        out = np.empty(frame.shape, np.float32)
    return _bilinear_shift(np.ascontiguousarray(frame, dtype=np.float32), float(dy), float(dx), out)
