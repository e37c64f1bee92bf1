"""Noise level and AR coefficients of calcium traces, from an initialisation window.

Model (Pnevmatikakis et al. 2016, Neuron 89:285, "CNMF"; Friedrich et al. 2017):

    y_t = c_t + b + sigma eps_t,    c_t = sum_{i=1..p} g_i c_{t-i} + s_t,

eps white with unit variance, s sparse non-negative. All functions take a
batch of traces Y float (K, T) and return one value (or row) per component.

Noise sigma. Two estimators are given:

- :func:`noise_sigma` (the default): median absolute first difference,
  sigma = median|y_{t+1} - y_t| / (0.6745 sqrt 2). Spikes are sparse, so they
  move only the tails of the differences and the median ignores them; calcium
  decays slowly, so its share of a difference is small. It is the estimator
  the rest of rtcal uses (:func:`rtcal.buffer.summary.noise_std`).
- :func:`noise_sigma_psd`: CaImAn's ``GetSn``: the Welch power spectral
  density averaged over the upper half of the frequencies (0.25, 0.5] x fps,
  sigma = sqrt(mean PSD / 2). It ignores slow signal but not spikes: a spike
  is broadband, so every spike adds power at high frequencies. With a few
  spikes per second of unit size it overestimates sigma by tens of per cent
  (measured in tests/test_deconv_ar.py), which is why it is not the default.

AR coefficients (CaImAn ``estimate_time_constant``): the autocovariance of y
satisfies the Yule-Walker equations of c at lags >= 1, and at lag 0 it carries
the noise variance, which is subtracted:

    gamma(j) = sum_i g_i (gamma(j - i) - sigma^2 [j == i]),   j = 1..n_lags,

solved in the least-squares sense. For AR(1), :func:`estimate_g` clips the
result to a range of decay times, so an inactive component (whose
autocovariance is noise) gets a short tau, and a drifting one cannot reach 1.
"""

from __future__ import annotations

import numpy as np
from scipy.signal import welch

from rtcal.deconv.oasis import DeconvError

# MAD of a difference of two iid Gaussians -> sigma of one: 0.6745 * sqrt(2)
_MAD_DIFF_TO_SIGMA = 1.0 / (0.6744897501960817 * np.sqrt(2.0))
NOISE_MIN_FRAMES = 3  # noise_sigma: first differences of at least 3 frames


def _traces(Y: np.ndarray, min_frames: int) -> np.ndarray:
    Y = np.asarray(Y, dtype=np.float64)
    if Y.ndim != 2:
        raise DeconvError(f"Y must be (K, T), got shape {Y.shape}")
    if Y.shape[1] < min_frames:
        raise DeconvError(f"Y needs at least {min_frames} frames, got {Y.shape[1]}")
    if not np.isfinite(Y).all():
        raise DeconvError("Y must be finite (an initialisation window has no missing frames)")
    return Y


def noise_sigma(Y: np.ndarray) -> np.ndarray:
    """Noise sigma per trace from the median absolute first difference. Y (K, T) -> (K,) float64."""
    Y = _traces(Y, NOISE_MIN_FRAMES)
    return np.median(np.abs(np.diff(Y, axis=1)), axis=1) * _MAD_DIFF_TO_SIGMA


def noise_sigma_psd(Y: np.ndarray, *, n_per_segment: int = 256) -> np.ndarray:
    """Noise sigma per trace from the mean Welch PSD over (0.25, 0.5] cycles/frame (CaImAn GetSn).

    Y (K, T) -> (K,) float64. A white sequence of variance sigma^2 has a one-sided
    PSD of 2 sigma^2 at unit sampling rate.
    """
    Y = _traces(Y, 16)
    freq, psd = welch(Y, nperseg=min(n_per_segment, Y.shape[1]), axis=1)
    band = (freq > 0.25) & (freq <= 0.5)
    return np.sqrt(psd[:, band].mean(axis=1) / 2.0)


def autocovariance(Y: np.ndarray, max_lag: int) -> np.ndarray:
    """Biased autocovariance at lags 0..max_lag (FFT). Y (K, T) -> (K, max_lag + 1) float64."""
    Y = _traces(Y, max_lag + 2)
    T = Y.shape[1]
    Z = Y - Y.mean(axis=1, keepdims=True)
    n_fft = 1 << int(np.ceil(np.log2(2 * T - 1)))
    F = np.fft.rfft(Z, n_fft, axis=1)
    return np.fft.irfft(F * np.conj(F), n_fft, axis=1)[:, : max_lag + 1] / T


