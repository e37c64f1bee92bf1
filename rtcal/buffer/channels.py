"""The detector's input channels from a window's statistics: assembly and normalisation.

The channels and the exact normalisation are specified in
``rtcal.detect.inputs`` (the detector's side of the contract); this module
implements them for both the offline path and the live buffer.
"""

from __future__ import annotations

import numpy as np

from rtcal.buffer.accumulator import WindowStats
from rtcal.buffer.fold import BACKGROUND_SIGMA_PX
from rtcal.detect.bandpass import dog_filter

N_SUMMARY = 5
SUMMARY_NAMES = ("mean", "std", "corr", "pnr", "hp_max")
CLIP_SIGMAS = (-5.0, 15.0)  # robust z-scores are clipped to this range ...
OUTPUT_SCALE = 5.0  # ... then divided by this: every channel lies in [-1, 3]
_MAD_TO_SIGMA = 1.4826
_CONSTANT = 1e-5  # a channel whose spread is below this x its magnitude is constant


def spatial_highpass(image: np.ndarray) -> np.ndarray:
    """image - Gaussian blur (sigma BACKGROUND_SIGMA_PX, reflecting edges). float32 (H, W)."""
    return dog_filter(image.astype(np.float32), 0.0, BACKGROUND_SIGMA_PX)


def robust_scale(image: np.ndarray, magnitude: float | None = None) -> np.ndarray:
    """clip((x - median) / (1.4826 MAD), -5, 15) / 5, median and MAD from every
    other pixel of every other row. A channel whose MAD (or, failing that, std)
    is below 1e-5 x ``magnitude`` (default max |x|) is constant and maps to 0.
    float32 (H, W) in [-1, 3]."""
    sample = image[::2, ::2].astype(np.float64)
    centre = float(np.median(sample))
    spread = _MAD_TO_SIGMA * float(np.median(np.abs(sample - centre)))
    if magnitude is None:
        magnitude = float(np.abs(image).max())
    floor = _CONSTANT * magnitude + 1e-30
    if spread <= floor:
        spread = float(sample.std())
    if spread <= floor:
        return np.zeros(image.shape, np.float32)
    z = (image.astype(np.float64) - centre) / spread
    return (np.clip(z, *CLIP_SIGMAS) / OUTPUT_SCALE).astype(np.float32)


def _flattened(image: np.ndarray) -> np.ndarray:
    return robust_scale(spatial_highpass(image), float(np.abs(image).max()))


def assemble_channels(stats: WindowStats, key_deviations: np.ndarray) -> np.ndarray:
    """Summary channels then key frames, each normalised. key_deviations: (n_key, H, W)
    flat key frames minus the flat mean. Returns float32 (5 + n_key, H, W)."""
    n_key, H, W = key_deviations.shape
    out = np.empty((N_SUMMARY + n_key, H, W), np.float32)
    out[0] = _flattened(stats.mean)
    out[1] = _flattened(stats.std)
    out[2] = _flattened(stats.corr)
    out[3] = robust_scale(stats.hp_max / stats.noise)
    out[4] = _flattened(stats.hp_max)
    for k in range(n_key):
        out[N_SUMMARY + k] = robust_scale(key_deviations[k] / stats.noise)
    return out
