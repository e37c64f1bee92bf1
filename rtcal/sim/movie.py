"""The Simulation: a tissue plus its dynamics, rendered chunk by chunk into uint16 frames.

Frames are generated in chunks of ``cfg.chunk_frames`` (vectorised: one sparse
product of activity x footprints per chunk, one low-rank product for the
background, one fused Numba kernel for shift + noise). All time-dependent
state (AR(2) calcium, rate modulation, bursts, background OU processes, drift,
bleaching clock, motion) is carried from chunk to chunk, so a stream may be
endless. Chunk c draws from generators keyed by (seed, purpose, c): the output
is a function of the config alone, whoever consumes it.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from itertools import count

import numpy as np
import scipy.sparse as sp

from rtcal.sim.activity import ActivityModel
from rtcal.sim.background import BackgroundModel
from rtcal.sim.config import SimConfig
from rtcal.sim.footprints import truth_footprints
from rtcal.sim.motion import MotionModel
from rtcal.sim.noise import render_frames
from rtcal.sim.scene import compose_scene
from rtcal.sim.tissue import Tissue, build_tissue

# keys of the per-chunk random streams: default_rng([seed, KEY, chunk])
_ACTIVITY, _NEURITE_ACTIVITY, _BACKGROUND, _MOTION, _NOISE = range(1, 6)


@dataclass(frozen=True)
class SimFrame:
    """One simulated frame.

    index: frame number from 0; image (H, W) uint16; calcium (K,) float32 dF/F;
    spikes (K,) float32 counts; shift (2,) float32 (dy, dx) px of the content
    relative to the truth frame (register by shifting by -shift).
    """

    index: int
    image: np.ndarray
    calcium: np.ndarray
    spikes: np.ndarray
    shift: np.ndarray


@dataclass(frozen=True)
class SimChunk:
    """Frames [start, start + n): images (n, H, W) uint16; calcium, spikes (n, K) float32;
    shifts (n, 2) float32; gain (n,) float32 bleaching x drift; bg_temporal (n, J) float32."""

    start: int
    images: np.ndarray
    calcium: np.ndarray
    spikes: np.ndarray
    shifts: np.ndarray
    gain: np.ndarray
    bg_temporal: np.ndarray


class Simulation:
    """A simulated recording with known truth.

    >>> sim = Simulation(make_config(n_frames=100))
    >>> for frame in sim.stream(): ...
    """

    def __init__(self, cfg: SimConfig) -> None:
        self.cfg = cfg
        self.tissue: Tissue = build_tissue(cfg)
        self._footprints: np.ndarray | None = None

    @property
    def footprints(self) -> np.ndarray:
        """Truth footprints A (K, H, W) float32, each normalised to max 1."""
        if self._footprints is None:
            self._footprints = truth_footprints(self.tissue.cells, self.tissue.canvas)
        return self._footprints

    def stream(self) -> Iterator[SimFrame]:
        """Frames one at a time, from frame 0 (endless when cfg.n_frames is None)."""
        for chunk in self.chunks():
            for i in range(chunk.images.shape[0]):
                yield SimFrame(chunk.start + i, chunk.images[i], chunk.calcium[i],
                               chunk.spikes[i], chunk.shifts[i])

    def chunks(self) -> Iterator[SimChunk]:
        """Chunks of cfg.chunk_frames frames (the last may be shorter), from frame 0."""
        cfg, tissue = self.cfg, self.tissue
        cells = ActivityModel(tissue.kinetics, cfg.activity, cfg.fps_hz)
        neurites = ActivityModel(tissue.neurite_kinetics, cfg.activity, cfg.fps_hz)
        background = BackgroundModel(cfg.background, cfg.fps_hz)
        motion = MotionModel(cfg.motion_px, cfg.fps_hz)
        weights = _weighted_components(tissue)
        for c in count():
            start = c * cfg.chunk_frames
            if cfg.n_frames is not None and start >= cfg.n_frames:
                return
            n = cfg.chunk_frames if cfg.n_frames is None else min(
                cfg.chunk_frames, cfg.n_frames - start)
            act = cells.step(self._rng(_ACTIVITY, c), n)
            act_n = neurites.step(self._rng(_NEURITE_ACTIVITY, c), n)
            bg = background.step(self._rng(_BACKGROUND, c), n, act.population)
            shifts = motion.step(self._rng(_MOTION, c), n)
            levels = np.hstack([1 + act.calcium, 1 + act_n.calcium])  # (n, K + Kn)
            scene = self._scene(weights, levels, bg.temporal)
            seeds = self._rng(_NOISE, c).integers(0, 2**63, size=n, dtype=np.uint64)
            images = np.empty((n, cfg.height, cfg.width), np.uint16)
            render_frames(scene, bg.gain, shifts, tissue.canvas.margin, seeds, cfg.detector,
                          cfg.noise_level, images)
            yield SimChunk(start, images, act.calcium, act.spikes, shifts,
                           bg.gain.astype(np.float32), bg.temporal.astype(np.float32))

    def _rng(self, key: int, chunk: int) -> np.random.Generator:
        return np.random.default_rng([self.cfg.seed, key, chunk])

    def _scene(self, weights: sp.csr_matrix, levels: np.ndarray, temporal: np.ndarray
               ) -> np.ndarray:
        """Noise-free canvas scene (n, Hc, Wc) float32 before the global gain (scene.py)."""
        bg = self.tissue.background
        scene = compose_scene(bg.mean, bg.spatial, temporal, levels, weights)
        return scene.reshape(levels.shape[0], *self.tissue.canvas.shape)


def _weighted_components(tissue: Tissue) -> sp.csr_matrix:
    """diag(beta) A for cells and neurites stacked: sparse (K + Kn, Pc) float32, CSR."""
    scaled = [sp.diags(tissue.baseline) @ tissue.cells,
              sp.diags(tissue.neurite_baseline) @ tissue.neurites]
    return sp.vstack(scaled).tocsr().astype(np.float32)
