"""Per-frame cost of the live keyframe buffer (push), and of a snapshot.

    python bench/keyframe.py [--sizes 256 512] [--capacity 300] [--pushes 400]

Fills a KeyframeBuffer past wrap-around with noise frames, then times single
pushes (median, p99, max over --pushes pushes) and a few snapshots, on one
thread (NUMBA_NUM_THREADS=1; the kernels are serial). Prints a table. "cpu"
is the thread's CPU time (time.thread_time_ns), which leaves out time the
thread waited for a core: on a shared machine it is the better estimate of
the cost on an idle one; "wall" is what a caller waited.
"""

from __future__ import annotations

import argparse
import os
import time

os.environ.setdefault("NUMBA_NUM_THREADS", "1")

import numpy as np  # noqa: E402

from rtcal.buffer.keyframe import KeyframeBuffer  # noqa: E402


def time_pushes(size: int, capacity: int, n_pushes: int, n_key: int) -> dict[str, float]:
    rng = np.random.default_rng(0)
    frames = rng.normal(500.0, 20.0, (64, size, size)).astype(np.float32)
    buffer = KeyframeBuffer(size, size, capacity, n_key)
    index = 0
    for _ in range(capacity + 2 * buffer.acc.block + 3):  # warm up and wrap around
        buffer.push(index, frames[index % len(frames)])
        index += 1
    seconds = np.empty(n_pushes)
    cpu = np.empty(n_pushes)
    for k in range(n_pushes):
        frame = frames[index % len(frames)]
        c0 = time.thread_time_ns()
        t0 = time.perf_counter_ns()
        buffer.push(index, frame)
        seconds[k] = (time.perf_counter_ns() - t0) * 1e-9
        cpu[k] = (time.thread_time_ns() - c0) * 1e-9
        index += 1
    snaps = []
    for _ in range(3):
        t0 = time.perf_counter_ns()
        buffer.snapshot()
        snaps.append((time.perf_counter_ns() - t0) * 1e-9)
        buffer.push(index, frames[index % len(frames)])
        index += 1
    return {
        "cpu_median_ms": float(np.median(cpu) * 1e3),
        "median_ms": float(np.median(seconds) * 1e3),
        "p99_ms": float(np.percentile(seconds, 99) * 1e3),
        "max_ms": float(seconds.max() * 1e3),
        "snapshot_ms": float(np.median(snaps) * 1e3),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[256, 512])
    parser.add_argument("--capacity", type=int, default=300)
    parser.add_argument("--pushes", type=int, default=400)
    parser.add_argument("--n-key", type=int, default=3)
    args = parser.parse_args()
    print(f"KeyframeBuffer, capacity {args.capacity} frames, n_key {args.n_key}, "
          f"{args.pushes} pushes after wrap-around")
    print(f"{'size':>9} {'push cpu median ms':>19} {'wall median ms':>15} {'p99 ms':>8} "
          f"{'max ms':>8} {'snapshot ms':>12}")
    for size in args.sizes:
        r = time_pushes(size, args.capacity, args.pushes, args.n_key)
        print(f"{size:>4}x{size:<4} {r['cpu_median_ms']:>19.3f} {r['median_ms']:>15.3f} "
              f"{r['p99_ms']:>8.3f} {r['max_ms']:>8.3f} {r['snapshot_ms']:>12.1f}")


if __name__ == "__main__":
    main()
