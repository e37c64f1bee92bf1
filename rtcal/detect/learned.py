"""The learned footprint detector: ``propose(window) -> Proposal`` with the network.

    window (T, H, W) --input_channels--> (C, H, W) --tiles, runtime--> instances
      --area filter--> footprints (masks, optionally weighted by a rank-1 fit)
      --non-maximum suppression--> Proposal

1. Channels: ``rtcal.detect.inputs.input_channels`` (summary images and n_key
   key frames, normalised), n_key = the network's input channels - 5.
2. Instances: ``rtcal.detect.tiling.run_tiled``: overlapping tiles through the
   runtime (``rtcal.detect.runtime``), queries with sigmoid(logit) >
   ``score_threshold``, masks upsampled to full resolution and binarised at 0.5,
   owned per tile, duplicates across tiles merged by mask IoU.
3. Masks of implausible size (area outside [min_area_frac, max_area_frac] x
   pi radius_px^2) are dropped. ``radius_px`` sets only these bounds and the
   scale of the optional footprint fit; the network itself was trained on a range of
   soma sizes (``rtcal.detect.train_data``).
4. Footprints: the flat mask (default), or with ``fit_footprints`` the mask
   weighted by a rank-1 non-negative fit of the window inside it, dilated by
   ``dilate_px``, the mask kept as a floor (``rtcal.detect.weighting``). The fit
   is off by default: it costs ~15x the time (about 1 s per 256 x 256 window of
   60 cells and 500 frames, so ~4 s at 512 x 512, beyond the 2 s budget) for no
   consistent gain. With an oracle network that returns the true masks at 1/4
   resolution, 3 held-out windows per mode (``python bench/detector.py
   --skip-speed --oracle --fit-footprints --windows 3``): 2p F1 1.000 both,
   median trace r 0.941 (fit) vs 0.936 (flat); 1p F1 1.000 vs 0.994, r 0.927
   vs 0.941.
5. Non-maximum suppression: surest first, a footprint whose mask (0.2 x max,
   the evaluation convention) overlaps a kept one with IoU >= ``nms_iou`` is dropped.
"""

from __future__ import annotations

import dataclasses
import functools
import math
import time
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import numpy as np

from rtcal.buffer.channels import N_SUMMARY
from rtcal.detect.inputs import input_channels
from rtcal.detect.model import DetectorNet, load_detector
from rtcal.detect.proposal import Proposal
from rtcal.detect.runtime import (
    DetectorRuntime,
    RuntimeChoice,
    RuntimeUnavailableError,
    availability,
    min_side,
    select_runtime,
)
from rtcal.detect.tiling import flexible_tile_shape, run_tiled, suppress, tile_grid
from rtcal.detect.weighting import dense, mask_footprint, weighted_footprint
from rtcal.errors import RtcalError

# In the rtcal.weights package data. detector_default.pt (`rtcal train --preset default`)
# was trained on 2p and 1p windows; detector_2p.pt (`--preset 2p`, session 16) on 2p
# windows alone and detects 2p cells better, standalone and inside the pipeline
# (README, "Learned detector"); 1p recordings keep the mixed weights.
SHIPPED_WEIGHTS = "detector_default.pt"
SHIPPED_WEIGHTS_BY_MODE = {"2p": "detector_2p.pt", "1p": "detector_default.pt"}


DEFAULT_THRESHOLD = 0.5  # for a checkpoint with no calibrated threshold
SURE_SCORE = 0.55  # LearnedDetectorConfig.sure_score; rtcal.engine.redetect says why


class LearnedDetectorError(RtcalError, ValueError):
    """Bad settings, a bad window or missing weights; the message names the problem."""


