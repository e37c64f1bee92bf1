"""Results-writer cost per frame: what the live engine's writer thread pays.

    python bench/store.py                      # K=300 components, 512x512, 3000 frames, 3 runs
    python bench/store.py --components 1500 --size 1024 1024

Prints the cost of each append_frame call (median, p99, max; flushes included
in the calls that trigger them) and of the first footprint flush.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np

from rtcal.store import ResultsWriter


def one_run(path: Path, k: int, h: int, w: int, n_frames: int) -> tuple[np.ndarray, float]:
    rng = np.random.default_rng(0)
    footprints = np.zeros((k, h, w), np.float32)
    ys, xs = rng.integers(0, h - 12, k), rng.integers(0, w - 12, k)
    for i in range(k):
        footprints[i, ys[i] : ys[i] + 12, xs[i] : xs[i] + 12] = rng.random((12, 12))
    traces = rng.random(k).astype(np.float32)
    cost_ns = np.empty(n_frames, np.int64)
    with ResultsWriter(path, height=h, width=w, fps_hz=30.0) as writer:
        writer.set_footprints(footprints, np.zeros(k, np.int64))
        t0 = time.perf_counter()
        writer.flush()
        footprint_flush_s = time.perf_counter() - t0
        for t in range(n_frames):
            now = time.monotonic_ns()
            t0 = time.perf_counter_ns()
            writer.append_frame(index=t, traces=traces, spikes=traces, shift=(0.2, -0.1),
                                t_received_ns=now, t_done_ns=now)
            cost_ns[t] = time.perf_counter_ns() - t0
    return cost_ns, footprint_flush_s


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--components", type=int, default=300)
    p.add_argument("--size", type=int, nargs=2, default=(512, 512), metavar=("H", "W"))
    p.add_argument("--frames", type=int, default=3000)
    p.add_argument("--runs", type=int, default=3)
    args = p.parse_args()
    rows = []
    with tempfile.TemporaryDirectory(prefix="rtcal-bench-store-") as tmp:
        for run in range(args.runs):
            cost, fp_s = one_run(Path(tmp) / f"r{run}.h5", args.components, *args.size, args.frames)
            us = cost / 1e3
            rows.append((np.median(us), np.percentile(us, 99), us.max(), us.mean(), fp_s))
            print(f"run {run}: median {rows[-1][0]:.1f} us, p99 {rows[-1][1]:.1f} us, "
                  f"max {rows[-1][2]:.0f} us, footprint flush {fp_s:.2f} s")
    r = np.array(rows)
    print()
    print(f"| append_frame, K={args.components}, {args.size[0]}x{args.size[1]} | runs | "
          "median us | p99 us | max us | mean us | first footprint flush s |")
    print("| --- | --- | --- | --- | --- | --- | --- |")
    print(f"| median over runs | {len(r)} | {np.median(r[:, 0]):.1f} | {np.median(r[:, 1]):.1f} | "
          f"{np.median(r[:, 2]):.0f} | {np.median(r[:, 3]):.1f} | {np.median(r[:, 4]):.2f} |")


if __name__ == "__main__":
    main()
