"""Where the detector's fp16 outputs depart from float32, module by module (CUDA only).

    python tools/detector_fp16_diag.py            # the small test network, random input
    python tools/detector_fp16_diag.py --shipped  # the shipped weights, a simulated window

Runs the network in float32 and under fp16 autocast on the GPU, prints the
largest mask-logit difference against CPU float32 for eager fp32, eager fp16
and ``torch.compile`` fp16, the fraction of mask pixels whose sign (inside /
outside) flips, and the first modules (in execution order) whose outputs differ
by more than 2 % of their scale. On the H200 (2026-11-24) the first to depart
was the query initialisation: fp16 near-ties in the centre heatmap's top-k
picked other queries (since then the heatmap and the head run in float32).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import torch

from rtcal.detect.model import DetectorExport


def load(shipped: bool) -> tuple[torch.nn.Module, torch.Tensor]:
    if shipped:
        from rtcal.detect.inputs import input_channels
        from rtcal.detect.learned import N_SUMMARY, shipped_weights
        from rtcal.detect.model import load_detector
        from rtcal.sim import Simulation, make_config

        model = load_detector(shipped_weights())[0].eval()
        cfg = make_config("2p", height=256, width=256, n_frames=300, n_neurons=60, seed=11)
        frames = np.stack([f.image for f in Simulation(cfg).stream()]).astype(np.float32)
        n_key = model.config.in_channels - N_SUMMARY
        x = torch.from_numpy(input_channels(frames, n_key))[None]
        return model, x
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
    from detect_tiny import tiny_model

    torch.manual_seed(0)
    model = tiny_model().eval()
    return model, torch.randn(2, model.config.in_channels, 64, 64)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--shipped", action="store_true")
    args = p.parse_args()
    if not torch.cuda.is_available():
        sys.exit("needs CUDA")
    model, x = load(args.shipped)
    with torch.inference_mode():
        ref_logits, ref_masks = model.export_forward(x)
    module = DetectorExport(model.cuda().eval())
    xc = x.cuda()

    def fp16(fn):
        def run():
            with torch.autocast("cuda", torch.float16):
                return fn()
        return run

    def compare(name: str, fn) -> None:
        with torch.inference_mode():
            logits, masks = (t.float().cpu() for t in fn())
        d = (masks - ref_masks).abs()
        flips = ((masks > 0) != (ref_masks > 0)).float().mean()
        print(f"{name}: logits max diff {float((logits - ref_logits).abs().max()):.3g}; masks "
              f"max {float(d.max()):.3g}, p99.9 {float(d.flatten().quantile(0.999)):.3g} "
              f"(scale {float(ref_masks.abs().max()):.3g}); sign flips {float(flips):.4f}")

    with torch.inference_mode():
        module(xc)  # fills the attention-mask caches
    compare("eager fp32", lambda: module(xc))
    compare("eager fp16", fp16(lambda: module(xc)))
    records: dict[str, list[torch.Tensor]] = {}

    def hook(name):
        def record(_, __, out):
            t = out[0] if isinstance(out, (tuple, list)) else out
            t = getattr(t, "masks", t)
            if torch.is_tensor(t):
                records.setdefault(name, []).append(t.detach().float().clone())
        return record

    handles = [m.register_forward_hook(hook(n)) for n, m in module.named_modules()
               if n and n.count(".") <= 4]
    with torch.inference_mode():
        module(xc)
        full = {k: v[:] for k, v in records.items()}
        records.clear()
        fp16(lambda: module(xc))()
    for h in handles:
        h.remove()
    rows = [(float((a - b).abs().max() / (a.abs().max() + 1e-6)), k, i)
            for k in full for i, (a, b) in enumerate(zip(full[k], records.get(k, []), strict=False))
            if a.shape == b.shape]
    print("first modules departing by > 2 % of their scale, in execution order:")
    for err, name, i in [r for r in rows if r[0] > 0.02][:12]:
        print(f"  {name}[{i}]: {err:.3g}")
    compiled = torch.compile(module, mode="reduce-overhead", dynamic=False)
    compare("compile fp16", fp16(lambda: compiled(xc)))


if __name__ == "__main__":
    main()
