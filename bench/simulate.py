"""Simulator speed: seconds to write movie.tif + truth.npz, over several runs.

    python bench/simulate.py                 # 512x512x2000, 300 neurons, 3 runs
    python bench/simulate.py --size 256 256 --frames 3000 --neurons 60 --runs 5

Target (issue 2): 512x512x2000 written in under a minute on 2 cores.
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np

from rtcal.sim import make_config, write_simulation


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--size", type=int, nargs=2, default=(512, 512), metavar=("H", "W"))
    p.add_argument("--frames", type=int, default=2000)
    p.add_argument("--neurons", type=int, default=300)
    p.add_argument("--mode", choices=("2p", "1p"), default="2p")
    p.add_argument("--runs", type=int, default=3)
    args = p.parse_args()
    seconds = []
    for run in range(args.runs):
        cfg = make_config(args.mode, height=args.size[0], width=args.size[1],
                          n_frames=args.frames, n_neurons=args.neurons, seed=run)
        out = Path(tempfile.mkdtemp(prefix="rtcal-bench-sim-"))
        try:
            t0 = time.perf_counter()
            paths = write_simulation(out, cfg)
            seconds.append(time.perf_counter() - t0)
            size_mb = paths.movie.stat().st_size / 2**20
        finally:
            shutil.rmtree(out, ignore_errors=True)
        print(f"run {run}: {seconds[-1]:.1f} s ({args.frames / seconds[-1]:.0f} frames/s)")
    s = np.array(seconds)
    print()
    print("| movie | runs | median s | min s | max s | frames/s (median) | movie MB |")
    print("| --- | --- | --- | --- | --- | --- | --- |")
    print(f"| {args.mode} {args.size[0]}x{args.size[1]}x{args.frames}, {args.neurons} neurons "
          f"| {len(s)} | {np.median(s):.1f} | {s.min():.1f} | {s.max():.1f} | "
          f"{args.frames / np.median(s):.0f} | {size_mb:.0f} |")


if __name__ == "__main__":
    main()
