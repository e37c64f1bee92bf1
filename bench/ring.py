"""Per-frame cost of the ring background b = b0 + U W_d (D r - D b0) (rtcal.nmf.ring).

    python bench/ring.py                              # 256x256 and 512x512, ring 13.5 px, 3 runs
    python bench/ring.py --size 512 512 --downsample 2 4 --radius 20 --runs 5

W_d has the sparsity of a real fit (a ring per coarse pixel, cells excluded from
the sources: a 25 % cell-covered field) with uniform weights; the cost does not
depend on the weight values. Prints, per configuration, the median and p99 of
RingModel.background (fused Numba pass) over the frames of each run, and the
median over runs of those; and the same for the plain SciPy/NumPy path
(block mean, CSR matvec, bilinear upsampling) for comparison.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import scipy.sparse as sp

from rtcal.nmf.ring import RingConfig, RingModel
from rtcal.nmf.ring_fit import ring_sources


def synthetic_model(h: int, w: int, config: RingConfig, seed: int = 0) -> RingModel:
    """A ring model with a fitted model's sparsity and uniform ring weights."""
    rng = np.random.default_rng(seed)
    f = config.downsample
    hc, wc = -(-h // f), -(-w // f)
    cells = rng.random((hc, wc)) < 0.25
    sources = ring_sources(cells, config)
    indptr = np.r_[0, np.cumsum([s.size for s in sources])]
    data = np.concatenate([np.full(s.size, 1.0 / max(s.size, 1), np.float32) for s in sources])
    weights = sp.csr_matrix((data, np.concatenate(sources), indptr), shape=(hc * wc, hc * wc))
    b0 = (1500 + 100 * rng.standard_normal((h, w))).astype(np.float32)
    return RingModel(b0, weights, config)


def scipy_background(model: RingModel, residual: np.ndarray) -> np.ndarray:
    """The same maths with NumPy block means, a SciPy CSR matvec and NumPy interpolation."""
    g = model.grid
    fluct = g.downsample(residual).ravel() - model.b0_coarse
    coarse = (model.weights @ fluct.astype(np.float32)).reshape(g.coarse_shape)
    return model.b0 + g.upsample(coarse)


def time_calls(fn, frames: np.ndarray) -> np.ndarray:
    """Microseconds per call of fn(frame) over frames (after one warm-up call)."""
    fn(frames[0])
    out = np.empty(len(frames))
    for i, frame in enumerate(frames):
        t0 = time.perf_counter_ns()
        fn(frame)
        out[i] = (time.perf_counter_ns() - t0) / 1e3
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--size", type=int, nargs="+", default=[256, 512], help="square frame sizes")
    p.add_argument("--downsample", type=int, nargs="+", default=[2])
    p.add_argument("--radius", type=float, default=13.5, help="ring radius, px")
    p.add_argument("--frames", type=int, default=300)
    p.add_argument("--runs", type=int, default=3)
    args = p.parse_args()
    rows = []
    for size in args.size:
        for ds in args.downsample:
            config = RingConfig(ring_radius_px=args.radius, downsample=ds)
            model = synthetic_model(size, size, config)
            rng = np.random.default_rng(1)
            frames = (1500 + 40 * rng.standard_normal((args.frames, size, size))).astype(np.float32)
            fast, plain = [], []
            for _ in range(args.runs):
                us = time_calls(model.background, frames)
                fast.append((np.median(us), np.percentile(us, 99)))
                us = time_calls(lambda r, m=model: scipy_background(m, r), frames[:50])
                plain.append((np.median(us), np.percentile(us, 99)))
            fast_m, plain_m = np.median(fast, axis=0), np.median(plain, axis=0)
            rows.append((size, ds, model.nnz, *fast_m, *plain_m))
    print(f"ring background per frame, ring radius {args.radius} px, "
          f"median over {args.runs} runs of ({args.frames} frames each)")
    print(f"{'size':>9} {'ds':>3} {'nnz':>9} {'fused med us':>13} {'fused p99 us':>13} "
          f"{'scipy med us':>13} {'scipy p99 us':>13}")
    for size, ds, nnz, fm, fp, pm, pp in rows:
        print(f"{size:>4}x{size:<4} {ds:>3} {nnz:>9} {fm:>13.0f} {fp:>13.0f} "
              f"{pm:>13.0f} {pp:>13.0f}")


if __name__ == "__main__":
    main()
