"""The detector's input: a fixed stack of channels computed from a window of frames.

One definition, two paths: ``input_channels(window)`` (offline: training,
``rtcal detect``) pushes the window through the same ``KeyframeBuffer`` that
the live engine updates frame by frame (``rtcal.buffer.keyframe``), so both
give the same numbers.

Channels, float32 (C, H, W), C = N_SUMMARY + n_key, in this order:

  0 mean     mean frame
  1 std      standard deviation over time of the flat movie z
  2 corr     8-neighbour local correlation of z (Smith & Hausser 2010; CNMF-E's Cn)
  3 pnr      peak-to-noise: hp_max / noise
  4 hp_max   max over t of the temporally high-passed movie, (z_t + z_{t-1}) / 2 - mean_t z
  5..        n_key key frames, most active first, each (z_k - mean_t z) / noise

Definitions. The flat movie is z_t = y_t - b_t, with b_t the frame's smooth
background: its 8 x 8 px block means blurred by a Gaussian of sigma 20 px
(symmetric edges), held constant over each block. This removes the bright,
fluctuating one-photon background (and two-photon neuropil haze) frame by frame,
before any temporal statistic, so std, corr and the peaks see cells rather than
background fluctuations. noise = mean_t |z_t - z_{t-1}| * sqrt(pi) / 2, the
Gaussian noise sigma per pixel (transients are slow, so frame-to-frame
differences are mostly noise). Averaging consecutive pairs in hp_max halves the
noise variance of the peak. Key frames: the frames whose 4 x 4 block means of z
rise the most above 2 noise sigmas in total (see ``rtcal.buffer.keyframe``), at
least min(5, T // (2 n_key)) frames apart.

Normalisation, so that 2p and 1p, dim and bright recordings look alike:

  1. spatial high-pass of mean, std, corr and hp_max: x - G_20px * x (reflecting
     edges), which removes vignetting, the smooth 1p background left in the mean,
     and smooth offsets in the others; pnr and key frames are already in noise units;
  2. robust z-score per channel: (x - median) / (1.4826 MAD), median and MAD over
     every other pixel of every other row (a channel with MAD and std below 1e-5 of
     its magnitude is constant and becomes 0);
  3. clip to [-5, 15] and divide by 5: every channel lies in [-1, 3], background
     near 0 with unit spread 0.2, cells positive.
"""

from __future__ import annotations

import numpy as np

from rtcal.buffer.channels import N_SUMMARY, SUMMARY_NAMES
from rtcal.buffer.keyframe import KeyframeBuffer, KeyframeError

__all__ = ["N_SUMMARY", "SUMMARY_NAMES", "KeyframeError", "input_channels"]


def input_channels(window: np.ndarray, n_key: int = 3) -> np.ndarray:
    """Detector input of a window. window: (T, H, W) real, T >= max(2, n_key), finite.

    Returns float32 (N_SUMMARY + n_key, H, W) (see the module docstring).
    """
    if not isinstance(window, np.ndarray) or window.ndim != 3:
        shape = getattr(window, "shape", type(window).__name__)
        raise KeyframeError(f"window must be an array of shape (T, H, W), got {shape}")
    if window.dtype.kind not in "fiu":
        raise KeyframeError(f"window must have a real numeric dtype, got {window.dtype}")
    if isinstance(n_key, bool) or not isinstance(n_key, (int, np.integer)) or n_key < 1:
        raise KeyframeError(f"n_key must be an integer >= 1, got {n_key!r}")
    T, H, W = window.shape
    if T < max(2, n_key):
        raise KeyframeError(f"window has {T} frames; n_key={n_key} needs at least "
                            f"{max(2, n_key)}")
    buffer = KeyframeBuffer(H, W, T, n_key)
    for t in range(T):
        buffer.push(t, window[t].astype(np.float32, copy=False))
    return buffer.channels()
