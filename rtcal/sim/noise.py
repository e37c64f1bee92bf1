"""Detector: rigid shift of the noise-free scene, photon shot noise, read noise, uint16.

For pixel (i, j) of frame t, with E the bilinearly shifted scene (counts above
offset; motion.py for the sign convention), nu = noise_level, g the gain in
counts per photon, cv the spread of single-photon pulse heights (PMT):

    L_i ~ N(1, (nu line_gain_sd)^2)                                laser power per scan line
    N   ~ Poisson(L_i E / (g nu^2))                                photons
    V   = g nu^2 N + sqrt((g nu^2 cv)^2 N + (nu read_noise)^2) eps,   eps ~ N(0, 1)
    V'_j = (1 - a) V_j + a V'_{j-1}                                amplifier low-pass along
                                                                   the line, a = scan_lowpass
    Y   = round(offset + V'), clipped to [0, 65535] (uint16); a line is dropped
          (all zeros) with probability dropped_line_prob

The Gaussian term is the sum of N pulse heights of mean 1 and CV cv (matched
mean and variance) plus read noise. E[Y] = offset + E and
Var[Y] = nu^2 (g (1 + cv^2) E + read_noise^2) (1 - a) / (1 + a): shot-noise-like;
nu = 0 gives the noise-free scene (no line effects either). Line gain, dropped
lines and the scan low-pass reproduce the real data's anisotropic pixel
correlations (stronger along rows) and its zero rows.

Fast path: one fused Numba kernel (bilinear shift + noise), parallel over
frames. Each frame runs its own SplitMix64 stream seeded from the frame's seed,
so results do not depend on thread scheduling. Normals come from a 2^16-entry
inverse-CDF table (tails cut at about 4.4 sd); Poisson by CDF inversion, normal
approximation above 40 photons. ``render_reference`` is the plain NumPy
version (NumPy's exact Poisson and normal) it is tested against.
"""

from __future__ import annotations

import numba
import numpy as np
from scipy.signal import lfilter
from scipy.special import ndtri

from rtcal.sim.config import DetectorParams
from rtcal.sim.motion import shift_bilinear

_GOLDEN = np.uint64(0x9E3779B97F4A7C15)
_MIX1 = np.uint64(0xBF58476D1CE4E5B9)
_MIX2 = np.uint64(0x94D049BB133111EB)
_NORMAL_BITS = 16
# inverse normal CDF at the centres of 2^16 equal-probability bins (+ one for interpolation)
_NORMAL_TABLE = ndtri((np.arange(2**_NORMAL_BITS + 1) + 0.5) / (2**_NORMAL_BITS + 1))
POISSON_NORMAL_ABOVE = 40.0  # photon means above this use the normal approximation


@numba.njit(cache=True, inline="always")
def _mix64(z):
    """SplitMix64 output function: a bijective 64-bit hash."""
    z = (z ^ (z >> np.uint64(30))) * _MIX1
    z = (z ^ (z >> np.uint64(27))) * _MIX2
    return z ^ (z >> np.uint64(31))


@numba.njit(cache=True, inline="always")
def _splitmix64(state):
    """SplitMix64 (Steele et al. 2014): next state and a uniform in [0, 1)."""
    state = state + _GOLDEN
    return state, float(_mix64(state) >> np.uint64(11)) * (1.0 / 9007199254740992.0)


@numba.njit(cache=True, inline="always")
def _normal(u, table):
    """Standard normal by table inversion with linear interpolation (tails cut at ~4.4 sd)."""
    x = u * (table.size - 1)
    i = int(x)
    return table[i] + (x - i) * (table[i + 1] - table[i])


@numba.njit(cache=True, inline="always")
def _poisson(lam, u, z):
    """Poisson(lam) by CDF inversion of uniform u; normal approximation (from z) above
    POISSON_NORMAL_ABOVE, where the two laws are indistinguishable at these counts."""
    if lam > POISSON_NORMAL_ABOVE:
        return max(np.floor(lam + np.sqrt(lam) * z + 0.5), 0.0)
    p = np.exp(-lam)
    cdf = p
    k = 0.0
    while u > cdf and k < 1000.0:
        k += 1.0
        p *= lam / k
        cdf += p
    return k


