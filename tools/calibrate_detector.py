"""Calibrate a detector checkpoint's score threshold per kind of recording.

    python tools/calibrate_detector.py CKPT [--out PATH] [--windows-per-mode N]
                                       [--preset NAME]

``rtcal train`` does this at the end of a run with validation
(``rtcal.detect.train.calibrate_by_mode``): for 2p and for 1p, the "neuron"
score threshold with the best F1 on N held-out windows of that kind (the
validation seeds, disjoint from training and from bench/detector.py's
windows). This script applies it to a checkpoint trained before it existed,
the shipped one included. It writes the checkpoint again with the same weights
and adds ``score_threshold_by_mode`` (and each mode's scores) to its extra
data. Without --out, it rewrites CKPT in place. It prints, per mode, the chosen
threshold's precision, recall and F1, and the F1 at the checkpoint's single
threshold on the same windows.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch

from rtcal.detect.model import load_detector, save_checkpoint
from rtcal.detect.presets import get_preset
from rtcal.detect.train import (
    CALIBRATION_THRESHOLDS,
    CALIBRATION_WINDOWS_PER_MODE,
    by_mode_extra,
    calibrate_by_mode,
    calibration_samples,
)
from rtcal.detect.validate import validate


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("checkpoint", type=Path)
    p.add_argument("--out", type=Path, help="where to write (default: CKPT itself)")
    p.add_argument("--windows-per-mode", type=int, default=CALIBRATION_WINDOWS_PER_MODE)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--preset", help="training preset whose window settings to simulate "
                   "(default: the checkpoint's, else default)")
    args = p.parse_args()
    torch.set_num_threads(args.threads)

    model, extra = load_detector(args.checkpoint)
    preset = get_preset(args.preset or extra.get("preset", "default"))
    calibration = calibrate_by_mode(model, preset, "cpu", args.windows_per_mode)
    pooled = extra.get("score_threshold")
    print(f"{args.checkpoint}: pooled threshold {pooled}; {args.windows_per_mode} held-out "
          "windows per mode")
    print("| mode | threshold | precision | recall | F1 | at the pooled threshold |")
    print("| --- | ---: | ---: | ---: | ---: | ---: |")
    for mode, (threshold, scores) in calibration.items():
        at_pooled = "-"
        if pooled in CALIBRATION_THRESHOLDS:  # the same windows, scored at the old value
            samples = calibration_samples(preset, mode, args.windows_per_mode)
            old = validate(model, samples, "cpu", pooled,
                           background_sigma_px=preset.trace.background_sigma_px)
            at_pooled = f"{old.f1:.3f}"
        print(f"| {mode} | {threshold:.2f} | {scores.precision:.3f} | {scores.recall:.3f} "
              f"| {scores.f1:.3f} | {at_pooled} |")
    extra.update(by_mode_extra(calibration, args.windows_per_mode))
    out = args.out or args.checkpoint
    save_checkpoint(out, model, extra)
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
