"""Detector benchmark: speed of the learned detector, and the ablation table.

    python bench/detector.py --weights runs/mask/detector.pt runs/trace/detector.pt \\
        runs/contrastive/detector.pt                # speed + ablation (2p and 1p)
    python bench/detector.py --skip-ablation        # speed only (shipped or random weights)
    python bench/detector.py --weights W.pt --windows 2 --frames 200 --speed-frames 200
    python bench/detector.py --skip-ablation --device cuda --runtimes eager compile

Speed: simulated 2p windows of --speed-frames frames at 256 x 256 and 512 x 512
(60 neurons per 256 x 256), the whole ``LearnedDetector.propose`` (input
channels, tiled network, footprints) and its network part alone, median of
--runs runs after two warm-ups, per runtime (default eager PyTorch and ONNX
Runtime; on --device cuda also compile, tensorrt), with --threads CPU threads
(default 2, the issue's budget); the split into input channels (computed on the
CPU from the raw window), network and footprints is printed too. A runtime that
cannot run here is reported and skipped. Weights: the first
of --weights, else the shipped checkpoint, else a randomly initialised default
network (which detects almost nothing, so footprint time is then ~0).

Ablation: every checkpoint of --weights (labelled by the loss it was trained
with) and the seed detector on --windows held-out simulated windows per mode
(seeds from HELD_OUT_SEED_BASE on, disjoint from training and validation
seeds): 2p 256 x 256, 60 neurons, --frames frames; 1p likewise. Each window is
registered, detected and its traces extracted as ``rtcal detect`` does
(``rtcal.detect.standalone``), then scored with ``rtcal.metrics.evaluate``:
F1 at IoU >= 0.5 from counts pooled over the windows, median trace correlation
over all true-positive pairs, median detector time per window. --oracle adds
the true masks at the network's 1/4 resolution through the same chain after the
network (tiles, merge, footprints, traces): the ceiling of the learned detector;
--fit-footprints adds rank-1 fitted footprints beside the default flat masks.
Two "ceiling" rows per mode close the table: the F1 of a detector that would
find exactly the cells that spike at least once (twice) in their window and
nothing else, what the window's activity can reveal at all.
"""

from __future__ import annotations

import argparse
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from rtcal.cli import limit_blas_threads

limit_blas_threads()

import torch  # noqa: E402

from rtcal.detect.factory import make_detector  # noqa: E402
from rtcal.detect.learned import (  # noqa: E402
    LearnedDetector,
    LearnedDetectorConfig,
    LearnedDetectorError,
    shipped_weights,
)
from rtcal.detect.model import build_detector, load_detector  # noqa: E402
from rtcal.detect.standalone import detect_window, to_results  # noqa: E402
from rtcal.detect.train_data import VALIDATION_SEED_BASE  # noqa: E402
from rtcal.engine.pipeline import pipeline_config  # noqa: E402
from rtcal.errors import RtcalError  # noqa: E402
from rtcal.metrics import activity_ceiling, evaluate, truth_from_arrays  # noqa: E402
from rtcal.sim import Simulation, make_config, static_truth  # noqa: E402

HELD_OUT_SEED_BASE = VALIDATION_SEED_BASE + 500_000_000  # above every validation seed used
SPEED_SIZES = (256, 512)
NEURONS_PER_256 = 60


def simulate(mode: str, size: int, neurons: int, n_frames: int, seed: int,
             spikes: list | None = None):
    """(frames uint16 (T, S, S), truth footprints (K, S, S), calcium (K, T), radius px,
    fps); each cell's spike count in the window is appended to ``spikes`` if given."""
    cfg = make_config(mode, height=size, width=size, n_neurons=neurons, n_frames=n_frames,
                      seed=seed)
    sim = Simulation(cfg)
    chunks = list(sim.chunks())
    frames = np.concatenate([c.images for c in chunks])
    calcium = np.concatenate([c.calcium for c in chunks]).T
    if spikes is not None:
        spikes.append(np.concatenate([c.spikes for c in chunks]).astype(bool).sum(axis=0))
    radius = 0.5 * (cfg.radius_min_px + cfg.radius_max_px)
    return frames, static_truth(sim)["footprints"], calcium, radius, cfg.fps_hz


