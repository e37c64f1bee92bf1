"""Traces of a detector's footprints over the window it saw (``rtcal detect``, the bench).

Traces: the online NMF's initialisation pass (``rtcal.nmf.online.OnlineNMF``) with
the footprints held fixed (no refinement, no new components): per frame the
non-negative least-squares fit of the footprints together with the background
model of the recording's mode, min ||y_t - A^T c_t - B^T f_t||^2, c_t >= 0, by
warm-started HALS (2p: static baseline image plus smooth cosine components;
1p: CNMF-E's ring model fitted on the window). So the traces are those the
online pipeline would start from, for exactly these footprints.

Denoising: OASIS AR(1) per trace (Friedrich et al. 2017), the decay g fitted to
each trace's autocovariance (tau within 0.2-5 s; ``tau_decay_s`` where the fit
fails), smallest spike ``spike_sd`` noise sigmas.

The traces are the clamped ones (``OnlineNMF.init_traces``), not the
unconstrained ones the online pipeline deconvolves since session 17
(``init_noisy``): batch OASIS over the whole window did better on them
(``python bench/detector.py --weights rtcal/weights/detector_2p.pt --skip-speed
--windows 4 --frames 500``: median trace r 0.944 against 0.910 for the 2p
weights, 0.959 against 0.916 for the seed detector), while the online,
frame-by-frame deconvolution did better on the unconstrained ones
(``rtcal.deconv.config.DeconvConfig``).
"""

from __future__ import annotations

import dataclasses

import numpy as np

from rtcal.deconv.ar import estimate_g, noise_sigma
from rtcal.deconv.oasis import decay_factor, oasis_ar1
from rtcal.errors import RtcalError
from rtcal.nmf.online import OnlineNMF, OnlineNMFConfig


class WindowTracesError(RtcalError, ValueError):
    """Footprints and window do not fit together; the message says how."""


def window_traces(footprints: np.ndarray, window: np.ndarray, nmf: OnlineNMFConfig,
                  fps_hz: float) -> np.ndarray:
    """Raw traces float32 (K, T) of footprints (K, H, W) in a registered window (T, H, W)."""
    if footprints.ndim != 3 or window.ndim != 3 or footprints.shape[1:] != window.shape[1:]:
        raise WindowTracesError(f"footprints {footprints.shape} and window {window.shape} must "
                                "be (K, H, W) and (T, H, W) of one frame size")
    if len(footprints) == 0:
        return np.zeros((0, len(window)), np.float32)
    fixed = dataclasses.replace(nmf, refine_per_frame=0, max_new_per_search=0)
    nmf_pass = OnlineNMF(fixed, fps_hz, footprints.astype(np.float32),
                         window.astype(np.float32, copy=False))
    return nmf_pass.init_traces.astype(np.float32)


def denoise(traces: np.ndarray, fps_hz: float, *, tau_decay_s: float = 1.0,
            spike_sd: float = 2.5) -> tuple[np.ndarray, np.ndarray]:
    """(denoised calcium, spikes), float32 (K, T) each, by OASIS AR(1) per trace."""
    K, T = traces.shape
    if K == 0 or T < 16:
        return traces.astype(np.float32), np.zeros_like(traces, np.float32)
    g = estimate_g(traces, fps_hz, tau_range_s=(0.2, 5.0))
    g = np.where(np.isfinite(g), g, decay_factor(tau_decay_s, fps_hz))
    s_min = spike_sd * np.maximum(noise_sigma(traces), 1e-6)
    denoised = np.zeros((K, T), np.float32)
    spikes = np.zeros((K, T), np.float32)
    for k in range(K):
        denoised[k], spikes[k] = oasis_ar1(traces[k], float(g[k]), 0.0, float(s_min[k]))
    return denoised, spikes
