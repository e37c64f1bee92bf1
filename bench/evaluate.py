"""Evaluator cost at scale: offset estimate + matching, K x K footprints.

    python bench/evaluate.py                   # 1500 x 1500 cells at 1024x1024, 5 runs

Estimates are the true discs with 100 dropped, 100 small false blobs added and
a (1, -2) px shift, so the offset search and all four matchings do real work.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import scipy.sparse as sp

from rtcal.metrics.evaluate import score_footprints
from rtcal.metrics.matching import score
from rtcal.metrics.truth import Truth


def discs(centres: np.ndarray, radius: float, h: int, w: int) -> sp.csr_array:
    r = int(np.ceil(radius))
    dy, dx = np.mgrid[-r : r + 1, -r : r + 1]
    inside = dy**2 + dx**2 <= radius**2
    dy, dx = dy[inside], dx[inside]
    rows = np.round(centres[:, :1]).astype(int) + dy[None]
    cols = np.round(centres[:, 1:]).astype(int) + dx[None]
    k = np.repeat(np.arange(len(centres)), dy.size).reshape(rows.shape)
    ok = (rows >= 0) & (rows < h) & (cols >= 0) & (cols < w)
    data = np.ones(ok.sum(), np.float32)
    return sp.csr_array((data, (k[ok], rows[ok] * w + cols[ok])), shape=(len(centres), h * w))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--cells", type=int, default=1500)
    p.add_argument("--size", type=int, default=1024)
    p.add_argument("--runs", type=int, default=5)
    args = p.parse_args()
    rng = np.random.default_rng(0)
    n, size = args.cells, args.size
    centres = rng.uniform(8, size - 8, size=(n, 2))
    truth = Truth(footprints=discs(centres, 5.0, size, size), height=size, width=size)
    keep = rng.permutation(n)[: n - 100]
    est = sp.csr_array(sp.vstack([
        discs(centres[keep] + (1.0, -2.0), 5.0, size, size),
        discs(rng.uniform(2, size - 2, size=(100, 2)), 0.8, size, size),
    ]))
    seconds = []
    for _ in range(args.runs):
        t0 = time.perf_counter()
        fe = score_footprints(est, truth)
        seconds.append(time.perf_counter() - t0)
    s = score(fe.main)
    print(f"offset ({fe.offset.dy:+.2f}, {fe.offset.dx:+.2f}) px; "
          f"TP {s.n_tp} FP {s.n_fp} FN {s.n_fn}")
    t = np.array(seconds)
    print()
    print("| evaluate | runs | median s | min s | max s |")
    print("| --- | --- | --- | --- | --- |")
    print(f"| {n} x {n} cells at {size}x{size} | {len(t)} | {np.median(t):.2f} | {t.min():.2f} | "
          f"{t.max():.2f} |")


if __name__ == "__main__":
    main()
