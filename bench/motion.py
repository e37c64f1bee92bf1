"""Motion correction speed and accuracy on simulated 2p movies, rigid and piecewise-rigid.

    python bench/motion.py                          # 256, 512, 1024; 200 frames; 3 runs
    python bench/motion.py --sizes 512 --frames 300 --runs 5

For each frame size a movie with motion_px=2 (about 60 neurons per 256x256) is
simulated once; each run builds a fresh corrector from the first --init frames
(``from_frames``) and times ``step`` on every frame (one thread). Registration
error is the RMS over frames and axes of the estimated minus the true shift,
each taken relative to its mean over the movie (the template is not the truth
frame). Targets (issue: motion): rigid RMS close to the noise floor, rigid step
~1-2 ms median at 512x512.
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from rtcal.motion.corrector import MotionConfig, MotionCorrector
from rtcal.sim import Simulation, make_config


def simulate(size: int, n_frames: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """uint16 frames (T, size, size) and true shifts float64 (T, 2)."""
    cfg = make_config("2p", height=size, width=size, n_frames=n_frames,
                      n_neurons=int(60 * (size / 256) ** 2), motion_px=2.0, seed=seed)
    frames, shifts = zip(*((f.image, f.shift) for f in Simulation(cfg).stream()), strict=True)
    return np.stack(frames), np.array(shifts, np.float64)


def run_once(
    config: MotionConfig, frames: np.ndarray, n_init: int
) -> tuple[np.ndarray, np.ndarray]:
    """Per-frame step times (ms) and estimated shifts (T, 2) of one fresh corrector."""
    corrector = MotionCorrector.from_frames(config, frames[:n_init])
    times_ms, shifts = np.empty(len(frames)), np.empty((len(frames), 2))
    for t, frame in enumerate(frames):
        t0 = time.perf_counter_ns()
        step = corrector.step(frame)
        times_ms[t] = (time.perf_counter_ns() - t0) / 1e6
        shifts[t] = step.shift
    return times_ms, shifts


def rms_error_px(estimated: np.ndarray, truth: np.ndarray) -> float:
    err = (estimated - estimated.mean(0)) - (truth - truth.mean(0))
    return float(np.sqrt((err**2).mean()))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--sizes", type=int, nargs="+", default=(256, 512, 1024))
    p.add_argument("--frames", type=int, default=200)
    p.add_argument("--init", type=int, default=50, help="frames for the first template")
    p.add_argument("--runs", type=int, default=3)
    p.add_argument("--max-correlation-px", type=int, default=MotionConfig().max_correlation_px)
    args = p.parse_args()
    modes = {"rigid": False, "piecewise": True}
    rows = []
    for size in args.sizes:
        t0 = time.perf_counter()
        frames, truth = simulate(size, args.frames, seed=1)
        print(f"{size}x{size}: simulated {len(frames)} frames in {time.perf_counter() - t0:.1f} s")
        for mode, piecewise in modes.items():
            config = MotionConfig(piecewise=piecewise, max_correlation_px=args.max_correlation_px)
            times, errors = [], []
            for run in range(args.runs):
                times_ms, shifts = run_once(config, frames, args.init)
                if run == 0:
                    times_ms = times_ms[1:]  # Numba's first call loads the compiled code
                times.append(times_ms)
                errors.append(rms_error_px(shifts, truth))
            t = np.concatenate(times)
            rows.append((size, mode, len(t), np.median(t), np.percentile(t, 99), t.max(),
                         np.mean(errors), 1000 / np.median(t)))
            print(f"  {mode}: median {rows[-1][3]:.2f} ms, RMS {rows[-1][6]:.3f} px")
    print()
    print(f"max_correlation_px={args.max_correlation_px}, {args.frames} frames x {args.runs} runs")
    print("| frame | mode | frames timed | median ms | p99 ms | max ms | RMS error px | frames/s |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- |")
    for size, mode, n, med, p99, worst, rms, fps in rows:
        print(f"| {size}x{size} | {mode} | {n} | {med:.2f} | {p99:.2f} | {worst:.2f} | "
              f"{rms:.3f} | {fps:.0f} |")


if __name__ == "__main__":
    main()