def ar_coefficients(
    Y: np.ndarray, p: int, *, sigma: np.ndarray | None = None, n_lags: int = 5
) -> np.ndarray:
    """Noise-corrected Yule-Walker AR(p) fit per trace. Y (K, T) -> g float64 (K, p).

    sigma (K,): noise level (default :func:`noise_sigma`). Uses lags 1..n_lags + p.
    Unconstrained: roots may be negative or above 1; see :func:`estimate_g`.
    """
    if p not in (1, 2):
        raise DeconvError(f"p must be 1 or 2, got {p}")
    if n_lags < 1:
        raise DeconvError(f"n_lags must be >= 1, got {n_lags}")
    sigma = noise_sigma(Y) if sigma is None else np.asarray(sigma, np.float64)
    L = n_lags + p
    gamma = autocovariance(Y, L)  # (K, L + 1)
    j = np.arange(1, L + 1)[:, None]  # equation for lag j
    i = np.arange(1, p + 1)[None, :]  # coefficient g_i
    A = gamma[:, np.abs(j - i)]  # (K, L, p): gamma(|j - i|)
    A = A - (sigma**2)[:, None, None] * (j == i)[None]
    b = gamma[:, 1:, None]  # (K, L, 1)
    return (np.linalg.pinv(A) @ b)[:, :, 0]


def decay_range(fps_hz: float, tau_range_s: tuple[float, float]) -> tuple[float, float]:
    """(g_min, g_max) for decay times tau_range_s = (tau_min_s, tau_max_s) at fps_hz."""
    tau_min_s, tau_max_s = tau_range_s
    if not fps_hz > 0:
        raise DeconvError(f"fps_hz must be > 0, got {fps_hz}")
    if not 0 < tau_min_s < tau_max_s:
        raise DeconvError(f"tau_range_s must satisfy 0 < min < max, got {tau_range_s}")
    return float(np.exp(-1 / (tau_min_s * fps_hz))), float(np.exp(-1 / (tau_max_s * fps_hz)))


def estimate_g(
    Y: np.ndarray,
    fps_hz: float,
    *,
    tau_range_s: tuple[float, float] = (0.1, 5.0),
    sigma: np.ndarray | None = None,
    n_lags: int = 5,
) -> np.ndarray:
    """AR(1) decay factor per trace, clipped to tau in tau_range_s. Y (K, T) -> g float64 (K,).

    A non-finite fit (a constant trace) gets the shortest tau.
    """
    g_min, g_max = decay_range(fps_hz, tau_range_s)
    g = ar_coefficients(Y, 1, sigma=sigma, n_lags=n_lags)[:, 0]
    return np.clip(np.nan_to_num(g, nan=g_min), g_min, g_max)


def time_constant_s(g: np.ndarray, fps_hz: float) -> np.ndarray:
    """tau_s = -1 / (fps_hz log g): inverse of :func:`rtcal.deconv.oasis.decay_factor`."""
    return -1.0 / (fps_hz * np.log(np.asarray(g, dtype=np.float64)))


def estimate_ar2(
    Y: np.ndarray,
    fps_hz: float,
    *,
    tau_range_s: tuple[float, float] = (0.1, 5.0),
    rise_range_s: tuple[float, float] = (0.005, 0.25),
    tau_rise_s: float = 0.05,
    sigma: np.ndarray | None = None,
    n_lags: int = 5,
) -> np.ndarray:
    """AR(2) coefficients (g1, g2) per trace, with a stable fallback. Y (K, T) -> float64 (K, 2).

    The noise-corrected Yule-Walker fit (:func:`ar_coefficients`, p = 2, as
    CaImAn's ``estimate_time_constant``) gives g; its roots d > r of
    z^2 = g1 z + g2 are the decay and rise factors. A fit is kept when the roots
    are real, the decay time lies in tau_range_s and the rise time in
    rise_range_s (and the rise is at most half the decay). Otherwise, as for an
    inactive trace whose autocovariance is noise, the decay comes from
    :func:`estimate_g` (clipped AR(1)) and the rise is the prior ``tau_rise_s``.
    The result always satisfies :func:`rtcal.deconv.oasis_ar2.ar2_roots`.
    """
    from rtcal.deconv.oasis_ar2 import MIN_ROOT_GAP, ar2_from_roots

    g = ar_coefficients(Y, 2, sigma=sigma, n_lags=n_lags)
    disc = g[:, 0] ** 2 + 4 * g[:, 1]
    root = np.sqrt(np.maximum(np.nan_to_num(disc, nan=-1.0), 0.0))
    d, r = (g[:, 0] + root) / 2, (g[:, 0] - root) / 2
    d_min, d_max = decay_range(fps_hz, tau_range_s)
    r_min, r_max = decay_range(fps_hz, rise_range_s)
    with np.errstate(divide="ignore", invalid="ignore"):
        tau_d, tau_r = time_constant_s(d, fps_hz), time_constant_s(r, fps_hz)
    ok = (
        np.isfinite(disc)
        & (disc > 0)
        & (d >= d_min)
        & (d <= d_max)
        & (r >= r_min)
        & (r <= r_max)
        & (tau_r <= 0.5 * tau_d)
    )
    d = np.where(ok, d, estimate_g(Y, fps_hz, tau_range_s=tau_range_s, sigma=sigma))
    r_prior = float(np.exp(-1.0 / (tau_rise_s * fps_hz)))
    r = np.where(ok, r, r_prior)
    r = np.minimum(r, d - MIN_ROOT_GAP)  # a decay so fast that the prior rise would meet it
    return ar2_from_roots(d, np.maximum(r, 0.0))
