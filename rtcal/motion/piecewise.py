"""Per-patch shifts for piecewise-rigid registration (NoRMCorre).

After the rigid shift r of a frame is known, each patch of the frame is
registered to the same patch of the template, searching only lags within
+-max_deviation_px of r (Pnevmatikakis & Giovannucci 2017, "NoRMCorre: an
online algorithm for piecewise rigid motion correction of calcium imaging
data", J. Neurosci. Methods 291:83). For patch p, with band-passed spectra F_p
and T_p (:mod:`rtcal.motion.bandpass`, periodic part of the patch), the
correlation c_p = irfft2(F_p conj(T_p)) is evaluated by matrix-multiply DFT at
the integer lags round(r) + (-m..m), m = ceil(max_deviation_px), then refined
around the best one (:mod:`rtcal.motion.upsampled_dft`). A patch whose
normalised peak is below min_score (a dark or featureless region) takes the
rigid shift, and every patch shift is clipped to r +- max_deviation_px.
"""

from __future__ import annotations

import numpy as np

from rtcal.motion.upsampled_dft import dft_correlation, refine_peak


def estimate_patch_shifts(
    frame_spectra: np.ndarray,
    frame_power: np.ndarray,
    template_conj: np.ndarray,
    template_power: np.ndarray,
    patch_width: int,
    rigid_shift: tuple[float, float],
    max_deviation_px: float,
    upsample: int,
    min_score: float,
) -> tuple[np.ndarray, np.ndarray]:
    """Shifts (dy, dx) px of each patch's content, and each patch's score.

    frame_spectra: complex64 (P, h, w//2+1) band-passed patch spectra;
    frame_power: float64 (P,) their powers (sum |X|^2 over the full spectrum);
    template_conj, template_power: the same for the template's patches, the
    spectra conjugated; patch_width: w; rigid_shift: (dy, dx) px.
    Returns float64 (P, 2) shifts and (P,) normalised scores.
    """
    n_patches, h = frame_spectra.shape[0], frame_spectra.shape[1]
    product = frame_spectra * template_conj
    m = int(np.ceil(max_deviation_px))
    lags = np.arange(-m, m + 1, dtype=np.float64)
    ry, rx = np.round(rigid_shift[0]), np.round(rigid_shift[1])
    ones = np.ones(n_patches)
    coarse = dft_correlation(product, patch_width, ry * ones, rx * ones, lags, lags)
    best = coarse.reshape(n_patches, -1).argmax(axis=1)
    iy, ix = np.divmod(best, lags.size)
    cy, cx = ry + lags[iy], rx + lags[ix]
    if upsample > 1:
        dy, dx, peak = refine_peak(product, patch_width, cy, cx, upsample)
        peak = np.maximum(peak, coarse[np.arange(n_patches), iy, ix])
    else:
        dy, dx, peak = cy, cx, coarse[np.arange(n_patches), iy, ix]
    energy = np.sqrt(frame_power * template_power)
    score = np.where(energy > 0, peak * h * patch_width / np.where(energy > 0, energy, 1.0), 0.0)
    shifts = np.stack([dy, dx], axis=1)
    rigid = np.asarray(rigid_shift, np.float64)
    shifts = np.clip(shifts, rigid - max_deviation_px, rigid + max_deviation_px)
    shifts[score < min_score] = rigid
    return shifts, score
