"""Training windows for the detector, simulated on the fly with known truth.

``make_sample(cfg, seed)`` draws a recording (2p or 1p; density, soma size,
noise, brightness, background, residual motion, frame rate, firing rate all
randomised from ``seed``), simulates a window of T frames of
``size_px`` x ``size_px`` with ``rtcal.sim`` and returns what one training step
needs: the network input (``rtcal.detect.inputs.input_channels``), the true
masks at 1/4 and full resolution, the centre heatmap, and, for the trace loss,
``trace_frames`` frames spread evenly over the window (spatially averaged by
``trace_downsample``) with the true calcium over those frames. The same seed
gives the same sample, bit for bit; training draws seeds from one range and
validation from a disjoint one (``VALIDATION_SEED_BASE``).

Target conventions. A true mask is the footprint binarised at 0.2 x its maximum
(the evaluation convention, DESIGN.md); its 1/4-resolution version is the
fraction of each 4 x 4 block it covers. The centre heatmap at 1/4 resolution is
max_k exp(-|x - round(c_k / 4)|^2 / (2 sigma_k^2)) with sigma_k = radius_k / 4
(the radius in 1/4-resolution pixels), exactly 1 at each centre pixel
(CenterNet, Zhou et al. 2019).
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass

import numpy as np
import torch

from rtcal.detect.inputs import input_channels
from rtcal.detect.losses import WindowTargets
from rtcal.errors import RtcalError
from rtcal.sim import Simulation, make_config, static_truth

VALIDATION_SEED_BASE = 1_000_000_000  # training seeds stay below, validation seeds above
MASK_FRACTION = 0.2  # DESIGN.md: footprints binarised at 0.2 x their maximum
STRIDE = 4  # mask and heatmap resolution of the network


class TrainDataError(RtcalError, ValueError):
    """A training-data setting is out of range; the message names it."""


@dataclass(frozen=True)
class TrainDataConfig:
    """How training windows are drawn. Ranges are (low, high), drawn uniformly
    (log-uniformly for ``noise_level`` and ``rate_scale``).

    size_px: crop side (multiple of 32); window_frames: T; trace_frames: frames kept
    for the trace loss; trace_downsample: their spatial averaging factor;
    p_one_photon: share of 1p windows; coverage: fraction of the field covered by
    somata (sets the neuron count); max_neurons: cap on it; radius_scale: multiplies
    the mode's soma radius range; noise_level: simulator nu; brightness_scale:
    multiplies resting soma brightness; background_scale: multiplies the background
    level; motion_px: residual rigid motion (RMS per axis); fps_hz: frame rate;
    rate_scale: multiplies the median spike rate.
    """

    size_px: int = 128
    window_frames: tuple[int, int] = (200, 500)
    trace_frames: int = 96
    trace_downsample: int = 2
    p_one_photon: float = 0.3
    coverage: tuple[float, float] = (0.04, 0.2)
    max_neurons: int = 48
    radius_scale: tuple[float, float] = (0.7, 1.3)
    noise_level: tuple[float, float] = (0.4, 2.0)
    brightness_scale: tuple[float, float] = (0.5, 1.5)
    background_scale: tuple[float, float] = (0.5, 2.0)
    motion_px: tuple[float, float] = (0.0, 0.5)
    fps_hz: tuple[float, float] = (7.0, 30.0)
    rate_scale: tuple[float, float] = (0.5, 3.0)

    def __post_init__(self) -> None:
        if self.size_px < 64 or self.size_px % 32:
            raise TrainDataError(f"size_px={self.size_px}: must be a multiple of 32, >= 64")
        if self.trace_downsample not in (1, 2, 4):
            raise TrainDataError(f"trace_downsample={self.trace_downsample}: must be 1, 2 or 4")
        if not 0 <= self.p_one_photon <= 1:
            raise TrainDataError(f"p_one_photon={self.p_one_photon}: must lie in [0, 1]")
        if self.max_neurons < 1:
            raise TrainDataError(f"max_neurons={self.max_neurons}: must be >= 1")
        if not 2 <= self.trace_frames <= self.window_frames[0]:
            raise TrainDataError(f"trace_frames={self.trace_frames}: must lie in "
                                 f"[2, window_frames[0]={self.window_frames[0]}]")
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if isinstance(value, tuple) and not (len(value) == 2 and 0 <= value[0] <= value[1]):
                raise TrainDataError(f"{f.name}={value}: must be (low, high) with 0 <= low <= high")
        if self.coverage[1] >= 1 or self.radius_scale[0] <= 0 or self.fps_hz[0] <= 0:
            raise TrainDataError("coverage must stay below 1; radius_scale and fps_hz above 0")


@dataclass(frozen=True)
class TrainSample:
    """One training window (K true neurons, T frames of S x S px, s = S / 4).

    inputs (C, S, S) float32: network input; footprints (K, S, S) float32: truth,
    max 1 each; masks4 (K, s, s) float32 in [0, 1]; centre (1, s, s) float32 heatmap;
    centres (K, 2) float32 (row, col) px; radius_px (K,) float32;
    trace_frames (Tt, S/d, S/d) float32, offset removed, scaled to mean 1;
    calcium (K, Tt) float32 true dF/F on those frames; frame_index (Tt,) int64
    their positions in the window; mode "2p"/"1p"; n_frames T; seed.
    """

    inputs: np.ndarray
    footprints: np.ndarray
    masks4: np.ndarray
    centre: np.ndarray
    centres: np.ndarray
    radius_px: np.ndarray
    trace_frames: np.ndarray
    calcium: np.ndarray
    frame_index: np.ndarray
    mode: str
    n_frames: int
    seed: int


def _uniform(rng: np.random.Generator, bounds: tuple[float, float], log: bool = False) -> float:
    if log and bounds[0] > 0:
        return float(np.exp(rng.uniform(np.log(bounds[0]), np.log(bounds[1]))))
    return float(rng.uniform(*bounds))


def draw_sim_config(cfg: TrainDataConfig, seed: int):
    """The simulator config of window ``seed`` (all randomisation happens here)."""
    rng = np.random.default_rng([seed, 7])
    mode = "1p" if rng.random() < cfg.p_one_photon else "2p"
    base = make_config(mode)
    scale = _uniform(rng, cfg.radius_scale)
    r_min, r_max = base.radius_min_px * scale, base.radius_max_px * scale
    r_mean = 0.5 * (r_min + r_max)
    area = cfg.size_px**2 * _uniform(rng, cfg.coverage)
    n_neurons = int(np.clip(round(area / (math.pi * r_mean**2)), 1, cfg.max_neurons))
    activity = dataclasses.replace(
        base.activity,
        rate_median_hz=base.activity.rate_median_hz * _uniform(rng, cfg.rate_scale, log=True))
    cells = dataclasses.replace(
        base.cells, brightness_median=base.cells.brightness_median
        * _uniform(rng, cfg.brightness_scale))
    background = dataclasses.replace(
        base.background, level=base.background.level * _uniform(rng, cfg.background_scale))
    return make_config(
        mode, height=cfg.size_px, width=cfg.size_px,
        n_frames=int(rng.integers(cfg.window_frames[0], cfg.window_frames[1] + 1)),
        n_neurons=n_neurons, fps_hz=_uniform(rng, cfg.fps_hz), radius_min_px=r_min,
        radius_max_px=r_max, motion_px=_uniform(rng, cfg.motion_px),
        noise_level=_uniform(rng, cfg.noise_level, log=True), seed=int(seed),
        chunk_frames=128, cells=cells, activity=activity, background=background,
    )


def block_mean(images: np.ndarray, factor: int) -> np.ndarray:
    """Average over factor x factor blocks: (..., H, W) -> (..., H/f, W/f) float32."""
    if factor == 1:
        return images.astype(np.float32, copy=False)
    *lead, h, w = images.shape
    blocks = images.reshape(*lead, h // factor, factor, w // factor, factor)
    return blocks.mean(axis=(-3, -1), dtype=np.float64).astype(np.float32)


def centre_heatmap(centres: np.ndarray, radius_px: np.ndarray, size4: int) -> np.ndarray:
    """Heatmap (1, size4, size4) float32 at 1/4 resolution (module docstring)."""
    heat = np.zeros((size4, size4), np.float32)
    grid = np.arange(size4, dtype=np.float64)
    for (row, col), radius in zip(centres, radius_px, strict=True):
        pr = int(np.clip(round((row + 0.5) / STRIDE - 0.5), 0, size4 - 1))
        pc = int(np.clip(round((col + 0.5) / STRIDE - 0.5), 0, size4 - 1))
        sigma = max(radius / STRIDE, 0.5)
        g = np.exp(-((grid[:, None] - pr) ** 2 + (grid[None, :] - pc) ** 2) / (2 * sigma**2))
        np.maximum(heat, g.astype(np.float32), out=heat)
    return heat[None]


def make_sample(cfg: TrainDataConfig, seed: int) -> TrainSample:
    """Simulate window ``seed`` and build its training sample (deterministic)."""
    sim_cfg = draw_sim_config(cfg, seed)
    sim = Simulation(sim_cfg)
    chunks = list(sim.chunks())
    window = np.concatenate([c.images for c in chunks]).astype(np.float32)  # (T, S, S)
    calcium = np.concatenate([c.calcium for c in chunks])  # (T, K)
    truth = static_truth(sim)
    footprints = truth["footprints"]
    masks = footprints >= MASK_FRACTION * footprints.max(axis=(1, 2), keepdims=True)
    masks &= footprints > 0
    index = np.round(np.linspace(0, window.shape[0] - 1, cfg.trace_frames)).astype(np.int64)
    frames = block_mean(window[index] - np.float32(truth["offset"]), cfg.trace_downsample)
    frames /= max(float(frames.mean()), 1e-6)
    return TrainSample(
        inputs=input_channels(window).astype(np.float32),
        footprints=footprints,
        masks4=block_mean(masks.astype(np.float32), STRIDE),
        centre=centre_heatmap(truth["centers"], truth["radius_px"], cfg.size_px // STRIDE),
        centres=truth["centers"].astype(np.float32),
        radius_px=truth["radius_px"].astype(np.float32),
        trace_frames=frames,
        calcium=np.ascontiguousarray(calcium[index].T, np.float32),
        frame_index=index,
        mode=sim_cfg.mode,
        n_frames=int(window.shape[0]),
        seed=int(seed),
    )


def _dihedral(images: np.ndarray, view: int) -> np.ndarray:
    """One of the 8 symmetries of the square on the last two axes (view 0: identity)."""
    out = np.rot90(images, k=view % 4, axes=(-2, -1))
    return np.ascontiguousarray(out[..., ::-1] if view >= 4 else out)


def _dihedral_points(rc: np.ndarray, size: int, view: int) -> np.ndarray:
    """(row, col) px moved as ``_dihedral`` moves the pixels of a size x size image."""
    r, c = rc[:, 0], rc[:, 1]
    for _ in range(view % 4):  # np.rot90 (counter-clockwise): (r, c) -> (size-1-c, r)
        r, c = size - 1 - c, r
    if view >= 4:
        c = size - 1 - c
    return np.stack([r, c], axis=1).astype(np.float32)


def transform_sample(sample: TrainSample, view: int) -> TrainSample:
    """The sample seen rotated / mirrored (``view`` in 0..7); traces are unchanged.

    Every summary image and key frame commutes with these symmetries (up to the
    pixel subsample of the robust normalisation in ``inputs``), so this is what
    simulating the transformed window would give, at no simulation cost.
    """
    if view == 0:
        return sample
    size = sample.inputs.shape[-1]
    return dataclasses.replace(
        sample,
        **{name: _dihedral(getattr(sample, name), view)
           for name in ("inputs", "footprints", "masks4", "centre", "trace_frames")},
        centres=_dihedral_points(sample.centres, size, view),
    )


@dataclass(frozen=True)
class TrainBatch:
    """A batch on the training device: inputs (B, C, S, S); centre (B, 1, s, s);
    targets: one ``WindowTargets`` per window; samples: the numpy originals."""

    inputs: torch.Tensor
    centre: torch.Tensor
    targets: list[WindowTargets]
    samples: list[TrainSample]


def collate(samples: list[TrainSample], device: str | torch.device = "cpu") -> TrainBatch:
    """Stack samples into a ``TrainBatch`` on ``device``."""
    def to(x: np.ndarray) -> torch.Tensor:
        return torch.from_numpy(np.ascontiguousarray(x)).to(device)

    return TrainBatch(
        inputs=to(np.stack([s.inputs for s in samples])),
        centre=to(np.stack([s.centre for s in samples])),
        targets=[WindowTargets(to(s.masks4), to(s.trace_frames), to(s.calcium),
                               s.inputs.shape[-1] // s.trace_frames.shape[-1])
                 for s in samples],
        samples=samples,
    )


def training_seeds(base_seed: int, group: int, batch_size: int) -> list[int]:
    """Seeds of the windows of step group ``group``: never repeat within a run."""
    start = base_seed * 10_000_000 + group * batch_size
    if start + batch_size >= VALIDATION_SEED_BASE:
        raise TrainDataError(f"base_seed={base_seed}: too large, seeds would reach validation")
    return list(range(start, start + batch_size))


def window_plan(base_seed: int, step: int, batch_size: int, views_per_window: int
                ) -> list[tuple[int, int]]:
    """(seed, view) of each window of training step ``step``.

    The same ``batch_size`` windows serve ``views_per_window`` consecutive steps,
    each time under a different symmetry of the square (``transform_sample``), so a
    simulated window is paid for once and seen several ways.
    """
    group, use = divmod(step, views_per_window)
    plan = []
    for seed in training_seeds(base_seed, group, batch_size):
        order = np.random.default_rng([seed, 8]).permutation(8)
        plan.append((seed, int(order[use % 8])))
    return plan


def validation_seeds(n_windows: int) -> list[int]:
    """Held-out seeds (disjoint from every training seed)."""
    return list(range(VALIDATION_SEED_BASE, VALIDATION_SEED_BASE + n_windows))
