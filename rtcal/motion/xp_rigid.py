"""Rigid registration kernels for any array module, without host round trips.

The same computation as the CPU path (:mod:`rtcal.motion.frame_check`,
:mod:`rtcal.motion.bandpass`, :mod:`rtcal.motion.rigid`,
:mod:`rtcal.motion.upsampled_dft`):

1. centre (and b x b bin) the frame; count non-finite and saturated pixels;
2. band-passed spectrum of its periodic part (Moisan 2011) and its power;
3. cross-power spectrum with the template, inverse FFT, integer peak within
   +-max_shift_px, refined by the upsampled DFT of Guizar-Sicairos, Thurman &
   Fienup (2008) on a 1.5 px neighbourhood plus a parabola per axis;
4. normalised score; bilinear shift of the frame with replicated edges.

Every scalar the kernels produce (mean, counts, shift, peak, power, score)
stays a 0-d array of the frame's module: nothing here waits for the device,
so the stepper decides when to download (once per frame, a few numbers).
The upsampled DFT is written as broadcast products and sums rather than
matrix products so that it needs no cuBLAS on the GPU.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.fft

from rtcal.backend import Backend, array_module, fft_module
from rtcal.motion.bandpass import _smooth_part_gains, band_pass_transfer
from rtcal.motion.upsampled_dft import WINDOW_PX, _half_weights, _phase_table


@dataclass(frozen=True)
class RigidTables:
    """Constants of rigid registration for one correlated (binned) shape, on a backend.

    shape: (H, W) of the correlated image; transfer float32, g_a / g_b complex64
    (H, W//2+1): band-pass and smooth-part gains; window_rows / window_cols int64
    (2m+1,): circular indices of the lags -m..m; max_shift_px: bound on the
    shift (in correlated px); upsample: samples per px of the refinement;
    phase_y complex64 (n, H), phase_x complex64 (n, W//2+1): refinement offsets'
    phase factors; ky, kx float64 frequencies; half_weights float64 (W//2+1,).
    """

    shape: tuple[int, int]
    transfer: object
    g_a: object
    g_b: object
    window_rows: object
    window_cols: object
    max_shift_px: float
    upsample: int
    phase_y: object
    phase_x: object
    ky: object
    kx: object
    half_weights: object

    @property
    def half(self) -> int:
        return int(np.ceil(0.5 * WINDOW_PX * self.upsample))


def rigid_tables(
    shape: tuple[int, int],
    sigma_lo: float,
    sigma_hi: float,
    max_shift_px: float,
    upsample: int,
    backend: Backend,
) -> RigidTables:
    """Build (on the host, with the CPU path's own cached tables) and upload once."""
    H, W = shape
    sigma_lo, sigma_hi = float(sigma_lo), float(sigma_hi)
    g_a, g_b = _smooth_part_gains(shape, sigma_lo, sigma_hi)
    m = int(min(np.floor(max_shift_px), (H - 1) // 2, (W - 1) // 2))
    half = int(np.ceil(0.5 * WINDOW_PX * upsample))
    offsets = tuple(np.arange(-half, half + 1) / upsample)
    up = backend.asarray
    return RigidTables(
        shape=(H, W),
        transfer=up(band_pass_transfer(shape, sigma_lo, sigma_hi)),
        g_a=up(g_a),
        g_b=up(g_b),
        window_rows=up(np.arange(-m, m + 1) % H),
        window_cols=up(np.arange(-m, m + 1) % W),
        max_shift_px=float(max_shift_px),
        upsample=int(upsample),
        phase_y=up(_phase_table(H, offsets, False)),
        phase_x=up(_phase_table(W, offsets, True)),
        ky=up(scipy.fft.fftfreq(H)),
        kx=up(scipy.fft.rfftfreq(W)),
        half_weights=up(_half_weights(W)),
    )


@dataclass(frozen=True)
class Centred:
    """image: float32 (H // b, W // b) mean-removed, binned; mean: float64 0-d (NaN if no
    finite pixel); n_nonfinite, n_saturated: int 0-d."""

    image: object
    mean: object
    n_nonfinite: object
    n_saturated: object


def centre(frame, saturation_level: float, bin_px: int = 1) -> Centred:
    """As :func:`rtcal.motion.frame_check.centre_frame`: non-finite pixels count as the
    mean of the finite ones; saturated = finite pixels >= saturation_level."""
    xp = array_module(frame)
    f = frame.astype(xp.float32, copy=False)
    finite = xp.isfinite(f)
    n_finite = finite.sum()
    total = xp.where(finite, f, 0.0).sum(dtype=xp.float64)
    some = n_finite > 0
    mean = xp.where(some, total / xp.maximum(n_finite, 1), np.nan)  # NaN: no finite pixel
    level = np.float32(saturation_level) if np.isfinite(saturation_level) else np.inf
    n_saturated = (finite & (f >= level)).sum()
    m32 = xp.where(some, mean, 0.0).astype(xp.float32)
    centred = xp.where(finite, f - m32, xp.float32(0.0))
    b = int(bin_px)
    if b > 1:
        Hb, Wb = f.shape[0] // b, f.shape[1] // b
        blocks = centred[: Hb * b, : Wb * b].reshape(Hb, b, Wb, b)
        centred = blocks.sum(axis=(1, 3)) * xp.float32(1.0 / (b * b))
    return Centred(centred, mean, f.size - n_finite, n_saturated)


def spectrum_and_power(image, tables: RigidTables):
    """Band-passed spectrum of the periodic part of a centred float32 (H, W) image:
    complex64 (H, W//2+1), and its full-spectrum power sum |X|^2, float64 0-d."""
    xp = array_module(image)
    fft = fft_module(xp)
    W = image.shape[1]
    spectrum = fft.rfft2(image)
    a = fft.rfft(image[-1, :] - image[0, :])  # wrap-around jumps (Moisan's boundary image)
    b = fft.fft(image[:, -1] - image[:, 0])
    spectrum = spectrum * tables.transfer - a[None, :] * tables.g_a - b[:, None] * tables.g_b
    p = spectrum.real**2 + spectrum.imag**2
    power = 2.0 * p.sum(dtype=xp.float64) - p[:, 0].sum(dtype=xp.float64)
    if W % 2 == 0:
        power = power - p[:, -1].sum(dtype=xp.float64)
    return spectrum.astype(xp.complex64, copy=False), power


def _parabola_offset(left, centre_value, right):
    xp = array_module(left)
    denom = left - 2.0 * centre_value + right
    safe = xp.where(denom < 0, denom, -1.0)
    return xp.where(denom < 0, xp.clip(0.5 * (left - right) / safe, -0.5, 0.5), 0.0)


def refine_peak(product, coarse_y, coarse_x, tables: RigidTables):
    """Sub-pixel peak near the integer lag (coarse_y, coarse_x) (float64 0-d), as
    :func:`rtcal.motion.upsampled_dft.refine_peak` for one spectrum.
    Returns (dy, dx, peak) float64 0-d."""
    xp = array_module(product)
    H, K = product.shape
    W = tables.shape[1]
    upsample, half = tables.upsample, tables.half
    two_pi_i = 2j * np.pi
    base_y = xp.exp(two_pi_i * coarse_y * tables.ky).astype(xp.complex64)  # (H,)
    base_x = (xp.exp(two_pi_i * coarse_x * tables.kx) * tables.half_weights).astype(xp.complex64)
    row = tables.phase_y * base_y[None, :]  # (n, H)
    col = tables.phase_x * base_x[None, :]  # (n, K)
    partial = (row[:, :, None] * product[None, :, :]).sum(axis=1)  # (n, K), complex64
    grid = (partial.astype(xp.complex128)[:, None, :] * col[None, :, :]).sum(axis=-1).real
    grid = grid / (H * W)  # (n, n) correlation at the lags
    n = grid.shape[0]
    flat = xp.argmax(grid)
    iy, ix = flat // n, flat % n
    peak = grid.reshape(-1)[flat]
    iy_in, ix_in = xp.clip(iy, 1, n - 2), xp.clip(ix, 1, n - 2)
    oy = _parabola_offset(grid[iy_in - 1, ix], grid[iy_in, ix], grid[iy_in + 1, ix])
    ox = _parabola_offset(grid[iy, ix_in - 1], grid[iy, ix_in], grid[iy, ix_in + 1])
    oy = xp.where(iy == iy_in, oy, 0.0)
    ox = xp.where(ix == ix_in, ox, 0.0)
    dy = coarse_y + (iy - half + oy) / upsample
    dx = coarse_x + (ix - half + ox) / upsample
    return dy, dx, peak


def shift_from_product(product, tables: RigidTables):
    """Peak (dy, dx) of irfft2(product) within +-max_shift_px, and the correlation there,
    as :func:`rtcal.motion.rigid.shift_from_product`. product: complex64 (H, W//2+1).
    Returns float64 0-d arrays (dy, dx, peak)."""
    xp = array_module(product)
    fft = fft_module(xp)
    xc = fft.irfft2(product, s=tables.shape)
    local = xc[tables.window_rows[:, None], tables.window_cols[None, :]]
    n = local.shape[0]
    m = (n - 1) // 2
    flat = xp.argmax(local)
    dy = (flat // n - m).astype(xp.float64)
    dx = (flat % n - m).astype(xp.float64)
    peak = local.reshape(-1)[flat].astype(xp.float64)
    if tables.upsample > 1:
        ry, rx, rpeak = refine_peak(product, dy, dx, tables)
        bound = tables.max_shift_px
        dy, dx = xp.clip(ry, -bound, bound), xp.clip(rx, -bound, bound)
        peak = xp.maximum(peak, rpeak)
    return dy, dx, peak


def normalised_score(peak, shape: tuple[int, int], power_f, power_t):
    """c H W / sqrt(power_f power_t) (0 if either image is blank), float64 0-d."""
    xp = array_module(peak, power_f, power_t)
    energy = xp.sqrt(power_f * power_t)
    return xp.where(
        energy > 0, peak * (shape[0] * shape[1]) / xp.where(energy > 0, energy, 1.0), 0.0
    )


def _source_taps(n: int, shift, xp):
    """Bilinear taps of out[i] = in(i - shift), coordinates clamped to the frame."""
    s = xp.clip(xp.arange(n, dtype=xp.float64) - shift, 0.0, n - 1.0)
    i0 = xp.floor(s).astype(xp.int64)
    i1 = xp.minimum(i0 + 1, n - 1)
    return i0, i1, (s - i0).astype(xp.float32)


def apply_shift(frame, dy, dx):
    """out[y, x] = frame(y - dy, x - dx), bilinear with replicated edges -> float32 (H, W).

    dy, dx: floats or 0-d arrays of the frame's module (then no host round trip).
    """
    xp = array_module(frame)
    H, W = frame.shape
    f = frame.astype(xp.float32, copy=False)
    y0, y1, wy = _source_taps(H, dy, xp)
    x0, x1, wx = _source_taps(W, dx, xp)
    one = xp.float32(1.0)
    r0, r1 = f[y0], f[y1]
    top = r0[:, x0] * (one - wx) + r0[:, x1] * wx
    bottom = r1[:, x0] * (one - wx) + r1[:, x1] * wx
    return top * (one - wy)[:, None] + bottom * wy[:, None]
