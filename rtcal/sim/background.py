"""Background b/f: neuropil (low rank, tied to population activity), vessels, drift, bleaching.

Scene of frame t on the canvas (counts above the detector offset):

    E(t) = g(t) [ b0 + sum_j f_j(t) u_j + sum_k a_k beta_k (1 + C_k(t)) ]

    b0    = level (1 + c_s G_L) vig (1 + c_t G_fine) V O  static neuropil brightness
    u_0   = b0 (1 + 0.3 G'), u_j = b0 G_j (j >= 1)        spatial components (smooth)
    f_0   = fluct_shared * P(t)                           P: population drive (activity.py)
    f_j   = fluct_other * OU_j(t)                         unit-variance OU, tau = fluct_tau_s
    g(t)  = (floor + (1 - floor) exp(-t / tau_bleach)) (1 + drift(t))

G are zero-mean, unit-std Gaussian random fields, V the vessel transmission
map (dark, curvy, tapered vessels and a wide out-of-focus shadow), O the soma
occlusion map (footprints.py). Vessels darken the neuropil only: cells are
placed off the vessels, so the truth footprints stay exact.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.ndimage import distance_transform_edt, gaussian_filter

from rtcal.sim.config import BackgroundParams
from rtcal.sim.footprints import Canvas

CURVATURE_RAD_PER_STEP = 0.012  # vessel heading change per 0.5 px step (std)


def smooth_field(rng: np.random.Generator, shape: tuple[int, int], scale_px: float) -> np.ndarray:
    """Zero-mean, unit-std Gaussian random field (H, W) float64 with correlation length scale_px.

    White noise low-passed in Fourier space by exp(-(2 pi f scale)^2 / 2) (periodic).
    """
    noise = rng.standard_normal(shape)
    fy = np.fft.fftfreq(shape[0])[:, None]
    fx = np.fft.rfftfreq(shape[1])[None, :]
    transfer = np.exp(-0.5 * (2 * np.pi * scale_px) ** 2 * (fy**2 + fx**2))
    field = np.fft.irfft2(np.fft.rfft2(noise) * transfer, s=shape)
    field -= field.mean()
    return field / max(field.std(), 1e-12)


def _vessel_path(rng: np.random.Generator, shape: tuple[int, int]) -> np.ndarray:
    """Centre line (n, 2) of a vessel entering from a random edge and wandering across."""
    h, w = shape
    side = rng.integers(4)
    start = [(0, rng.uniform(0, w)), (h - 1, rng.uniform(0, w)),
             (rng.uniform(0, h), 0), (rng.uniform(0, h), w - 1)][side]
    heading = [np.pi / 2, -np.pi / 2, 0.0, np.pi][side] + rng.normal(0, 0.4)
    n_steps = int(2.5 * (h + w))
    turn = gaussian_filter(rng.normal(0, 1, n_steps), 20)  # smooth curvature
    angles = heading + np.cumsum(turn * (CURVATURE_RAD_PER_STEP / max(turn.std(), 1e-12)))
    steps = 0.5 * np.stack([np.sin(angles), np.cos(angles)], axis=1)
    return np.asarray(start) + np.cumsum(steps, axis=0)


def vessel_map(
    rng: np.random.Generator, shape: tuple[int, int], n_vessels: int, depth: float, wide: bool
) -> np.ndarray:
    """Transmission map (H, W) float64 in (0, 1]: 1 - depth inside vessels, soft edges."""
    out = np.ones(shape)
    specs = [(rng.uniform(1.8, 3.5), rng.uniform(0.8, 1.5), depth * rng.uniform(0.6, 1.0), 0.0)
             for _ in range(n_vessels)]
    if wide:
        specs.append((rng.uniform(8, 14), rng.uniform(6, 9), 0.35 * depth, 6.0))
    for radius_start, radius_end, dark, blur in specs:
        path = _vessel_path(rng, shape)
        inside = (path[:, 0] >= 0) & (path[:, 0] < shape[0]) & (path[:, 1] >= 0) & (
            path[:, 1] < shape[1])
        if not inside.any():
            continue
        radii = np.linspace(radius_start, radius_end, len(path))[inside]  # tapering
        path = path[inside]
        centre = np.ones(shape, bool)
        pix = path.astype(int)
        centre[pix[:, 0], pix[:, 1]] = False
        radius_img = np.zeros(shape)
        radius_img[pix[:, 0], pix[:, 1]] = radii
        dist, (ir, ic) = distance_transform_edt(centre, return_indices=True)
        profile = 0.5 * (1 + np.tanh((radius_img[ir, ic] - dist) / 0.8))
        if blur:
            profile = gaussian_filter(profile, blur)
        out *= 1 - dark * profile
    return out


def coarse_level(rng: np.random.Generator, canvas: Canvas, p: BackgroundParams) -> np.ndarray:
    """level (1 + c_s G_L) (1 - vignette d^2 / 2) (Hc, Wc): the smooth background brightness,
    d the distance from the centre of the field of view in half-widths (1 at the
    middle of an edge, sqrt 2 at a corner).

    Drawn before the cells, which take their resting brightness from it.
    """
    coarse = 1 + p.spatial_contrast * smooth_field(rng, canvas.shape, p.spatial_scale_px)
    rows = (np.arange(canvas.shape[0]) - (canvas.shape[0] - 1) / 2) / (canvas.height / 2)
    cols = (np.arange(canvas.shape[1]) - (canvas.shape[1] - 1) / 2) / (canvas.width / 2)
    vignette = 1 - 0.5 * p.vignette * (rows[:, None] ** 2 + cols[None, :] ** 2)
    return p.level * np.clip(coarse, 0.2, None) * np.clip(vignette, 0.2, None)


@dataclass(frozen=True)
class StaticBackground:
    """Static background maps on the canvas, flattened (pixel = row * Wc + col).

    mean (P,) float32 b0; spatial (J, P) float32 components u_j; vessels (Hc, Wc)
    float32 transmission.
    """

    mean: np.ndarray
    spatial: np.ndarray
    vessels: np.ndarray


def draw_static_background(
    rng: np.random.Generator,
    canvas: Canvas,
    p: BackgroundParams,
    maps: tuple[np.ndarray, np.ndarray, np.ndarray],
) -> StaticBackground:
    """b0 and u_j for a canvas from ``maps`` = (coarse_level, vessel_map,
    footprints.occlusion_map), each (Hc, Wc)."""
    shape = canvas.shape
    coarse, vessels, occlusion = maps
    fine = 1 + p.texture_contrast * smooth_field(rng, shape, 1.2)
    b0 = coarse * np.clip(fine, 0.2, None) * vessels * occlusion
    spatial = [b0 * np.clip(1 + 0.3 * smooth_field(rng, shape, p.spatial_scale_px), 0, None)]
    spatial += [b0 * smooth_field(rng, shape, 0.6 * p.spatial_scale_px)
                for _ in range(p.n_components - 1)]
    return StaticBackground(
        b0.astype(np.float32).ravel(),
        np.stack(spatial).reshape(p.n_components, -1).astype(np.float32),
        vessels.astype(np.float32),
    )


@dataclass(frozen=True)
class BackgroundChunk:
    """temporal (n, J) float64 f_j(t); gain (n,) float64 g(t) = bleaching x drift."""

    temporal: np.ndarray
    gain: np.ndarray


class BackgroundModel:
    """Temporal background state (OU components, drift, bleaching clock) across chunks."""

    def __init__(self, p: BackgroundParams, fps_hz: float) -> None:
        self.p, self.dt = p, 1.0 / fps_hz
        self.rho = np.exp(-self.dt / p.fluct_tau_s)
        self.rho_drift = np.exp(-self.dt / p.drift_tau_s)
        self.ou = None
        self.drift = 0.0
        self.frame = 0

    def step(
        self, rng: np.random.Generator, n_frames: int, population: np.ndarray
    ) -> BackgroundChunk:
        """Advance ``n_frames``; ``population`` (n,) is ActivityChunk.population."""
        p = self.p
        if self.ou is None:  # start in the stationary state
            self.ou = rng.normal(size=p.n_components - 1)
            self.drift = float(rng.normal(0, p.drift_fraction))
        temporal = np.zeros((n_frames, p.n_components))
        drift = np.zeros(n_frames)
        innov, innov_d = np.sqrt(1 - self.rho**2), np.sqrt(1 - self.rho_drift**2)
        for t in range(n_frames):
            self.ou = self.rho * self.ou + innov * rng.normal(size=self.ou.size)
            self.drift = self.rho_drift * self.drift + innov_d * p.drift_fraction * rng.normal()
            temporal[t, 0] = p.fluct_shared * population[t]
            temporal[t, 1:] = p.fluct_other * self.ou
            drift[t] = self.drift
        time_s = (self.frame + np.arange(n_frames)) * self.dt
        floor = 1 - p.bleach_fraction
        bleach = floor + (1 - floor) * np.exp(-time_s / p.bleach_tau_s)
        self.frame += n_frames
        return BackgroundChunk(temporal, bleach * np.maximum(1 + drift, 0.5))