@numba.njit(cache=True, parallel=True)
def _render_kernel(scene, gain, shifts, margin, seeds, det, out):
    photon_scale, cv, read_sd, offset, line_sd, drop_p, lowpass, table = det
    n, h, w = out.shape
    for t in numba.prange(n):
        # hash the seed so that frames' streams start far apart in the 2^64 cycle
        state = _mix64(np.uint64(seeds[t]) + _GOLDEN)
        sy, sx = -shifts[t, 0], -shifts[t, 1]
        iy, ix = int(np.floor(sy)), int(np.floor(sx))
        fy, fx = sy - iy, sx - ix
        w00, w01 = (1 - fy) * (1 - fx) * gain[t], (1 - fy) * fx * gain[t]
        w10, w11 = fy * (1 - fx) * gain[t], fy * fx * gain[t]
        for i in range(h):
            r = i + margin + iy
            line_gain = 1.0
            if photon_scale > 0:
                state, u_drop = _splitmix64(state)
                state, u_line = _splitmix64(state)
                if u_drop < drop_p:
                    out[t, i, :] = 0
                    continue
                line_gain = max(1.0 + line_sd * _normal(u_line, table), 0.0)
            prev = 0.0
            for j in range(w):
                c = j + margin + ix
                e = (w00 * scene[t, r, c] + w01 * scene[t, r, c + 1]
                     + w10 * scene[t, r + 1, c] + w11 * scene[t, r + 1, c + 1])
                e = max(e * line_gain, 0.0)
                if photon_scale > 0:
                    state, u1 = _splitmix64(state)
                    state, u2 = _splitmix64(state)
                    k = _poisson(e / photon_scale, u1, _normal(u1, table))
                    # pulse-height spread of k photons + read noise, one Gaussian
                    sd = np.sqrt((photon_scale * cv) ** 2 * k + read_sd**2)
                    v = photon_scale * k + sd * _normal(u2, table)
                    if j > 0:  # amplifier low-pass along the scan line
                        v = (1 - lowpass) * v + lowpass * prev
                    prev = v
                else:
                    v = e
                out[t, i, j] = min(max(np.floor(offset + v + 0.5), 0.0), 65535.0)


def render_frames(
    scene: np.ndarray,
    gain: np.ndarray,
    shifts: np.ndarray,
    margin: int,
    seeds: np.ndarray,
    det: DetectorParams,
    noise_level: float,
    out: np.ndarray,
) -> np.ndarray:
    """Fast path: fill ``out`` (n, H, W) uint16 from ``scene`` (n, Hc, Wc) float32.

    gain (n,) multiplies the scene; shifts (n, 2) (dy, dx) px with |shift| < margin;
    seeds (n,) uint64, one per frame.
    """
    photon_scale = det.gain_counts_per_photon * noise_level**2
    params = (photon_scale, det.photon_amp_cv, det.read_noise_counts * noise_level,
              det.offset_counts, det.line_gain_sd * noise_level, det.dropped_line_prob
              * (noise_level > 0), det.scan_lowpass, _NORMAL_TABLE)
    _render_kernel(scene, np.asarray(gain, np.float64), np.asarray(shifts, np.float64), margin,
                   np.asarray(seeds, np.uint64), params, out)
    return out


def render_reference(
    scene: np.ndarray,
    gain: np.ndarray,
    shifts: np.ndarray,
    margin: int,
    rng: np.random.Generator,
    det: DetectorParams,
    noise_level: float,
) -> np.ndarray:
    """Plain NumPy version of ``render_frames`` (same law, NumPy's random stream)."""
    frames = []
    photon_scale = det.gain_counts_per_photon * noise_level**2
    cv = det.photon_amp_cv
    for t in range(scene.shape[0]):
        e = np.maximum(gain[t] * shift_bilinear(scene[t], shifts[t], margin), 0)
        if photon_scale > 0:
            dropped = rng.random(e.shape[0]) < det.dropped_line_prob
            line = 1 + det.line_gain_sd * noise_level * rng.standard_normal((e.shape[0], 1))
            e = e * np.maximum(line, 0)
            k = rng.poisson(e / photon_scale).astype(np.float64)
            sd = np.sqrt((photon_scale * cv) ** 2 * k + (det.read_noise_counts * noise_level) ** 2)
            v = photon_scale * k + sd * rng.standard_normal(e.shape)
            v = lfilter([1 - det.scan_lowpass], [1, -det.scan_lowpass], v, axis=1,
                        zi=det.scan_lowpass * v[:, :1])[0]
            v = np.where(dropped[:, None], -np.inf, v)
        else:
            v = e
        frames.append(np.clip(np.floor(det.offset_counts + v + 0.5), 0, 65535).astype(np.uint16))
    return np.stack(frames)


def noise_variance(expected: np.ndarray, det: DetectorParams, noise_level: float) -> np.ndarray:
    """Var[Y] for expected signal E (counts above offset), before rounding.

    Pixel noise only: the scan low-pass divides it by (1 + a) / (1 - a)
    (a = scan_lowpass); line gain fluctuations and dropped lines are not counted.
    """
    g, a = det.gain_counts_per_photon, det.scan_lowpass
    white = noise_level**2 * (
        g * (1 + det.photon_amp_cv**2) * np.maximum(expected, 0) + det.read_noise_counts**2
    )
    return white * (1 - a) / (1 + a)
