"""Band-passed spectra of frames, free of the wrap-around edge, for FFT registration.

The FFT treats an image as periodic, so the step between its top and bottom rows
(and left and right columns) is a strong edge that sits at the same place in
every frame and in the template: it pulls the correlation peak towards zero
shift, badly so on one-photon data with a bright, sloping background. The image
is therefore first split into a periodic and a smooth part (Moisan 2011,
"Periodic plus smooth image decomposition", J. Math. Imaging Vis. 39:161),

    u = p + s,   Laplacian(s) = v,   v = the boundary image (jumps across the wrap),
    S(q, r) = V(q, r) / (2 cos(2 pi q / H) + 2 cos(2 pi r / W) - 4),   S(0, 0) = 0,

and only p is registered. V is nonzero on the border only, so it costs two
1-D FFTs: with a = u[H-1, :] - u[0, :] and b = u[:, W-1] - u[:, 0],

    V(q, r) = rfft(a)(r) (1 - exp(2 pi i q / H)) + fft(b)(q) (1 - exp(2 pi i r / W)).

Then P is multiplied by a difference-of-Gaussians transfer (cell-scale structure
only: the low-pass sigma suppresses pixel noise, the high-pass sigma removes the
slowly varying background and illumination).
"""

from __future__ import annotations

from functools import lru_cache

import numba
import numpy as np
import scipy.fft


@lru_cache(maxsize=32)
def band_pass_transfer(shape: tuple[int, int], sigma_lo: float, sigma_hi: float) -> np.ndarray:
    """DoG transfer exp(-2 pi^2 s_lo^2 |f|^2) - exp(-2 pi^2 s_hi^2 |f|^2) on the rfft grid.

    f in cycles/px; shape (H, W) -> float32 (H, W // 2 + 1), read-only (cached).
    It is 0 at f = 0, so the image mean never reaches the correlation.
    """
    H, W = shape
    fy = scipy.fft.fftfreq(H)[:, None]
    fx = scipy.fft.rfftfreq(W)[None, :]
    r2 = fy**2 + fx**2
    transfer = np.exp(-2 * (np.pi * sigma_lo) ** 2 * r2) - np.exp(-2 * (np.pi * sigma_hi) ** 2 * r2)
    transfer = transfer.astype(np.float32)
    transfer.flags.writeable = False
    return transfer


