"""Declared signal-to-noise ratio of each neuron: one spike vs the noise of its trace.

For neuron k with canvas footprint a_k (max 1), resting brightness beta_k and
mean single-spike peak dF/F amp_k, the footprint-weighted trace is
y_k(t) = sum_p a_k[p] Y[p, t] over the field of view. At rest (t = 0, gain 1,
background at its mean b0, every cell at baseline) each pixel has noise
variance var_p = nu^2 (g (1 + cv^2) E_p + read^2) + 1/12 (noise.py; 1/12 for
rounding to integers), E_p = b0[p] + sum_k beta_k a_k[p]. Then

    snr_k = beta_k amp_k sum_p a_k[p]^2 / sqrt(sum_p w_k[p]^2 var_p)

with var_p taken before the scan low-pass and w_k = a_k correlated with the
low-pass impulse response along each row (w_k = a_k without it), so the
correlation the low-pass puts between neighbouring pixels is counted. Line
gain fluctuations and dropped lines are not counted.

i.e. the expected peak of one isolated spike in y_k over the std of y_k's
detector noise (neuropil fluctuations and neighbours' activity not counted).
It is independent of how the weights are scaled; infinite when noise_level = 0.
"""

from __future__ import annotations

import dataclasses

import numpy as np
from scipy.signal import lfilter

from rtcal.sim.config import SimConfig
from rtcal.sim.noise import noise_variance
from rtcal.sim.tissue import Tissue


def resting_scene(tissue: Tissue) -> np.ndarray:
    """Expected resting image on the canvas (Hc, Wc) float64, counts above offset."""
    rest = tissue.background.mean.astype(np.float64)
    rest = rest + tissue.cells.T @ tissue.baseline.astype(np.float64)
    return rest.reshape(tissue.canvas.shape)


def _scan_weights(a: np.ndarray, lowpass: float) -> np.ndarray:
    """Weights on the pre-filter pixel noise: sum_j a_j out_j = sum_m x_m w_m along each row,
    w = a correlated with the scan low-pass h_n = (1 - lowpass) lowpass^n (n >= 0)."""
    if lowpass == 0:
        return a
    return lfilter([1 - lowpass], [1, -lowpass], a[:, ::-1], axis=1)[:, ::-1]


def single_spike_snr(tissue: Tissue, cfg: SimConfig) -> np.ndarray:
    """snr (K,) float32 as defined in the module docstring."""
    canvas, det = tissue.canvas, cfg.detector
    white = dataclasses.replace(det, scan_lowpass=0.0)  # variance before the scan low-pass
    var = noise_variance(resting_scene(tissue), white, cfg.noise_level)
    var = canvas.crop(var) + 1.0 / 12
    amp = tissue.baseline * tissue.kinetics.spike_dff
    snr = np.full(tissue.n_cells, np.inf, np.float32)
    if cfg.noise_level == 0:
        return snr
    for k in range(tissue.n_cells):
        rows, cols = np.divmod(tissue.cells.getrow(k).indices, canvas.shape[1])
        rows, cols = rows - canvas.margin, cols - canvas.margin
        keep = (rows >= 0) & (rows < canvas.height) & (cols >= 0) & (cols < canvas.width)
        r0, r1 = rows[keep].min(), rows[keep].max() + 1
        c0, c1 = cols[keep].min(), cols[keep].max() + 1
        a = np.zeros((r1 - r0, c1 - c0))
        a[rows[keep] - r0, cols[keep] - c0] = tissue.cells.getrow(k).data[keep]
        w = _scan_weights(a, det.scan_lowpass)
        signal = amp[k] * np.sum(a * a)
        snr[k] = signal / np.sqrt(np.sum(w * w * var[r0:r1, c0:c1]))
    return snr
