"""Exact sub-pixel shift by the Fourier shift theorem.

Bilinear interpolation low-passes a frame by an amount that depends on the
fractional part of the shift, so registered frames end up with different noise
levels; statistics over a window (peak-to-noise, local correlation) are then
biased. The Fourier shift, multiplying the spectrum by exp(-2 pi i (k dy + l dx)),
moves content without smoothing (edges wrap around). It costs two FFTs, so the
pipeline uses it for the initialisation window, where detection statistics are
computed, and bilinear shifts per frame.
"""

from __future__ import annotations

import numpy as np
import scipy.fft


def fourier_shift(frame: np.ndarray, dy: float, dx: float) -> np.ndarray:
    """Shift (H, W) content by (dy, dx) px, sub-pixel and without smoothing. -> float32."""
    H, W = frame.shape
    ky = scipy.fft.fftfreq(H)[:, None]
    kx = scipy.fft.rfftfreq(W)[None, :]
    spectrum = scipy.fft.rfft2(frame.astype(np.float64), workers=-1)
    spectrum *= np.exp(-2j * np.pi * (ky * dy + kx * dx))
    return scipy.fft.irfft2(spectrum, s=(H, W), workers=-1).astype(np.float32)
