"""Forward time of the detector network (``rtcal.detect.model``) on a CPU.

    python bench/detector_speed.py                       # default config, 256 and 512, 2 threads
    python bench/detector_speed.py --sizes 128 256 512 1024 --threads 2 --runs 5

A freshly initialised ``DetectorNet`` (the default ``DetectorNetConfig`` unless
a checkpoint is given) in eval mode under ``torch.inference_mode``; one warm-up
call per size (it also builds the cached Swin attention masks), then the median
of --runs timed forward passes on random input of batch 1. Network only: no
input channels, no thresholding of masks. Target (issue 4): the whole detector
within 2 s at 512 x 512 on 2 CPU cores.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch

from rtcal.detect.model import build_detector, load_detector, n_parameters


def time_forward(model: torch.nn.Module, size: int, runs: int, in_channels: int) -> list[float]:
    """Wall-clock seconds of ``runs`` forward passes at size x size after one warm-up."""
    x = torch.randn(1, in_channels, size, size, generator=torch.Generator().manual_seed(0))
    with torch.inference_mode():
        model(x)
        times = []
        for _ in range(runs):
            t0 = time.perf_counter()
            model(x)
            times.append(time.perf_counter() - t0)
    return times


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--sizes", type=int, nargs="+", default=(256, 512))
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--runs", type=int, default=5)
    p.add_argument("--checkpoint", default=None, help="a save_checkpoint file (default: fresh)")
    args = p.parse_args()

    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    model = load_detector(args.checkpoint)[0] if args.checkpoint else build_detector()
    model.eval()
    n_params = n_parameters(model)
    print(f"config: {model.config}")
    print(f"parameters: {n_params:,} ({4 * n_params / 2**20:.1f} MiB float32); "
          f"torch {torch.__version__}, {args.threads} threads")
    print(f"{'size':>9} {'median ms':>10} {'min ms':>8} {'max ms':>8}")
    for size in args.sizes:
        times_ms = 1e3 * np.array(time_forward(model, size, args.runs, model.config.in_channels))
        print(f"{size:>4}x{size:<4} {np.median(times_ms):>10.1f} {times_ms.min():>8.1f} "
              f"{times_ms.max():>8.1f}")


if __name__ == "__main__":
    main()