def _inverse_laplacian(shape: tuple[int, int]) -> np.ndarray:
    """1 / (2 cos(2 pi q / H) + 2 cos(2 pi r / W) - 4) on the rfft grid, 0 at (0, 0). float64."""
    H, W = shape
    q = np.arange(H)[:, None]
    r = np.arange(W // 2 + 1)[None, :]
    den = 2 * np.cos(2 * np.pi * q / H) + 2 * np.cos(2 * np.pi * r / W) - 4
    den[0, 0] = 1.0
    inv = 1.0 / den
    inv[0, 0] = 0.0
    return inv


@lru_cache(maxsize=32)
def _smooth_part_gains(
    shape: tuple[int, int], sigma_lo: float, sigma_hi: float
) -> tuple[np.ndarray, np.ndarray]:
    """(G_a, G_b) complex64 (H, W//2+1): transfer x S per unit rfft(a)(r) and fft(b)(q)."""
    H, W = shape
    q = np.arange(H)[:, None]
    r = np.arange(W // 2 + 1)[None, :]
    common = _inverse_laplacian(shape) * band_pass_transfer(shape, sigma_lo, sigma_hi)
    g_a = ((1 - np.exp(2j * np.pi * q / H)) * common).astype(np.complex64)  # x rfft(a)(r)
    g_b = ((1 - np.exp(2j * np.pi * r / W)) * common).astype(np.complex64)  # x fft(b)(q)
    g_a.flags.writeable = False
    g_b.flags.writeable = False
    return g_a, g_b


@numba.njit(cache=True, fastmath=True)
def _finish(spectrum, transfer, g_a, g_b, a, b, width):  # pragma: no cover - compiled
    """In place: spectrum = spectrum x transfer - a G_a - b G_b; returns the powers (B,)."""
    n_images, H, K = spectrum.shape
    power = np.zeros(n_images)
    for n in range(n_images):
        total = 0.0
        a_n = a[n]
        for q in range(H):
            b_re, b_im = b[n, q].real, b[n, q].imag
            s, t, ga, gb = spectrum[n, q], transfer[q], g_a[q], g_b[q]
            row = np.float32(0.0)
            for r in range(K):
                z_re = (s[r].real * t[r] - (a_n[r].real * ga[r].real - a_n[r].imag * ga[r].imag)
                        - (b_re * gb[r].real - b_im * gb[r].imag))
                z_im = (s[r].imag * t[r] - (a_n[r].real * ga[r].imag + a_n[r].imag * ga[r].real)
                        - (b_re * gb[r].imag + b_im * gb[r].real))
                s[r] = complex(z_re, z_im)
                row += z_re * z_re + z_im * z_im
            # Parseval over the full spectrum: the half's columns count twice, except
            # column 0 and (W even) the Nyquist column.
            total += 2.0 * row - (s[0].real ** 2 + s[0].imag ** 2)
            if width % 2 == 0:
                total -= s[K - 1].real ** 2 + s[K - 1].imag ** 2
        power[n] = total
    return power


def spectrum_and_power(
    image: np.ndarray, sigma_lo: float, sigma_hi: float
) -> tuple[np.ndarray, np.ndarray | float]:
    """Band-passed spectrum of the periodic part of float32 image(s), and its power.

    image (..., H, W) float32 with its mean already removed (for float32
    precision; the transfer removes it anyway). Returns complex64
    (..., H, W // 2 + 1) and float64 (...) (a float for one image): sum |X|^2 over
    the full spectrum, as :func:`spectrum_power`. Numba for the per-frequency
    part; :func:`band_pass_spectrum_reference` is the plain version.
    """
    shape = image.shape[-2:]
    sigma_lo, sigma_hi = float(sigma_lo), float(sigma_hi)
    batch = image.reshape(-1, *shape)
    spectrum = scipy.fft.rfft2(batch, workers=1)
    g_a, g_b = _smooth_part_gains(shape, sigma_lo, sigma_hi)
    a = scipy.fft.rfft(batch[:, -1, :] - batch[:, 0, :], workers=1)  # (B, W//2+1)
    b = scipy.fft.fft(batch[:, :, -1] - batch[:, :, 0], workers=1)  # (B, H)
    transfer = band_pass_transfer(shape, sigma_lo, sigma_hi)
    power = _finish(spectrum, transfer, g_a, g_b, a.astype(np.complex64),
                    b.astype(np.complex64), shape[1])
    spectrum = spectrum.reshape(*image.shape[:-1], shape[1] // 2 + 1)
    power = power.reshape(image.shape[:-2])
    return spectrum, (float(power) if power.ndim == 0 else power)


def spectrum_of_centred(image: np.ndarray, sigma_lo: float, sigma_hi: float) -> np.ndarray:
    """The spectrum of :func:`spectrum_and_power` alone."""
    return spectrum_and_power(image, sigma_lo, sigma_hi)[0]


def band_pass_spectrum(image: np.ndarray, sigma_lo: float, sigma_hi: float) -> np.ndarray:
    """Band-passed spectrum of an image's periodic part: (..., H, W) -> complex64 (..., H, W//2+1).

    sigma_lo, sigma_hi: the DoG's low-pass and high-pass scales in px.
    """
    img = np.asarray(image, np.float32)
    img = img - img.mean(axis=(-2, -1), keepdims=True, dtype=np.float64).astype(np.float32)
    return spectrum_of_centred(img, sigma_lo, sigma_hi)


def band_pass_spectrum_reference(image: np.ndarray, sigma_lo: float, sigma_hi: float) -> np.ndarray:
    """Plain version of :func:`band_pass_spectrum` for one (H, W) image, in float64.

    Builds the boundary image v explicitly and solves for s with a full FFT.
    """
    u = np.asarray(image, np.float64)
    u = u - u.mean()
    v = np.zeros_like(u)
    v[0, :] += u[-1, :] - u[0, :]
    v[-1, :] += u[0, :] - u[-1, :]
    v[:, 0] += u[:, -1] - u[:, 0]
    v[:, -1] += u[:, 0] - u[:, -1]
    s_hat = scipy.fft.rfft2(v) * _inverse_laplacian(u.shape)
    p_hat = scipy.fft.rfft2(u) - s_hat
    return p_hat * band_pass_transfer(u.shape, float(sigma_lo), float(sigma_hi))


def spectrum_power(spectrum: np.ndarray, width: int) -> np.ndarray | float:
    """sum |x|^2 over the full 2-D spectrum, from its rfft half (Parseval).

    spectrum (..., H, W//2+1) -> float64 (...) (a float for one spectrum).
    """
    p = spectrum.real**2 + spectrum.imag**2
    total = 2 * p.sum(axis=(-2, -1), dtype=np.float64) - p[..., 0].sum(axis=-1, dtype=np.float64)
    if width % 2 == 0:
        total -= p[..., -1].sum(axis=-1, dtype=np.float64)
    return float(total) if np.ndim(total) == 0 else total
