"""``rtcal train [--preset NAME] [--device cpu|cuda] [--steps N] [--out DIR] [--resume STATE]``."""

from __future__ import annotations

import argparse

DESCRIPTION = """\
Train the learned footprint detector on simulated windows drawn on the fly
(2p and 1p, randomised density, soma size, noise, background, residual motion
and frame rate), with Hungarian matching, class / mask (focal + dice) / centre
losses and, by default, the end-to-end trace loss (1 - Pearson of the traces
the predicted masks yield with the true calcium) plus its contrastive term.
Writes OUT/state.pt (resumable training state, every checkpoint), OUT/curve.csv,
OUT/validation.csv, OUT/curve.png and, at the end, OUT/detector.pt (the weights
alone). `--preset default` reproduces the weights shipped in the package for 1p
recordings (and exported by default), `--preset 2p` those for 2p recordings.
"""


# = rtcal.detect.losses.LOSS_MODES (a test checks), spelled out so --help needs no torch
LOSS_CHOICES = ("mask", "mask+trace", "mask+trace+contrastive")


def add_parser(sub, name: str, help_text: str) -> argparse.ArgumentParser:
    p = sub.add_parser(name, help=help_text, description=DESCRIPTION)
    p.add_argument("--preset", default="default", metavar="NAME",
                   help="training preset: default, ablation, 2p, 1p, smoke or gpu "
                   "(default: default)")
    p.add_argument("--device", default="cpu", metavar="DEV", help="cpu or cuda (default cpu)")
    p.add_argument("--steps", type=int, default=None, metavar="N",
                   help="optimisation steps (default: the preset's)")
    p.add_argument("--out", default="runs/detector", metavar="DIR",
                   help="output directory (default runs/detector)")
    p.add_argument("--resume", default=None, metavar="STATE",
                   help="continue from a training state (OUT/state.pt of an earlier run)")
    p.add_argument("--loss", choices=LOSS_CHOICES, default=None,
                   help="loss terms (default: the preset's, mask+trace+contrastive); "
                   "the ablation trains one model per choice")
    p.add_argument("--threads", type=int, default=None, metavar="N",
                   help="torch CPU threads (default: torch's choice)")
    p.add_argument("--workers", type=int, default=0, metavar="N",
                   help="processes simulating training windows ahead (default 0: inline)")
    p.add_argument("--no-plot", action="store_true", help="do not draw curve.png")
    return p


def run(args: argparse.Namespace) -> int:
    import time

    import torch

    from rtcal.detect.presets import get_preset
    from rtcal.detect.train import Trainer, TrainError, run_training

    if args.device.startswith("cuda") and not torch.cuda.is_available():
        raise TrainError("--device cuda: CUDA is not available in this torch build/machine")
    if args.threads:
        torch.set_num_threads(args.threads)
    preset = get_preset(args.preset)
    if args.workers < 0:
        raise TrainError(f"--workers {args.workers}: must be >= 0")
    trainer = Trainer(preset, args.device, args.loss, args.steps, args.workers)
    try:
        if args.resume:
            trainer.resume(args.resume)
        report_start(trainer, args)
        first_step = trainer.step
        start = time.perf_counter()
        paths = run_training(trainer, args.out, plot=not args.no_plot)
    finally:
        trainer.close()
    report_end(trainer, paths, (time.perf_counter() - start) / 60, first_step)
    return 0


def report_start(trainer, args: argparse.Namespace) -> None:
    import torch

    preset = trainer.preset
    n_params = sum(p.numel() for p in trainer.model.parameters())
    print(f"preset {preset.name}: {n_params / 1e6:.2f} M parameters, loss {trainer.loss_mode}, "
          f"steps {trainer.step}->{trainer.total_steps}, batch {preset.batch_size}, "
          f"device {args.device}, {torch.get_num_threads()} threads, {args.workers} data workers")


def report_end(trainer, paths, minutes: float, first_step: int = 0) -> None:
    last = trainer.val_history[-1] if trainer.val_history else None
    if last:
        print(f"validation at step {last['step']}: F1 {last['f1']:.3f}, "
              f"median trace r {last['median_trace_corr']:.3f}")
    print(f"steps {first_step}->{trainer.step} (and the threshold calibration) in "
          f"{minutes:.1f} min; weights {paths.weights}, "
          f"state {paths.state}, curve {paths.curve_png}")