@dataclass(frozen=True)
class LearnedDetectorConfig:
    """Settings of the learned detector (module docstring).

    radius_px: typical soma radius; mode: "2p" or "1p", the recording's kind;
    score_threshold: "neuron" probability a query needs (None: the threshold
    calibrated on held-out windows of that mode when the weights were trained,
    stored in the checkpoint; a checkpoint with one threshold for both modes
    gives that; 0.5 for a checkpoint without one);
    in_pipeline: the detector seeds an online pipeline (``rtcal run``, ``rtcal
    serve``), whose residual search finds the cells it misses, so a false
    footprint costs more than a missed one: with no score_threshold, the
    checkpoint's pipeline threshold for the mode is used where it has one
    (``tools/pipeline_threshold.py`` chooses it), else the calibrated one;
    tile_px, overlap_px: tile side (for runtimes that take any size; fixed
    runtimes bring their own) and overlap; merge_iou: IoU at which instances from
    different tiles are one; nms_iou: IoU at which footprints are duplicates;
    min_area_frac, max_area_frac: accepted mask area / (pi radius_px^2);
    fit_footprints: weigh each mask by the rank-1 fit (``rtcal.detect.weighting``)
    instead of using the flat mask; dilate_px: reach of the fit beyond the mask;
    batch_tiles: tiles per runtime call;
    sure_score: a proposal scoring at least this is marked
    ``sure`` (``rtcal.detect.proposal.Proposal``): the live engine adds it at the
    first re-run that proposes it instead of waiting for a second (None or 1:
    none).
    """

    radius_px: float = 6.0
    mode: str = "2p"
    score_threshold: float | None = None
    in_pipeline: bool = False
    tile_px: int = 256
    overlap_px: int = 64
    merge_iou: float = 0.3
    nms_iou: float = 0.5
    min_area_frac: float = 0.15
    max_area_frac: float = 8.0
    fit_footprints: bool = False
    dilate_px: int = 1
    batch_tiles: int = 8
    sure_score: float | None = SURE_SCORE

    def __post_init__(self) -> None:
        checks = {
            "radius_px": 1.0 <= self.radius_px <= 100.0,
            "mode": self.mode in ("2p", "1p"),
            "score_threshold": self.score_threshold is None
            or 0.0 < self.score_threshold < 1.0,
            "tile_px": self.tile_px >= 32 and self.tile_px % 32 == 0,
            "overlap_px": 0 <= self.overlap_px <= self.tile_px // 2,
            "merge_iou": 0.0 < self.merge_iou <= 1.0,
            "nms_iou": 0.0 < self.nms_iou <= 1.0,
            "min_area_frac": 0.0 <= self.min_area_frac < self.max_area_frac,
            "dilate_px": 0 <= self.dilate_px <= 20,
            "batch_tiles": self.batch_tiles >= 1,
            "sure_score": self.sure_score is None or 0.0 < self.sure_score <= 1.0,
        }
        for name, ok in checks.items():
            if not ok:
                raise LearnedDetectorError(
                    f"LearnedDetectorConfig.{name}={getattr(self, name)!r} is out of range")


@dataclass(frozen=True)
class ProposeTiming:
    """Seconds spent in the last propose(): input channels, network (tiles through the
    runtime, masks, merging), footprints (fit and suppression); n_tiles run."""

    channels_s: float
    network_s: float
    footprints_s: float
    n_tiles: int

    @property
    def total_s(self) -> float:
        return self.channels_s + self.network_s + self.footprints_s


def calibrated_threshold(extra: dict, mode: str, in_pipeline: bool = False) -> float | None:
    """The score threshold a checkpoint's ``extra`` calibrated for ``mode`` ("2p" or
    "1p"): with ``in_pipeline``, its pipeline value for the mode if it has one; else
    its per-mode value if it has one, else its single value, else None."""
    pipeline = (extra.get("pipeline_score_threshold_by_mode") or {}) if in_pipeline else {}
    by_mode = extra.get("score_threshold_by_mode") or {}
    return pipeline.get(mode, by_mode.get(mode, extra.get("score_threshold")))


