"""Where the per-frame time of the online pipeline goes: cProfile of the steady state.

    python tools/profile_step.py --backend cuda --size 512 --neurons 1000
    python tools/profile_step.py --backend cpu --size 256 --neurons 60 --top 40

Simulates a 2p movie (not profiled), initialises the pipeline on its first
frames, warms it up for 50 frames, then profiles ``--frames`` steady-state
frames with cProfile and prints the functions by total (own) time and by
cumulative time. With ``--backend cuda`` the device is synchronised after every
frame, so kernel time that a frame leaves queued is charged to that frame
(the pipeline's own host syncs already do this, at the motion decision and the
trace download). The per-frame wall times of the profiled frames (which include
cProfile's overhead) are printed first.
"""

from __future__ import annotations

import argparse
import cProfile
import io
import pstats
import time

import numpy as np

from rtcal.cli import limit_blas_threads

limit_blas_threads()

from rtcal.engine.pipeline import Pipeline, pipeline_config  # noqa: E402
from rtcal.sim import Simulation, make_config  # noqa: E402


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--backend", choices=("cpu", "cuda"), default="cpu")
    p.add_argument("--cuda-graphs", action="store_true")
    p.add_argument("--size", type=int, default=256)
    p.add_argument("--neurons", type=int, default=60)
    p.add_argument("--frames", type=int, default=300, help="profiled frames")
    p.add_argument("--top", type=int, default=30)
    args = p.parse_args()
    init, warm = 300, 50
    cfg = make_config("2p", height=args.size, width=args.size, n_frames=init + warm + args.frames,
                      n_neurons=args.neurons, seed=7)
    frames = [f.image for f in Simulation(cfg).stream()]
    pipeline = Pipeline(pipeline_config(cfg.fps_hz, 6.0, backend=args.backend,
                                        cuda_graphs=args.cuda_graphs))
    sync = lambda: None  # noqa: E731
    if args.backend == "cuda":
        import cupy

        sync = cupy.cuda.get_current_stream().synchronize
    for i in range(init + warm):
        pipeline.push(i, frames[i])
    sync()
    profiler = cProfile.Profile()
    wall = []
    for i in range(init + warm, len(frames)):
        t0 = time.perf_counter()
        profiler.enable()
        pipeline.push(i, frames[i])
        sync()
        profiler.disable()
        wall.append(time.perf_counter() - t0)
    ms = 1e3 * np.asarray(wall)
    print(f"{args.backend} {args.size}x{args.size}, {args.neurons} neurons: "
          f"{len(ms)} profiled frames, median {np.median(ms):.2f} ms, "
          f"p99 {np.percentile(ms, 99):.2f} ms, max {ms.max():.1f} ms (with cProfile)")
    for key in ("tottime", "cumulative"):
        out = io.StringIO()
        pstats.Stats(profiler, stream=out).sort_stats(key).print_stats(args.top)
        print(f"\n---- by {key} ----")
        print(out.getvalue())


if __name__ == "__main__":
    main()
