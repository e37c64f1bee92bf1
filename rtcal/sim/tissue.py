"""The static tissue of a simulation: cells, neurites, dark somata, background maps.

Everything here is drawn once from ``seed`` and does not change with time:
where the cells are, what they look like, how bright they are at rest, their
kinetics, and the static background maps. Random streams are keyed by
(seed, purpose) so adding a part never changes the others.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp

from rtcal.sim.activity import CellKinetics, draw_kinetics
from rtcal.sim.background import StaticBackground, coarse_level, draw_static_background, vessel_map
from rtcal.sim.config import SimConfig
from rtcal.sim.footprints import (
    Canvas,
    neurite_patch,
    occlusion_map,
    patches_to_csr,
    place_centers,
    soma_patch,
)
from rtcal.sim.motion import max_shift_px

# keys of the static random streams: default_rng([seed, KEY])
_VESSELS, _CELLS, _DARK, _NEURITES, _KINETICS, _BACKGROUND = range(10, 16)
VESSEL_FREE = 0.85  # cell centres only where the vessel transmission exceeds this
DARK_SOMA_SIZE = 0.8  # unlabelled somata (dark holes) relative to labelled ones
NEURITE_RATE_FACTOR = 3.0  # neurites (input from many cells) fire more often than somata


@dataclass(frozen=True)
class Tissue:
    """Static truth and the matrices that render it.

    cells (K, Pc) float32 CSR: footprints on the canvas, max 1 each;
    baseline (K,) resting brightness at the footprint maximum (counts above offset, t=0);
    centers (K, 2) (row, col) in the field of view; radius_px (K,); is_donut (K,) bool;
    neurites (Kn, Pc) CSR and neurite_baseline (Kn,): active non-cell processes;
    kinetics / neurite_kinetics: per-component activity parameters.
    """

    canvas: Canvas
    cells: sp.csr_matrix
    baseline: np.ndarray
    centers: np.ndarray
    radius_px: np.ndarray
    is_donut: np.ndarray
    kinetics: CellKinetics
    neurites: sp.csr_matrix
    neurite_baseline: np.ndarray
    neurite_kinetics: CellKinetics
    background: StaticBackground

    @property
    def n_cells(self) -> int:
        return self.cells.shape[0]


def canvas_for(cfg: SimConfig) -> Canvas:
    """Field of view padded by the largest shift plus 2 px for interpolation."""
    margin = int(np.ceil(max_shift_px(cfg.motion_px))) + 2
    return Canvas(cfg.height, cfg.width, margin)


def _rng(cfg: SimConfig, key: int) -> np.random.Generator:
    return np.random.default_rng([cfg.seed, key])


def _somata(
    cfg: SimConfig, canvas: Canvas, rng: np.random.Generator, n: int,
    allowed: np.ndarray | None, donut_fraction: float, size: float = 1.0,
) -> tuple[list, np.ndarray, np.ndarray, np.ndarray]:
    """n somata: patches, centres (FOV coords), radii (scaled by ``size``), donut flags."""
    radii = size * rng.uniform(cfg.radius_min_px, cfg.radius_max_px, n)
    centers = place_centers(rng, radii, cfg.height, cfg.width,
                            cfg.cells.min_distance_ratio, allowed)
    donut = rng.random(n) < donut_fraction
    patches = [soma_patch(rng, c + canvas.margin, r, d, cfg.cells)
               for c, r, d in zip(centers, radii, donut, strict=True)]
    return patches, centers, radii, donut


def build_tissue(cfg: SimConfig) -> Tissue:
    """Draw the whole static tissue of ``cfg`` (deterministic by cfg.seed)."""
    canvas = canvas_for(cfg)
    bg_rng = _rng(cfg, _VESSELS)
    vessels = vessel_map(bg_rng, canvas.shape, cfg.background.n_vessels,
                         cfg.background.vessel_depth, cfg.background.wide_vessel)
    coarse = coarse_level(bg_rng, canvas, cfg.background)
    allowed = canvas.crop(vessels) > VESSEL_FREE

    rng = _rng(cfg, _CELLS)
    patches, centers, radii, donut = _somata(
        cfg, canvas, rng, cfg.n_neurons, allowed, cfg.cells.donut_fraction)
    cells = patches_to_csr(patches, canvas)
    local = coarse[(centers[:, 0] + canvas.margin).astype(int),
                   (centers[:, 1] + canvas.margin).astype(int)]
    ratio = rng.lognormal(np.log(cfg.cells.brightness_median), cfg.cells.brightness_log_sigma,
                          cfg.n_neurons)
    baseline = ratio * local

    dark_rng = _rng(cfg, _DARK)
    n_dark = int(round(cfg.cells.dark_cells_per_neuron * cfg.n_neurons))
    dark, *_ = _somata(cfg, canvas, dark_rng, n_dark, None, 0.0, size=DARK_SOMA_SIZE)
    strengths = np.concatenate([np.full(len(patches), cfg.cells.neuropil_occlusion),
                                dark_rng.uniform(0.25, 0.6, n_dark)])
    occlusion = occlusion_map(patches + dark, strengths, canvas)

    n_rng = _rng(cfg, _NEURITES)
    n_neurites = int(round(cfg.cells.neurites_per_neuron * cfg.n_neurons))
    neurite_patches = [neurite_patch(n_rng, canvas) for _ in range(n_neurites)]
    neurite_baseline = 0.1 * cfg.background.level * n_rng.lognormal(0, 0.5, n_neurites)

    k_rng = _rng(cfg, _KINETICS)
    kinetics = draw_kinetics(k_rng, cfg.n_neurons, cfg.activity, cfg.fps_hz)
    neurite_params = dataclasses.replace(
        cfg.activity, rate_median_hz=NEURITE_RATE_FACTOR * cfg.activity.rate_median_hz,
        spike_dff_min=2 * cfg.activity.spike_dff_min, spike_dff_max=2 * cfg.activity.spike_dff_max)
    neurite_kinetics = draw_kinetics(k_rng, n_neurites, neurite_params, cfg.fps_hz)

    background = draw_static_background(
        _rng(cfg, _BACKGROUND), canvas, cfg.background, (coarse, vessels, occlusion))
    return Tissue(
        canvas, cells, baseline.astype(np.float32), centers.astype(np.float32),
        radii.astype(np.float32), donut, kinetics, patches_to_csr(neurite_patches, canvas),
        neurite_baseline.astype(np.float32), neurite_kinetics, background,
    )
