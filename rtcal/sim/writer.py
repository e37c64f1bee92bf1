"""Write a simulation to disk: ``movie.tif`` (uint16, T x H x W) and ``truth.npz``.

The movie is written frame by frame as a multi-page TIFF (BigTIFF above 2 GiB)
while the simulation runs, so memory stays bounded by one chunk. The truth file
holds (K = neurons, T = frames, H x W = frame, J = background components):

    footprints          (K, H, W) float32  A, each normalised to max 1
    calcium             (K, T) float32     C, dF/F of the cell's own resting brightness
    spikes              (K, T) float32     S, spike counts per frame
    shifts              (T, 2) float32     (dy, dx) px, content displacement of frame t
                                           relative to the truth frame; register by -shift
    fps                 ()  float64        frame rate, Hz
    snr                 (K,) float32       single-spike peak / noise std of the
                                           footprint-weighted trace (snr.py)
    rate_hz             (K,) float32       long-run spike rate requested per cell
    baseline            (K,) float32       resting brightness at the footprint max (counts)
    spike_dff           (K,) float32       mean single-spike peak dF/F
    centers             (K, 2) float32     (row, col) px;  radius_px (K,) float32
    tau_rise_s, tau_decay_s (K,) float32   AR(2) kinetics;  g1, g2 (K,) float32
    is_donut            (K,) bool          dark nucleus
    background_mean     (H, W) float32     static background b0 (counts above offset)
    resting_image       (H, W) float32     b0 + sum_k baseline_k A_k (counts above offset)
    background_spatial  (J, H, W) float32  u_j;  background_temporal (T, J) float32 f_j(t)
    gain                (T,) float32       global gain g(t): bleaching x drift
    offset              ()  float64        detector offset (counts) added to every pixel
    mode, seed, noise_level, motion_px     the main settings;  config_json: the whole config
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from rtcal.errors import RtcalError
from rtcal.sim.config import SimConfig
from rtcal.sim.movie import Simulation
from rtcal.sim.snr import resting_scene, single_spike_snr

BIGTIFF_ABOVE_BYTES = 2**31


class SimWriteError(RtcalError):
    """The simulation cannot be written (endless stream, unwritable directory)."""


@dataclass(frozen=True)
class SimPaths:
    movie: Path
    truth: Path


def static_truth(sim: Simulation) -> dict[str, np.ndarray]:
    """Truth that does not depend on time (see the module docstring)."""
    t, cfg = sim.tissue, sim.cfg
    kin = t.kinetics
    crop = t.canvas.crop
    f32 = np.float32
    return {
        "footprints": sim.footprints,
        "fps": np.float64(cfg.fps_hz),
        "snr": single_spike_snr(t, cfg),
        "rate_hz": kin.rate_hz.astype(f32),
        "baseline": t.baseline,
        "spike_dff": kin.spike_dff.astype(f32),
        "centers": t.centers,
        "radius_px": t.radius_px,
        "tau_rise_s": kin.tau_rise_s.astype(f32),
        "tau_decay_s": kin.tau_decay_s.astype(f32),
        "g1": kin.g1.astype(f32),
        "g2": kin.g2.astype(f32),
        "is_donut": t.is_donut,
        "background_mean": crop(t.background.mean.reshape(t.canvas.shape)).astype(f32),
        "resting_image": crop(resting_scene(t)).astype(f32),
        "background_spatial": crop(t.background.spatial.reshape(-1, *t.canvas.shape)),
        "offset": np.float64(cfg.detector.offset_counts),
        "mode": np.str_(cfg.mode),
        "seed": np.int64(cfg.seed),
        "noise_level": np.float64(cfg.noise_level),
        "motion_px": np.float64(cfg.motion_px),
        "n_neurites": np.int64(t.neurites.shape[0]),
        "config_json": np.str_(json.dumps(dataclasses.asdict(cfg))),
    }


def write_simulation(out_dir: str | Path, cfg: SimConfig) -> SimPaths:
    """Simulate ``cfg`` into ``out_dir``/movie.tif and ``out_dir``/truth.npz."""
    import tifffile

    if cfg.n_frames is None:
        raise SimWriteError("SimConfig.n_frames=None: an endless stream cannot be written")
    out = Path(out_dir)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise SimWriteError(f"cannot create output directory {out}: {err}") from err
    paths = SimPaths(out / "movie.tif", out / "truth.npz")
    sim = Simulation(cfg)
    t_total, k = cfg.n_frames, cfg.n_neurons
    calcium = np.zeros((k, t_total), np.float32)
    spikes = np.zeros((k, t_total), np.float32)
    shifts = np.zeros((t_total, 2), np.float32)
    gain = np.zeros(t_total, np.float32)
    bg_temporal = np.zeros((t_total, cfg.background.n_components), np.float32)
    bigtiff = t_total * cfg.height * cfg.width * 2 > BIGTIFF_ABOVE_BYTES
    with tifffile.TiffWriter(paths.movie, bigtiff=bigtiff) as tif:
        for chunk in sim.chunks():
            sl = slice(chunk.start, chunk.start + chunk.images.shape[0])
            for image in chunk.images:
                tif.write(image, contiguous=True, photometric="minisblack")
            calcium[:, sl], spikes[:, sl] = chunk.calcium.T, chunk.spikes.T
            shifts[sl], gain[sl], bg_temporal[sl] = chunk.shifts, chunk.gain, chunk.bg_temporal
    truth = static_truth(sim)
    truth.update(calcium=calcium, spikes=spikes, shifts=shifts, gain=gain,
                 background_temporal=bg_temporal)
    np.savez_compressed(paths.truth, **truth)
    return paths