def shipped_weights(mode: str | None = None) -> Path:
    """Path of the checkpoint that ships in the package for recordings of ``mode``
    ("2p" or "1p"; None: the mixed 2p + 1p weights); LearnedDetectorError if absent."""
    if mode is not None and mode not in SHIPPED_WEIGHTS_BY_MODE:
        raise LearnedDetectorError(f"no shipped weights for mode {mode!r}; modes: "
                                   f"{', '.join(SHIPPED_WEIGHTS_BY_MODE)}")
    name = SHIPPED_WEIGHTS if mode is None else SHIPPED_WEIGHTS_BY_MODE[mode]
    path = Path(str(resources.files("rtcal").joinpath("weights", name)))
    if not path.is_file():
        preset = "2p" if name == "detector_2p.pt" else "default"
        raise LearnedDetectorError(
            f"no shipped detector weights at {path}; train them with `rtcal train --preset "
            f"{preset}` and copy OUT/detector.pt there, or pass a checkpoint (--weights)")
    return path


class LearnedDetector:
    """propose(window) -> Proposal with the network; see the module docstring.

    runtime_or_model: a ``DetectorRuntime`` (used as it is), or a ``DetectorNet``:
    then, per frame size, the tile shape that covers the frame with the fewest
    pixels (``tiling.flexible_tile_shape``, sides <= tile_px) is chosen and
    ``select_runtime(model, device, prefer)`` builds a runtime for it on first use
    (an ONNX export or engine is fixed to its tile shape); ``runtime_choice`` says
    which ran last. A runtime named in ``prefer`` that cannot run here raises
    RuntimeUnavailableError at once.
    """

    def __init__(self, runtime_or_model: DetectorRuntime | DetectorNet,
                 config: LearnedDetectorConfig | None = None, *, device: str = "cpu",
                 prefer: str | None = None, cache_dir: str | Path | None = None,
                 threads: int | None = None, calibrated_threshold: float | None = None
                 ) -> None:
        self.config = config or LearnedDetectorConfig()
        # the config's threshold, else the checkpoint's calibrated one, else 0.5
        self.score_threshold = next(t for t in (self.config.score_threshold,
                                                calibrated_threshold, DEFAULT_THRESHOLD)
                                    if t is not None)
        self.model: DetectorNet | None = None
        self.runtime_choice: RuntimeChoice | None = None
        self._choices: dict[tuple[int, int], RuntimeChoice] = {}
        if isinstance(runtime_or_model, DetectorNet):
            self.model = runtime_or_model
            reason = None if prefer in (None, "auto") else availability(prefer, device)
            if reason:
                raise RuntimeUnavailableError(f"runtime {prefer!r} on {device}: {reason}")
            self._select = functools.partial(
                select_runtime, self.model, device, prefer, cache_dir=cache_dir,
                threads=threads, max_batch=self.config.batch_tiles)
            in_channels = self.model.config.in_channels
        else:
            self.runtime_choice = RuntimeChoice(runtime_or_model, ())
            in_channels = runtime_or_model.in_channels
        self.in_channels = in_channels
        self.n_key = in_channels - N_SUMMARY
        if self.n_key < 1:
            raise LearnedDetectorError(f"the network takes {in_channels} channels; it needs "
                                       f"the {N_SUMMARY} summary images and >= 1 key frame")
        self.last_timing: ProposeTiming | None = None

    def __getstate__(self) -> dict:
        """For pickling (the live engine runs the detector in a child process): the
        runtimes built from the model (ONNX Runtime sessions, TensorRT engines, compiled
        modules) are not picklable; the copy rebuilds them on first use."""
        state = self.__dict__.copy()
        if self.model is not None:
            state["_choices"], state["runtime_choice"] = {}, None
        return state

    @property
    def runtime(self) -> DetectorRuntime | None:
        """The runtime that ran last (None before the first propose with a model)."""
        return None if self.runtime_choice is None else self.runtime_choice.runtime

    def _runtime_for(self, height: int, width: int) -> tuple[DetectorRuntime, tuple[int, int]]:
        """(runtime, tile shape) for frames of height x width."""
        c = self.config
        if self.model is None:
            runtime = self.runtime_choice.runtime
            return runtime, runtime.tile_shape or flexible_tile_shape(
                height, width, c.tile_px, runtime.min_side, c.overlap_px)
        tile = flexible_tile_shape(height, width, c.tile_px, min_side(self.model), c.overlap_px)
        if tile not in self._choices:
            self._choices[tile] = self._select(tile_shape=tile)
        self.runtime_choice = self._choices[tile]
        return self.runtime_choice.runtime, tile

    @classmethod
    def from_weights(cls, path: str | Path | None = None,
                     config: LearnedDetectorConfig | None = None, **runtime_options
                     ) -> LearnedDetector:
        """The detector of checkpoint ``path`` (default: the shipped weights for the
        config's mode). runtime_options: device, prefer, cache_dir, threads (see
        ``__init__``)."""
        config = config or LearnedDetectorConfig()
        model, extra = load_detector(shipped_weights(config.mode) if path is None else path)
        calibrated = calibrated_threshold(extra, config.mode, config.in_pipeline)
        return cls(model, config, calibrated_threshold=calibrated, **runtime_options)

    def propose(self, window: np.ndarray) -> Proposal:
        """window: float (T, H, W) motion-corrected frames, oldest first, T >= n_key + 1."""
        self._check_window(window)
        start = time.perf_counter()
        channels = input_channels(window, self.n_key)
        channels_s = time.perf_counter() - start
        proposal = self.propose_channels(channels, window)
        self.last_timing = dataclasses.replace(self.last_timing, channels_s=channels_s)
        return proposal

    def propose_channels(self, channels: np.ndarray, window: np.ndarray) -> Proposal:
        """The same from precomputed input channels (C, H, W) of ``window`` (the live
        keyframe buffer computes them incrementally)."""
        c = self.config
        if window.ndim != 3:
            raise LearnedDetectorError(f"window must be (T, H, W), got shape {window.shape}")
        H, W = window.shape[1:]
        if channels.shape != (self.in_channels, H, W):
            raise LearnedDetectorError(f"channels {channels.shape} do not fit the network "
                                       f"({self.in_channels}, {H}, {W})")
        runtime, tile = self._runtime_for(H, W)
        t0 = time.perf_counter()
        grid = tile_grid(H, W, tile, min(c.overlap_px, min(tile) // 2))
        found = run_tiled(runtime.infer, channels, grid, score_threshold=self.score_threshold,
                          merge_iou=c.merge_iou, batch_size=c.batch_tiles)
        t1 = time.perf_counter()
        area = math.pi * c.radius_px**2
        found = [i for i in found if c.min_area_frac * area <= i.area <= c.max_area_frac * area]
        context = max(2, int(round(c.radius_px)))
        fits = [weighted_footprint(window, i, c.dilate_px, context) if c.fit_footprints
                else mask_footprint(i) for i in found]
        fits = [fits[k] for k in suppress([f.instance() for f in fits], c.nms_iou)]
        footprints = dense(fits, H, W)
        centers = np.array([f.centre for f in fits], np.float32)
        self.last_timing = ProposeTiming(0.0, t1 - t0, time.perf_counter() - t1, grid.n_tiles)
        score = np.array([f.score for f in fits], np.float32)
        sure = score >= c.sure_score if c.sure_score is not None and c.sure_score < 1.0 else None
        return Proposal(footprints=footprints, centers=centers.reshape(-1, 2), score=score,
                        sure=sure)

    def _check_window(self, window: np.ndarray) -> None:
        if not isinstance(window, np.ndarray) or window.ndim != 3:
            shape = getattr(window, "shape", type(window).__name__)
            raise LearnedDetectorError(f"window must be a (T, H, W) array, got {shape}")
        if window.dtype.kind not in "fiu":
            raise LearnedDetectorError(f"window must be real numbers, got dtype {window.dtype}")
        T, H, W = window.shape
        if T < self.n_key + 1 or min(H, W) < 16:
            raise LearnedDetectorError(f"window {T} x {H} x {W}: needs T >= {self.n_key + 1} "
                                       "frames and H, W >= 16 px")
        # A sum is NaN / inf when any element is, without a bool array of the window's size.
        if window.dtype.kind == "f" and not np.isfinite(window.sum(dtype=np.float64)):
            raise LearnedDetectorError("window holds NaN or inf; motion-correct and fill gaps "
                                       "first")
