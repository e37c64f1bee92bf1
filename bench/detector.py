"""Detector benchmark: speed of the learned detector, and the ablation table.

    python bench/detector.py --weights runs/mask/detector.pt runs/trace/detector.pt \\
        runs/contrastive/detector.pt                # speed + ablation (2p and 1p)
    python bench/detector.py --skip-ablation        # speed only (shipped or random weights)
    python bench/detector.py --weights W.pt --windows 2 --frames 200 --speed-frames 200

Speed: simulated 2p windows of --speed-frames frames at 256 x 256 and 512 x 512
(60 neurons per 256 x 256), the whole ``LearnedDetector.propose`` (input
channels, tiled network, footprints) and its network part alone, median of
--runs runs after one warm-up, per runtime (eager PyTorch and ONNX Runtime),
with --threads CPU threads (default 2, the issue's budget). Weights: the first
of --weights, else the shipped checkpoint, else a randomly initialised default
network (which detects almost nothing, so footprint time is then ~0).

Ablation: every checkpoint of --weights (labelled by the loss it was trained
with) and the seed detector on --windows held-out simulated windows per mode
(seeds from HELD_OUT_SEED_BASE on, disjoint from training and validation
seeds): 2p 256 x 256, 60 neurons, --frames frames; 1p likewise. Each window is
registered, detected and its traces extracted as ``rtcal detect`` does
(``rtcal.detect.standalone``), then scored with ``rtcal.metrics.evaluate``:
F1 at IoU >= 0.5 from counts pooled over the windows, median trace correlation
over all true-positive pairs, median detector time per window.
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
from rtcal.metrics import evaluate, truth_from_arrays  # noqa: E402
from rtcal.sim import Simulation, make_config, static_truth  # noqa: E402

HELD_OUT_SEED_BASE = VALIDATION_SEED_BASE + 500_000_000  # above every validation seed used
SPEED_SIZES = (256, 512)
NEURONS_PER_256 = 60


def simulate(mode: str, size: int, neurons: int, n_frames: int, seed: int):
    """(frames uint16 (T, S, S), truth footprints (K, S, S), calcium (K, T), radius px)."""
    cfg = make_config(mode, height=size, width=size, n_neurons=neurons, n_frames=n_frames,
                      seed=seed)
    sim = Simulation(cfg)
    chunks = list(sim.chunks())
    frames = np.concatenate([c.images for c in chunks])
    calcium = np.concatenate([c.calcium for c in chunks]).T
    radius = 0.5 * (cfg.radius_min_px + cfg.radius_max_px)
    return frames, static_truth(sim)["footprints"], calcium, radius, cfg.fps_hz


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
    print(f"speed: {label}, {args.threads} threads, {args.speed_frames}-frame 2p windows, "
          f"tiles <= {args.tile_px} px")
    rows = []
    for size in SPEED_SIZES:
        neurons = NEURONS_PER_256 * (size // 256) ** 2
        frames, *_ = simulate("2p", size, neurons, args.speed_frames, HELD_OUT_SEED_BASE - 1)
        window = frames.astype(np.float32)
        for runtime in args.runtimes:
            det = LearnedDetector(model, LearnedDetectorConfig(tile_px=args.tile_px),
                                  prefer=runtime, threads=args.threads)
            for _ in range(2):  # warm-up: ONNX export, mask caches, first-call allocations
                det.propose(window)
            total, network, found = [], [], 0
            for _ in range(args.runs):
                t0 = time.perf_counter()
                found = len(det.propose(window))
                total.append(time.perf_counter() - t0)
                network.append(det.last_timing.network_s)
            rows.append((size, det.runtime.name, float(np.median(total)),
                         float(np.median(network)), det.last_timing.n_tiles, found))
            print(f"  {size}x{size} {det.runtime.name}: {rows[-1][2]:.2f} s "
                  f"(network {rows[-1][3]:.2f} s, {rows[-1][4]} tiles, {found} found)")
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


def ablation(args) -> list[tuple]:
    detectors = {"seed": (None, False)}
    for path in args.weights:
        _, extra = load_detector(path)
        label = f"{extra.get('loss_mode', '?')} ({Path(path).parent.name})"
        detectors[label] = (path, False)
        if args.fit_footprints:
            detectors[label + ", rank-1 fit"] = (path, True)
    rows = []
    for mode in ("2p", "1p"):
        sim = make_config(mode)
        config = pipeline_config(sim.fps_hz, 0.5 * (sim.radius_min_px + sim.radius_max_px), mode)
        built = {name: make_detector("seed", config) if path is None else
                 LearnedDetector.from_weights(path, LearnedDetectorConfig(
                     radius_px=config.radius_px, fit_footprints=fit), prefer=args.runtime,
                     threads=args.threads)
                 for name, (path, fit) in detectors.items()}
        pooled = {name: Pooled() for name in detectors}
        for w in range(args.windows):
            frames, footprints, calcium, radius, fps = simulate(
                mode, 256, NEURONS_PER_256, args.frames, HELD_OUT_SEED_BASE + w)
            for name, detector in built.items():
                score_window(detector, frames, footprints, calcium, radius, fps, mode,
                             pooled[name])
        for name, p in pooled.items():
            corr = float(np.median(p.corr)) if p.corr else float("nan")
            rows.append((mode, name, p.f1, corr, float(np.median(p.seconds)), p.n_tp, p.n_est,
                         p.n_true))
            print(f"  {mode} {name}: F1 {p.f1:.3f}, trace r {corr:.3f}")
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
                   help="runtimes for the speed table")
    p.add_argument("--runtime", default=None, help="runtime of the ablation (default auto)")
    p.add_argument("--tile-px", type=int, default=LearnedDetectorConfig.tile_px,
                   help="largest tile side of the speed runs")
    p.add_argument("--fit-footprints", action="store_true",
                   help="also score each checkpoint with rank-1 fitted footprints")
    p.add_argument("--skip-speed", action="store_true")
    p.add_argument("--skip-ablation", action="store_true")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    speed_rows = [] if args.skip_speed else speed(args)
    ablation_rows = [] if args.skip_ablation else ablation(args)
    if speed_rows:
        print("\n| window | runtime | detector s (median) | network s | tiles | found |")
        print("| --- | --- | ---: | ---: | ---: | ---: |")
        for size, name, total, network, tiles, found in speed_rows:
            print(f"| {size}x{size} | {name} | {total:.2f} | {network:.2f} | {tiles} | {found} |")
    if ablation_rows:
        print(f"\n{args.windows} held-out windows per mode, 256x256, {NEURONS_PER_256} neurons, "
              f"{args.frames} frames; F1 at IoU >= 0.5 pooled; trace r median over TP pairs")
        print("| mode | detector | F1 | median trace r | detector s | TP / est / true |")
        print("| --- | --- | ---: | ---: | ---: | --- |")
        for mode, name, f1, corr, secs, tp, est, true in ablation_rows:
            print(f"| {mode} | {name} | {f1:.3f} | {corr:.3f} | {secs:.2f} | "
                  f"{tp} / {est} / {true} |")


if __name__ == "__main__":
    main()
