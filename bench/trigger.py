"""Per-frame cost of the closed-loop trigger rules.

    python bench/trigger.py                 # 30 rules over 300 neurons, 3 runs
    python bench/trigger.py --rules 100 --neurons 1000

Random rules of the three kinds (threshold, coincidence, template) with random
refractory periods, fed random per-frame dF/F / spikes / denoised vectors;
"quiet" frames keep every signal below the thresholds, "busy" frames make rules
fire often. Prints the median and p99 of ``TriggerSet.step`` per frame, median
over runs.
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from rtcal.trigger import TriggerSet
from rtcal.trigger.random_rules import random_rules

FPS_HZ = 30.0


def one_run(n_rules: int, n_neurons: int, n_frames: int, busy: bool, seed: int) -> np.ndarray:
    """float64 (n_frames,) microseconds per step."""
    rng = np.random.default_rng(seed)
    ts = TriggerSet.from_config(random_rules(rng, n_rules, n_neurons), FPS_HZ)
    scale = 1.0 if busy else 0.1
    signals = (scale * rng.random((64, 3, n_neurons))).astype(np.float32)
    out = np.empty(n_frames)
    for t in range(n_frames):
        s = signals[t % 64]
        t0 = time.perf_counter_ns()
        ts.step(t, t, s[0], s[1], s[2])
        out[t] = (time.perf_counter_ns() - t0) / 1e3
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--rules", type=int, default=30)
    ap.add_argument("--neurons", type=int, default=300)
    ap.add_argument("--frames", type=int, default=3000)
    ap.add_argument("--runs", type=int, default=3)
    args = ap.parse_args()
    print(f"{args.rules} rules, {args.neurons} neurons, {args.frames} frames x {args.runs} runs")
    print("| frames | median us | p99 us | max us |")
    print("| --- | --- | --- | --- |")
    for busy in (False, True):
        runs = [one_run(args.rules, args.neurons, args.frames, busy, seed) for seed in
                range(args.runs)]
        med = np.median([np.median(r) for r in runs])
        p99 = np.median([np.percentile(r, 99) for r in runs])
        worst = max(r.max() for r in runs)
        print(f"| {'busy' if busy else 'quiet'} | {med:.1f} | {p99:.1f} | {worst:.1f} |")


if __name__ == "__main__":
    main()
