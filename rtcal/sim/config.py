"""Configuration of the simulator: one frozen dataclass per part, validated without I/O.

``SimConfig`` holds the recording (mode, size, length, frame rate, number of
neurons, motion, noise, seed) and one parameter block per model part:

- ``CellParams``       footprint shapes and resting brightness    (footprints.py)
- ``ActivityParams``   spikes and calcium kinetics                (activity.py)
- ``BackgroundParams`` neuropil, vessels, drift, bleaching        (background.py)
- ``DetectorParams``   photon statistics, read noise, offset      (noise.py)

Each module sees only its own block. ``make_config(mode, **overrides)`` is the
one place that picks the mode-specific blocks (2p vs 1p); nothing here is ever
rewritten after construction: a bad value raises ``SimConfigError`` naming the
field and the value.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, fields

from rtcal.errors import RtcalError

MODES = ("2p", "1p")


class SimConfigError(RtcalError, ValueError):
    """A simulator setting is out of range; the message names the field and value."""


def _bad(owner: str, name: str, value: object, why: str) -> SimConfigError:
    return SimConfigError(f"{owner}.{name}={value!r}: {why}")


def _check_positive(obj: object, *names: str) -> None:
    for name in names:
        value = getattr(obj, name)
        if not (isinstance(value, (int, float)) and math.isfinite(value) and value > 0):
            raise _bad(type(obj).__name__, name, value, "must be a finite number > 0")


def _check_nonneg(obj: object, *names: str) -> None:
    for name in names:
        value = getattr(obj, name)
        if not (isinstance(value, (int, float)) and math.isfinite(value) and value >= 0):
            raise _bad(type(obj).__name__, name, value, "must be a finite number >= 0")


def _check_fraction(obj: object, *names: str, upper_open: bool = False) -> None:
    for name in names:
        value = getattr(obj, name)
        ok = isinstance(value, (int, float)) and 0 <= value and (
            value < 1 if upper_open else value <= 1
        )
        if not ok:
            bound = "[0, 1)" if upper_open else "[0, 1]"
            raise _bad(type(obj).__name__, name, value, f"must lie in {bound}")


def _check_order(obj: object, low: str, high: str) -> None:
    if getattr(obj, low) > getattr(obj, high):
        limit = f"must not exceed {high}={getattr(obj, high)!r}"
        raise _bad(type(obj).__name__, low, getattr(obj, low), limit)


@dataclass(frozen=True)
class CellParams:
    """Soma footprints and resting brightness.

    Radii are drawn uniformly in [radius_min_px, radius_max_px] (SimConfig).
    Shape: ellipse with axis ratio in [1 - anisotropy, 1], random orientation,
    boundary radius modulated by angular Fourier modes 2..4 with relative std
    ``roughness``, soft edge of width ``edge_px``, optionally Gaussian-blurred by
    ``blur_px`` (1p). A fraction ``donut_fraction`` has a dark nucleus of relative
    radius ``nucleus_ratio`` (fluorescence there = 1 - nucleus_depth).
    Resting brightness at the footprint maximum = brightness_ratio x local
    background, ratio log-normal(median, log_sigma).
    """

    donut_fraction: float = 0.65
    nucleus_ratio: float = 0.55
    nucleus_depth: float = 0.6
    anisotropy: float = 0.3
    roughness: float = 0.07
    edge_px: float = 0.6
    blur_px: float = 0.0
    min_distance_ratio: float = 1.2
    brightness_median: float = 0.75
    brightness_log_sigma: float = 0.8
    neuropil_occlusion: float = 0.7
    dark_cells_per_neuron: float = 0.4
    neurites_per_neuron: float = 3.0

    def __post_init__(self) -> None:
        _check_fraction(self, "donut_fraction", "nucleus_depth", "neuropil_occlusion")
        _check_fraction(self, "nucleus_ratio", "anisotropy", upper_open=True)
        _check_nonneg(
            self, "roughness", "blur_px", "brightness_log_sigma",
            "dark_cells_per_neuron", "neurites_per_neuron", "min_distance_ratio",
        )
        _check_positive(self, "edge_px", "brightness_median")
        if self.roughness > 0.3:
            raise _bad("CellParams", "roughness", self.roughness, "must be <= 0.3")


@dataclass(frozen=True)
class ActivityParams:
    """Spike trains and calcium kinetics.

    Rate of cell k: log-normal, median ``rate_median_hz``, log-std ``rate_log_sigma``,
    clipped to ``rate_max_hz``. Intensity lambda_k(t) = r_k (1-eta) exp(z(t) - s_s^2/2)
    exp(z_k(t) - s_c^2/2) + excitation_k(t): z, z_k are OU processes in log-rate (shared and
    per-cell, std ``shared_log_sigma`` / ``cell_log_sigma``, time constant
    ``modulation_tau_s``); each spike adds ``burst_branching`` (= eta, expected
    extra spikes) with exponential kernel ``burst_tau_s``. Calcium: AR(2) with rise
    ``tau_rise_s``, decay uniform in [tau_decay_min_s, tau_decay_max_s]; mean
    single-spike peak dF/F log-uniform in [spike_dff_min, spike_dff_max], per-spike
    amplitude gamma-distributed with coefficient of variation ``spike_amp_cv``.
    """

    rate_median_hz: float = 0.12
    rate_log_sigma: float = 1.3
    rate_max_hz: float = 5.0
    burst_branching: float = 0.6
    burst_tau_s: float = 0.15
    shared_log_sigma: float = 0.7
    cell_log_sigma: float = 0.6
    modulation_tau_s: float = 3.0
    tau_rise_s: float = 0.05
    tau_decay_min_s: float = 0.4
    tau_decay_max_s: float = 1.5
    spike_dff_min: float = 0.2
    spike_dff_max: float = 1.0
    spike_amp_cv: float = 0.3

    def __post_init__(self) -> None:
        _check_positive(
            self, "rate_median_hz", "rate_max_hz", "burst_tau_s", "modulation_tau_s",
            "tau_rise_s", "tau_decay_min_s", "tau_decay_max_s", "spike_dff_min",
            "spike_dff_max",
        )
        _check_nonneg(self, "rate_log_sigma", "shared_log_sigma", "cell_log_sigma",
                      "spike_amp_cv")
        _check_fraction(self, "burst_branching", upper_open=True)
        _check_order(self, "tau_decay_min_s", "tau_decay_max_s")
        _check_order(self, "spike_dff_min", "spike_dff_max")
        if self.tau_rise_s >= self.tau_decay_min_s:
            raise _bad("ActivityParams", "tau_rise_s", self.tau_rise_s,
                       f"must be < tau_decay_min_s={self.tau_decay_min_s}")


@dataclass(frozen=True)
class BackgroundParams:
    """Neuropil / out-of-focus background, vessels, drift and bleaching.

    Static background: mean ``level`` counts, smooth field of relative std
    ``spatial_contrast`` (scale ``spatial_scale_px``), darker towards the edges by
    up to ``vignette`` at the corners, times fine texture of relative
    std ``texture_contrast``; darkened by ``n_vessels`` curvy tapered vessels and
    one wide out-of-focus vessel shadow when ``wide_vessel`` is set.
    Fluctuation: ``n_components`` smooth spatial maps; component 0 follows the
    shared population drive (relative std ``fluct_shared``), the others are OU
    processes (relative std ``fluct_other``, time constant ``fluct_tau_s``).
    Global gain g(t) = (floor + (1-floor) exp(-t/bleach_tau_s)) (1 + drift(t)),
    floor = 1 - bleach_fraction, drift an OU of std ``drift_fraction`` and time
    constant ``drift_tau_s``.
    """

    level: float = 345.0
    spatial_contrast: float = 0.12
    spatial_scale_px: float = 40.0
    texture_contrast: float = 0.12
    n_vessels: int = 2
    vessel_depth: float = 0.6
    wide_vessel: bool = True
    n_components: int = 3
    fluct_shared: float = 0.12
    vignette: float = 0.3
    fluct_other: float = 0.02
    fluct_tau_s: float = 1.5
    drift_fraction: float = 0.01
    drift_tau_s: float = 60.0
    bleach_fraction: float = 0.3
    bleach_tau_s: float = 1800.0

    def __post_init__(self) -> None:
        _check_positive(self, "level", "spatial_scale_px", "fluct_tau_s", "drift_tau_s",
                        "bleach_tau_s")
        _check_nonneg(self, "spatial_contrast", "texture_contrast", "fluct_shared",
                      "fluct_other", "drift_fraction")
        _check_fraction(self, "vignette")
        _check_fraction(self, "vessel_depth")
        _check_fraction(self, "bleach_fraction", upper_open=True)
        for name in ("n_vessels", "n_components"):
            value = getattr(self, name)
            if not isinstance(value, int) or value < (1 if name == "n_components" else 0):
                raise _bad("BackgroundParams", name, value, "must be an int >= "
                           + ("1" if name == "n_components" else "0"))


@dataclass(frozen=True)
class DetectorParams:
    """Photon statistics and electronics (noise.py has the exact law).

    Expected signal E (counts above offset) becomes N ~ Poisson(E / (gain nu^2))
    photons (nu = SimConfig.noise_level), each a pulse of mean gain nu^2 and CV
    ``photon_amp_cv`` (PMT), plus Gaussian read noise nu x ``read_noise_counts``,
    plus ``offset_counts``. Scanning effects: per-line gain std ``line_gain_sd``,
    dropped (zero) lines with probability ``dropped_line_prob``, AR(1) low-pass
    ``scan_lowpass`` along each line. Defaults fit the real Neurofinder crop.
    """

    gain_counts_per_photon: float = 120.0
    photon_amp_cv: float = 0.5
    read_noise_counts: float = 4.0
    offset_counts: float = 10.0
    line_gain_sd: float = 0.035
    dropped_line_prob: float = 0.009
    scan_lowpass: float = 0.05

    def __post_init__(self) -> None:
        _check_positive(self, "gain_counts_per_photon")
        _check_nonneg(self, "photon_amp_cv", "read_noise_counts", "offset_counts",
                      "line_gain_sd")
        _check_fraction(self, "dropped_line_prob", "scan_lowpass", upper_open=True)
        if self.offset_counts > 60000:
            raise _bad("DetectorParams", "offset_counts", self.offset_counts, "must be <= 60000")


@dataclass(frozen=True)
class SimConfig:
    """A simulated recording. ``n_frames=None`` means an endless stream.

    ``motion_px``: RMS rigid displacement per axis (jitter + slow drift; brief
    twitches of ~4 x motion_px come on top); 0 = no motion.
    ``noise_level``: nu, scales the noise std relative to the signal by changing
    the photon budget (1 = realistic, 0 = noiseless, 2 = a quarter of the photons).
    """

    mode: str = "2p"
    height: int = 256
    width: int = 256
    n_frames: int | None = 1000
    n_neurons: int = 100
    fps_hz: float = 30.0
    radius_min_px: float = 4.5
    radius_max_px: float = 7.5
    motion_px: float = 1.0
    noise_level: float = 1.0
    seed: int = 0
    chunk_frames: int = 64
    cells: CellParams = field(default_factory=CellParams)
    activity: ActivityParams = field(default_factory=ActivityParams)
    background: BackgroundParams = field(default_factory=BackgroundParams)
    detector: DetectorParams = field(default_factory=DetectorParams)

    def __post_init__(self) -> None:
        if self.mode not in MODES:
            raise _bad("SimConfig", "mode", self.mode, f"must be one of {MODES}")
        for name in ("height", "width", "n_neurons", "chunk_frames", "seed"):
            value = getattr(self, name)
            low = 0 if name in ("n_neurons", "seed") else (1 if name == "chunk_frames" else 16)
            if isinstance(value, bool) or not isinstance(value, int) or value < low:
                raise _bad("SimConfig", name, value, f"must be an int >= {low}")
        if self.n_frames is not None and (
            isinstance(self.n_frames, bool) or not isinstance(self.n_frames, int)
            or self.n_frames < 1
        ):
            raise _bad("SimConfig", "n_frames", self.n_frames, "must be an int >= 1 or None")
        _check_positive(self, "fps_hz", "radius_min_px", "radius_max_px")
        _check_nonneg(self, "motion_px", "noise_level")
        _check_order(self, "radius_min_px", "radius_max_px")
        if 2 * self.radius_max_px > min(self.height, self.width) / 2:
            raise _bad("SimConfig", "radius_max_px", self.radius_max_px,
                       f"a cell must fit in a quarter of the {self.height}x{self.width} frame")
        for name, kind in (("cells", CellParams), ("activity", ActivityParams),
                           ("background", BackgroundParams), ("detector", DetectorParams)):
            if not isinstance(getattr(self, name), kind):
                raise _bad("SimConfig", name, getattr(self, name), f"must be a {kind.__name__}")

    @property
    def is_endless(self) -> bool:
        return self.n_frames is None


def _one_photon_blocks() -> dict[str, object]:
    """Microendoscope (CNMF-E-like): big blurry cells on a bright smooth background."""
    return {
        "radius_min_px": 7.0,
        "radius_max_px": 11.0,
        "fps_hz": 20.0,
        "cells": CellParams(
            donut_fraction=0.0, anisotropy=0.25, roughness=0.05, edge_px=1.5, blur_px=2.0,
            min_distance_ratio=1.0, brightness_median=0.08, brightness_log_sigma=0.4,
            neuropil_occlusion=0.0, dark_cells_per_neuron=0.0, neurites_per_neuron=0.0,
        ),
        "activity": ActivityParams(rate_median_hz=0.2, rate_log_sigma=1.0, spike_dff_min=0.5,
                                   spike_dff_max=1.5),
        "background": BackgroundParams(
            level=1500.0, spatial_contrast=0.35, spatial_scale_px=50.0, texture_contrast=0.0,
            n_vessels=4, vessel_depth=0.25, wide_vessel=False, n_components=6, vignette=0.4,
            fluct_shared=0.08, fluct_other=0.06, fluct_tau_s=2.0, bleach_fraction=0.4,
            bleach_tau_s=1200.0,
        ),
        "detector": DetectorParams(gain_counts_per_photon=1.0, photon_amp_cv=0.0,
                                   read_noise_counts=2.0, offset_counts=100.0, line_gain_sd=0.0,
                                   dropped_line_prob=0.0, scan_lowpass=0.0),
    }


def make_config(mode: str = "2p", **overrides: object) -> SimConfig:
    """A ``SimConfig`` with the defaults of ``mode`` ("2p" or "1p"), then ``overrides``.

    Overrides are SimConfig field names; unknown names raise SimConfigError.
    """
    if mode not in MODES:
        raise _bad("SimConfig", "mode", mode, f"must be one of {MODES}")
    known = {f.name for f in fields(SimConfig)}
    unknown = sorted(set(overrides) - known)
    if unknown:
        raise SimConfigError(f"unknown SimConfig field(s): {', '.join(unknown)}")
    values: dict[str, object] = _one_photon_blocks() if mode == "1p" else {}
    values.update(overrides)
    return SimConfig(mode=mode, **values)
