"""Per-frame cost of the online pipeline, by stage, on simulated movies.

    python bench/online.py                      # the three issue sizes, 2 runs each
    python bench/online.py --sizes 256 --runs 3 --frames 1500
    python bench/online.py --backend cuda       # per-frame stages on the GPU (docs/gpu.md)
    python bench/online.py --backend cuda --sizes 512 --neurons 1000   # the issue's CUDA target

For each size: a 2p movie is simulated in memory (not timed), then fed frame by
frame through the same Pipeline that `rtcal run` and the live engine use, with
their default detector for 2p (the learned one; ``--detector seed`` for the
classical one) on the first 300 frames.
Reported over the frames after initialisation: per-stage and total time per
frame (median, p99, max), frames/s, the pipeline's own peak allocation
(tracemalloc, in a separate untimed run: NumPy and Numba arrays included), and
the process's peak resident memory (which includes the simulated movie).
Medians and p99 are the median over runs; max is the worst of all runs.
Before the first run of each size the kernels are compiled (or loaded from
Numba's cache) by ``rtcal.engine.warmup.warm_kernels``, as the live engine does
before it binds its sockets: without it the first run's worst frame is a
kernel's first call (measured: 87 ms at 512 x 512, against 9.7 ms warm).
``--cold`` skips that. ``--gc-freeze`` moves every live object out of the
garbage collector's reach once a run's pipeline has initialised
(``rtcal.engine.gc_pauses``; the engine's ``freeze_gc``).
"""

from __future__ import annotations

import argparse
import resource
import time
import tracemalloc

import numpy as np

from rtcal.cli import limit_blas_threads

limit_blas_threads()

from rtcal.detect.factory import DETECTORS, detector_from_section  # noqa: E402
from rtcal.engine.gc_pauses import freeze_heap  # noqa: E402
from rtcal.engine.pipeline import Pipeline, pipeline_config  # noqa: E402
from rtcal.engine.warmup import warm_kernels  # noqa: E402
from rtcal.sim import Simulation, make_config  # noqa: E402

SIZES = {256: 60, 512: 300, 1024: 1500}  # frame side -> neurons (issue 3)
STAGES = ("motion", "nmf", "deconv", "total")


def one_run(
    size: int, neurons: int, n_frames: int, seed: int, *, trace_memory: bool = False,
    backend: str = "cpu",
    cuda_graphs: bool = False,
    freeze_gc: bool = False,
    detector: str | None = None,
) -> tuple[np.ndarray, float]:
    """Returns float64 (n, 4) ms per frame (motion, nmf, deconv, total) and, with
    trace_memory, the pipeline's peak traced allocation in MiB (else NaN)."""
    cfg = make_config(
        "2p", height=size, width=size, n_frames=n_frames, n_neurons=neurons, seed=seed
    )
    frames = [f.image for f in Simulation(cfg).stream()]
    if trace_memory:
        tracemalloc.start()
    config = pipeline_config(cfg.fps_hz, 6.0, backend=backend, cuda_graphs=cuda_graphs)
    pipeline = Pipeline(config, detector_from_section(None, config, name=detector))
    rows = []
    frozen = not freeze_gc
    for i, frame in enumerate(frames):
        if not frozen and pipeline.initialised:  # as the live engine does after its warm-up
            freeze_heap()
            frozen = True
        t0 = time.perf_counter_ns()
        outputs = pipeline.push(i, frame)
        t1 = time.perf_counter_ns()
        if len(outputs) == 1 and pipeline.initialised:
            rows.append((*outputs[0].stage_ns, t1 - t0))
    peak_mib = float("nan")
    if trace_memory:
        peak_mib = tracemalloc.get_traced_memory()[1] / 2**20
        tracemalloc.stop()
    return np.array(rows, dtype=np.float64) / 1e6, peak_mib


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--sizes", type=int, nargs="+", default=list(SIZES), choices=list(SIZES))
    p.add_argument("--frames", type=int, default=1300, help="frames per run (300 initialise)")
    p.add_argument("--runs", type=int, default=2)
    p.add_argument("--backend", choices=("cpu", "cuda"), default="cpu")
    p.add_argument("--cuda-graphs", action="store_true", help="with --backend cuda")
    p.add_argument("--cold", action="store_true", help="no kernel warm-up before the runs")
    p.add_argument("--detector", choices=DETECTORS, default=None,
                   help="initial detector (default: rtcal run's for 2p, learned)")
    p.add_argument("--gc-freeze", action="store_true",
                   help="freeze the heap after initialisation (rtcal.engine.gc_pauses)")
    p.add_argument("--neurons", type=int, default=None, help="neurons at every size "
                   "(default: 60 / 300 / 1500 for 256 / 512 / 1024)")
    args = p.parse_args()
    if args.neurons is not None:
        SIZES.update({size: args.neurons for size in args.sizes})
    table = []
    for size in args.sizes:
        if not args.cold:
            warm_kernels(pipeline_config(30.0, 6.0, backend=args.backend,
                                         cuda_graphs=args.cuda_graphs))
        runs = [
            one_run(size, SIZES[size], args.frames, seed=100 + r, backend=args.backend,
                    cuda_graphs=args.cuda_graphs, freeze_gc=args.gc_freeze,
                    detector=args.detector)[0]
            for r in range(args.runs)
        ]
        # One more, untimed, run under tracemalloc for the pipeline's own peak (host) memory.
        _, peak_mib = one_run(
            size, SIZES[size], args.frames, seed=100, trace_memory=True, backend=args.backend,
            cuda_graphs=args.cuda_graphs, detector=args.detector,
        )
        for r, ms in enumerate(runs):
            print(
                f"{size}x{size}, run {r}: total median {np.median(ms[:, 3]):.2f} ms, "
                f"p99 {np.percentile(ms[:, 3], 99):.2f} ms, max {ms[:, 3].max():.1f} ms"
            )
        med = np.median([np.median(ms, axis=0) for ms in runs], axis=0)
        p99 = np.median([np.percentile(ms, 99, axis=0) for ms in runs], axis=0)
        worst = np.max([ms.max(axis=0) for ms in runs], axis=0)
        table.append((size, SIZES[size], med, p99, worst, peak_mib))
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    if args.backend == "cuda":
        from rtcal.backend import cuda

        print(f"device memory held by CuPy's pool (about its peak): {cuda.pool_bytes() >> 20} MiB")
    print()
    print(
        "| size | neurons | "
        + " | ".join(f"{s} med / p99 / max ms" for s in STAGES)
        + " | frames/s | pipeline peak MiB |"
    )
    print("| --- | --- | " + " | ".join("---" for _ in STAGES) + " | --- | --- |")
    for size, k, med, p99, worst, peak_mib in table:
        cells = " | ".join(
            f"{a:.2f} / {b:.2f} / {c:.1f}" for a, b, c in zip(med, p99, worst, strict=True)
        )
        print(f"| {size}x{size} | {k} | {cells} | {1000 / med[3]:.0f} | {peak_mib:.0f} |")
    print(
        f"\npeak resident memory of this process (simulation included): {peak_mb:.0f} MiB "
        f"({args.runs} runs x {len(args.sizes)} sizes, {args.frames} frames each)"
    )


if __name__ == "__main__":
    main()