class OracleRuntime:
    """A stand-in network that knows the truth: channel 0 of its input holds cell labels
    (0 = none) and each label in a tile is answered with its mask at 1/4 resolution
    (logit +6 where a 4 x 4 block is mostly that cell, else -6): the best a network
    with 1/4-resolution masks could do, through the same chain after the network."""

    name, in_channels, tile_shape, min_side, max_batch = "oracle", 8, None, 32, 8

    def infer(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        B, _, h, w = x.shape
        labels = np.rint(x[:, 0]).astype(np.int64)
        n_queries = max(1, max(len(np.unique(lab)) for lab in labels))
        logits = np.full((B, n_queries), -6.0, np.float32)
        masks = np.full((B, n_queries, h // 4, w // 4), -6.0, np.float32)
        for b in range(B):
            for q, cell in enumerate(np.unique(labels[b][labels[b] > 0])):
                frac = (labels[b] == cell).reshape(h // 4, 4, w // 4, 4).mean(axis=(1, 3))
                logits[b, q], masks[b, q] = 6.0, np.where(frac >= 0.5, 6.0, -6.0)
        return logits, masks


class OracleDetector:
    """``propose`` through ``LearnedDetector`` on the ``OracleRuntime``; set ``labels``
    (H, W) from the truth before each window (no input channels are computed)."""

    def __init__(self, config: LearnedDetectorConfig) -> None:
        self.inner = LearnedDetector(OracleRuntime(), config)
        self.labels: np.ndarray | None = None

    def propose(self, window: np.ndarray):
        channels = np.zeros((8, *window.shape[1:]), np.float32)
        if self.labels is not None:
            channels[0] = self.labels
        return self.inner.propose_channels(channels, window)


def label_image(footprints: np.ndarray) -> np.ndarray:
    """(H, W) float32: 1 + index of the brightest cell (relative to its peak) whose mask
    (0.2 x peak) covers each pixel, 0 where none does."""
    peak = footprints.max(axis=(1, 2), keepdims=True)
    on = footprints >= 0.2 * peak
    return np.where(on.any(axis=0), 1 + np.argmax(footprints / peak * on, axis=0), 0
                    ).astype(np.float32)


def default_weights(weights: list[str]) -> tuple[object, str]:
    """(model, label) for the speed runs: first --weights, else shipped, else random."""
    if weights:
        return load_detector(weights[0])[0], weights[0]
    try:
        return load_detector(shipped_weights())[0], "shipped weights"
    except LearnedDetectorError:
        torch.manual_seed(0)
        return build_detector().eval(), "random default network (no shipped weights)"


def speed(args) -> list[tuple]:
    model, label = default_weights(args.weights)
    print(f"speed: {label}, {args.threads} threads, device {args.device}, "
          f"{args.speed_frames}-frame 2p windows, tiles <= {args.tile_px} px")
    rows = []
    for size in SPEED_SIZES:
        neurons = NEURONS_PER_256 * (size // 256) ** 2
        frames, *_ = simulate("2p", size, neurons, args.speed_frames, HELD_OUT_SEED_BASE - 1)
        window = frames.astype(np.float32)
        for runtime in args.runtimes:
            try:
                det = LearnedDetector(model, LearnedDetectorConfig(tile_px=args.tile_px),
                                      device=args.device, prefer=runtime, threads=args.threads)
                for _ in range(2):  # warm-up: export/compile, mask caches, first allocations
                    det.propose(window)
            except (RtcalError, RuntimeError, ImportError) as exc:  # cannot run here: said
                print(f"  {size}x{size} {runtime}: not measured ({type(exc).__name__}: {exc})")
                continue
            timings, found = [], 0
            for _ in range(args.runs):
                t0 = time.perf_counter()
                found = len(det.propose(window))
                timings.append((time.perf_counter() - t0, det.last_timing))
            total = [t for t, _ in timings]
            parts = [(tm.channels_s, tm.network_s, tm.footprints_s) for _, tm in timings]
            channels_s, network_s, footprints_s = np.median(np.asarray(parts), axis=0)
            rows.append((size, det.runtime.name, float(np.median(total)), float(channels_s),
                         float(network_s), float(footprints_s), det.last_timing.n_tiles, found))
            print(f"  {size}x{size} {det.runtime.name}: {rows[-1][2]:.3f} s (channels "
                  f"{channels_s:.3f} s, network {network_s:.4f} s, footprints "
                  f"{footprints_s:.3f} s, {rows[-1][6]} tiles, {found} found)")
    return rows


@dataclass
class Pooled:
    """Counts and per-window values pooled over the windows of one detector and mode."""

    n_tp: int = 0
    n_est: int = 0
    n_true: int = 0
    corr: list[float] = field(default_factory=list)
    seconds: list[float] = field(default_factory=list)

    @property
    def f1(self) -> float:
        return 2 * self.n_tp / (self.n_est + self.n_true) if self.n_est + self.n_true else 0.0


def score_window(detector, frames, footprints, calcium, radius, fps, mode, pooled: Pooled):
    config = pipeline_config(fps, radius, mode)
    det = detect_window(frames, detector, config)
    pooled.seconds.append(det.detector_s)
    pooled.n_true += len(footprints)
    if len(det.proposal) == 0:
        return
    report = evaluate(to_results(det, np.arange(len(frames)), fps),
                      truth_from_arrays(footprints, calcium))
    pooled.n_tp += report.main.n_tp
    pooled.n_est += report.main.n_est
    corr = report.trace_corr[report.matching.is_tp]
    pooled.corr += corr[np.isfinite(corr)].tolist()


def build(path: str | None, fit: bool, config, args):
    """The detector of one ablation row: seed (path None), oracle, or a checkpoint."""
    if path is None:
        return make_detector("seed", config)
    learned = LearnedDetectorConfig(radius_px=config.radius_px, mode=config.mode,
                                    fit_footprints=fit)
    if path == "oracle":
        return OracleDetector(learned)
    return LearnedDetector.from_weights(path, learned, prefer=args.runtime, threads=args.threads)


def ablation(args) -> list[tuple]:
    detectors = {"seed": (None, False)}
    for path in args.weights:
        _, extra = load_detector(path)
        where = Path(path).resolve()
        label = f"{extra.get('loss_mode', '?')} ({where.parent.name}/{where.name})"
        detectors[label] = (path, False)
        if args.fit_footprints:
            detectors[label + ", rank-1 fit"] = (path, True)
    if args.oracle:
        detectors["oracle masks (1/4 res)"] = ("oracle", False)
        if args.fit_footprints:
            detectors["oracle masks (1/4 res), rank-1 fit"] = ("oracle", True)
    rows = []
    for mode in ("2p", "1p"):
        sim = make_config(mode)
        config = pipeline_config(sim.fps_hz, 0.5 * (sim.radius_min_px + sim.radius_max_px), mode)
        built = {name: build(path, fit, config, args) for name, (path, fit) in detectors.items()}
        warm = np.random.default_rng(0).normal(100, 5, (20, 256, 256)).astype(np.float32)
        for detector in built.values():  # untimed: ONNX export / engine build, first calls
            detector.propose(warm)
        pooled = {name: Pooled() for name in detectors}
        spikes: list[np.ndarray] = []
        for w in range(args.windows):
            frames, footprints, calcium, radius, fps = simulate(
                mode, 256, NEURONS_PER_256, args.frames, HELD_OUT_SEED_BASE + w, spikes)
            for name, detector in built.items():
                if isinstance(detector, OracleDetector):
                    detector.labels = label_image(footprints)
                score_window(detector, frames, footprints, calcium, radius, fps, mode,
                             pooled[name])
        for name, p in pooled.items():
            corr = float(np.median(p.corr)) if p.corr else float("nan")
            rows.append((mode, name, p.f1, corr, float(np.median(p.seconds)), p.n_tp, p.n_est,
                         p.n_true))
            print(f"  {mode} {name}: F1 {p.f1:.3f}, trace r {corr:.3f}")
        for k in (1, 2):
            c = activity_ceiling(spikes, k)
            rows.append((mode, f"ceiling: exactly the cells with >= {k} spike(s) in the window",
                         c.f1, float("nan"), float("nan"), c.n_active, c.n_active, c.n_true))
    return rows


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--weights", nargs="*", default=[], metavar="CKPT",
                   help="detector checkpoints (mask-only, +trace, +trace+contrastive)")
    p.add_argument("--windows", type=int, default=4, help="held-out windows per mode")
    p.add_argument("--frames", type=int, default=500, help="frames per ablation window")
    p.add_argument("--speed-frames", type=int, default=500, help="frames per speed window")
    p.add_argument("--runs", type=int, default=3, help="timed runs per speed point")
    p.add_argument("--threads", type=int, default=2, help="CPU threads (torch and ORT)")
    p.add_argument("--runtimes", nargs="+", default=["eager", "onnx"],
                   help="runtimes for the speed table (eager, onnx, compile, tensorrt)")
    p.add_argument("--device", default="cpu", help="cpu or cuda (speed runs)")
    p.add_argument("--runtime", default=None, help="runtime of the ablation (default auto)")
    p.add_argument("--tile-px", type=int, default=LearnedDetectorConfig.tile_px,
                   help="largest tile side of the speed runs")
    p.add_argument("--fit-footprints", action="store_true",
                   help="also score each checkpoint with rank-1 fitted footprints")
    p.add_argument("--oracle", action="store_true",
                   help="also score the true masks at 1/4 resolution (an upper bound)")
    p.add_argument("--skip-speed", action="store_true")
    p.add_argument("--skip-ablation", action="store_true")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    speed_rows = [] if args.skip_speed else speed(args)
    ablation_rows = [] if args.skip_ablation else ablation(args)
    if speed_rows:
        print("\n| window | runtime | detector s (median) | channels s | network s | "
              "footprints s | tiles | found |")
        print("| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: |")
        for size, name, total, chan, network, fp, tiles, found in speed_rows:
            print(f"| {size}x{size} | {name} | {total:.3f} | {chan:.3f} | {network:.4f} | "
                  f"{fp:.3f} | {tiles} | {found} |")
    if ablation_rows:
        print(f"\n{args.windows} held-out windows per mode, 256x256, {NEURONS_PER_256} neurons, "
              f"{args.frames} frames; F1 at IoU >= 0.5 pooled; trace r median over TP pairs")
        print("| mode | detector | F1 | median trace r | detector s | TP / est / true |")
        print("| --- | --- | ---: | ---: | ---: | --- |")
        for mode, name, f1, corr, secs, tp, est, true in ablation_rows:
            secs_text = "-" if np.isnan(secs) else f"{secs:.2f}"
            corr_text = "-" if np.isnan(corr) else f"{corr:.3f}"
            print(f"| {mode} | {name} | {f1:.3f} | {corr_text} | {secs_text} | "
                  f"{tp} / {est} / {true} |")


if __name__ == "__main__":
    main()
