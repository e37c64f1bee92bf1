"""Choose the learned detector's score threshold for use inside the online pipeline.

    python tools/pipeline_threshold.py [CKPT] [--mode 2p|1p] [--seeds S ...]
                                       [--thresholds T ...] [--write]

Inside `rtcal run` and `rtcal serve` the detector only seeds the components:
the residual search finds, over the rest of the movie, most of the cells it
missed, but a false footprint it proposes stays. So the threshold that gives
the best F1 for the detector alone on one window (``tools/calibrate_detector.py``)
is not the best one for the pipeline. This script runs development movies
(simulated as ``bench/accuracy.py``'s suite of that mode simulates them, with
development seeds, never its held-out ones) through `rtcal run`'s code path
with ``[detector] name = "learned"``, the checkpoint and each threshold, and
scores them as `rtcal eval` does. It prints one row per threshold (each
movie's F1 and the mean) and the threshold with the best mean. ``--write``
stores that threshold in the checkpoint (``pipeline_score_threshold_by_mode``,
with the table under ``pipeline_threshold_scores``) with the same weights;
``LearnedDetectorConfig.in_pipeline`` detectors (every one ``rtcal run``,
``serve`` and the demo make) use it.

CKPT defaults to the shipped weights for the mode. About 10 s per 256x256 movie and
threshold on two cores: the defaults (6 movies, 5 thresholds) took 5 minutes.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "bench"))

from accuracy import SUITES, run_and_score, simulate  # noqa: E402

from rtcal.detect.learned import shipped_weights  # noqa: E402
from rtcal.detect.model import load_detector, save_checkpoint  # noqa: E402
from rtcal.metrics import truth_from_arrays  # noqa: E402

# Development seeds: the movies settings were tuned on (bench/accuracy.py's
# docstring); the held-out seeds of its suites are never used here.
DEV_SEEDS = {"2p": (11, 12, 13, 14, 61, 62), "1p": (21, 22, 25, 26)}
SUITE_OF_MODE = {"2p": "2p-256", "1p": "1p-256"}
THRESHOLDS = (0.4, 0.5, 0.6, 0.65, 0.7)


def best_threshold(table: dict[float, list[float]]) -> float:
    """The threshold with the highest mean F1 over the movies (the lower one on a tie)."""
    return max(sorted(table), key=lambda t: (float(np.mean(table[t])), -t))


def detector_toml(weights: Path, threshold: float) -> str:
    return (f'[detector]\nname = "learned"\nweights = "{weights.as_posix()}"\n'
            f"score_threshold = {threshold}\n")


def measure(weights: Path, mode: str, seeds, thresholds) -> dict[float, list[float]]:
    """F1 per threshold, one value per seed, each movie simulated once."""
    suite = SUITES[SUITE_OF_MODE[mode]]
    for seed in seeds:
        if seed in suite.seeds:
            raise SystemExit(f"seed {seed} is one of {suite.name}'s held-out seeds; "
                             "choose development seeds")
    table: dict[float, list[float]] = {t: [] for t in thresholds}
    with tempfile.TemporaryDirectory() as tmp:
        for seed in seeds:
            frames, footprints, calcium = simulate(suite, seed)
            truth = truth_from_arrays(footprints, calcium=calcium)
            for t in thresholds:
                config = Path(tmp) / f"t{t}.toml"
                config.write_text(detector_toml(weights, t))
                row = run_and_score(frames, truth, fps=suite.fps, radius=suite.radius,
                                    mode=mode, config_path=config)
                table[t].append(row["f1"])
                print(f"seed {seed} threshold {t:g}: F1 {row['f1']:.3f} "
                      f"(P {row['precision']:.2f}, R {row['recall']:.2f})", flush=True)
    return table


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("checkpoint", type=Path, nargs="?",
                   help="default: the shipped weights for the mode")
    p.add_argument("--mode", choices=tuple(DEV_SEEDS), default="2p")
    p.add_argument("--seeds", type=int, nargs="+", help="default: the mode's development seeds")
    p.add_argument("--thresholds", type=float, nargs="+", default=THRESHOLDS)
    p.add_argument("--write", action="store_true",
                   help="store the best threshold in the checkpoint")
    args = p.parse_args()
    weights = args.checkpoint or shipped_weights(args.mode)
    seeds = args.seeds or DEV_SEEDS[args.mode]
    table = measure(weights, args.mode, seeds, args.thresholds)
    best = best_threshold(table)
    print(f"\n{weights}, {args.mode}, F1 inside the pipeline per development movie")
    print("| threshold | " + " | ".join(f"seed {s}" for s in seeds) + " | mean |")
    print("| ---: |" + " ---: |" * (len(seeds) + 1))
    for t, f1 in table.items():
        mark = " (best)" if t == best else ""
        print(f"| {t:g}{mark} | " + " | ".join(f"{v:.3f}" for v in f1)
              + f" | {np.mean(f1):.3f} |")
    if args.write:
        model, extra = load_detector(weights)
        extra.setdefault("pipeline_score_threshold_by_mode", {})[args.mode] = best
        extra.setdefault("pipeline_threshold_scores", {})[args.mode] = {
            "seeds": list(seeds), "f1": {str(t): v for t, v in table.items()}}
        save_checkpoint(weights, model, extra)
        print(f"wrote {weights}: pipeline threshold {best:g} for {args.mode}")


if __name__ == "__main__":
    main()
