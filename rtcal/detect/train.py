"""Training of the learned detector: the stepper (``Trainer``) and the loop (``run_training``).

One step takes ``batch_size`` simulated windows (``window_source``: the seeds
are a function of the step, so a run is reproducible and resumable without
storing data; each window serves ``views_per_window`` steps under different
symmetries), runs the network, computes ``SetCriterion``'s losses, and takes an
AdamW step with gradient-norm clipping. The learning rate warms up
linearly and then follows a cosine to ``final_lr_ratio`` x lr (Loshchilov &
Hutter 2017); the trace terms ramp in linearly from ``trace_start_step`` over
``trace_ramp_steps`` (masks are noise at first, and their traces carry no
useful signal).

``run_training`` is the wiring: progress bar, periodic validation, the
training state every ``checkpoint_every`` steps (model, optimizer, scheduler,
torch RNG, step, history: a resumed run continues exactly; resuming with a
different step count stretches the schedule from there on), the curve as CSV
and PNG, and at the end the detector weights alone (``model.save_checkpoint``).
"""

from __future__ import annotations

import math
import os
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import numpy as np
import torch

from rtcal.detect.losses import LOSS_MODES, SetCriterion
from rtcal.detect.matcher import build_matcher
from rtcal.detect.model import build_detector, save_checkpoint
from rtcal.detect.presets import TrainPreset
from rtcal.detect.train_data import collate, make_sample, validation_seeds
from rtcal.detect.train_log import save_curve, write_csv
from rtcal.detect.validate import ValidationScores, validate
from rtcal.detect.window_source import WindowSource
from rtcal.errors import RtcalError

STATE_FORMAT = "rtcal-detector-train-state/1"
CALIBRATION_THRESHOLDS = (0.15, 0.2, 0.25, 0.3, 0.35, 0.4, 0.45, 0.5, 0.6, 0.7)
CALIBRATION_WINDOWS_PER_MODE = 16  # held-out windows per kind for the per-mode thresholds


class TrainError(RtcalError):
    """Training cannot start or resume as asked; the message says why."""


def lr_factor(step: int, warmup_steps: int, total_steps: int, final_ratio: float) -> float:
    """Learning-rate multiplier of step ``step`` (0-based): linear warm-up, then cosine."""
    if step < warmup_steps:
        return (step + 1) / warmup_steps
    progress = min((step - warmup_steps) / max(total_steps - warmup_steps, 1), 1.0)
    return final_ratio + (1 - final_ratio) * 0.5 * (1 + math.cos(math.pi * progress))


def trace_scale(step: int, start: int, ramp: int) -> float:
    """Weight multiplier of the trace terms: 0 before ``start``, 1 after ``start + ramp``."""
    if ramp <= 0:
        return float(step >= start)
    return float(np.clip((step - start) / ramp, 0.0, 1.0))


def _param_groups(model: torch.nn.Module, weight_decay: float) -> list[dict]:
    """Weight decay on matrices and kernels only, not on biases, norms and scales."""
    decay = [p for p in model.parameters() if p.requires_grad and p.ndim >= 2]
    other = [p for p in model.parameters() if p.requires_grad and p.ndim < 2]
    return [{"params": decay, "weight_decay": weight_decay},
            {"params": other, "weight_decay": 0.0}]


class Trainer:
    """Model, optimizer, schedule, criterion and data of one run; ``train_step`` advances it.

    workers: processes simulating windows ahead of the training (0: in this one).
    """

    def __init__(self, preset: TrainPreset, device: str | torch.device = "cpu",
                 loss_mode: str | None = None, total_steps: int | None = None,
                 workers: int = 0) -> None:
        self.preset, self.device = preset, torch.device(device)
        self.loss_mode = loss_mode or preset.loss_mode
        if self.loss_mode not in LOSS_MODES:
            raise TrainError(f"loss mode {self.loss_mode!r}: must be one of {LOSS_MODES}")
        self.total_steps = int(total_steps or preset.steps)
        if self.total_steps < 1:
            raise TrainError(f"steps={self.total_steps}: must be >= 1")
        torch.manual_seed(preset.seed)
        self.model = build_detector(preset.net).to(self.device)
        self.optimizer = torch.optim.AdamW(_param_groups(self.model, preset.weight_decay),
                                           lr=preset.lr, betas=(0.9, 0.999))
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(
            self.optimizer, lambda step: self._lr_factor(step))  # a function: not pickled
        self.criterion = SetCriterion(build_matcher(preset.match), preset.loss,
                                      self.loss_mode, preset.trace)
        self.step = 0
        self.history: list[dict[str, float]] = []
        self.val_history: list[dict[str, float]] = []
        self._val_samples = None
        self.windows = WindowSource(preset.data, preset.seed, preset.batch_size,
                                    preset.views_per_window, workers)

    def close(self) -> None:
        """Release the data workers."""
        self.windows.close()

    def _lr_factor(self, step: int) -> float:
        p = self.preset
        return lr_factor(step, p.warmup_steps, self.total_steps, p.final_lr_ratio)

    def train_step(self) -> dict[str, float]:
        """One optimisation step on fresh windows; returns its log row."""
        p, start = self.preset, time.perf_counter()
        batch = collate(self.windows.samples(self.step), self.device)
        t_data = time.perf_counter() - start
        self.model.train()
        outputs = self.model(batch.inputs)
        scale = trace_scale(self.step, p.trace_start_step, p.trace_ramp_steps)
        terms = self.criterion(outputs, batch.centre, batch.targets, trace_scale=scale)
        self.optimizer.zero_grad(set_to_none=True)
        terms.total.backward()
        grad_norm = torch.nn.utils.clip_grad_norm_(self.model.parameters(), p.grad_clip)
        lr = self.optimizer.param_groups[0]["lr"]
        self.optimizer.step()
        self.scheduler.step()
        self.step += 1
        corr = terms.trace_corr
        row = {"step": self.step, "lr": lr, **terms.as_floats(),
               "trace_corr": float(corr.median()) if corr.numel() else float("nan"),
               "grad_norm": float(grad_norm), "data_s": t_data,
               "seconds": time.perf_counter() - start}
        self.history.append(row)
        return row

    def validate(self) -> ValidationScores:
        """Scores on the held-out windows (built once, full-resolution trace frames)."""
        p = self.preset
        if self._val_samples is None:
            from dataclasses import replace

            data = replace(p.data, trace_downsample=1)
            self._val_samples = [make_sample(data, s) for s in validation_seeds(p.val_windows)]
        scores = validate(self.model, self._val_samples, self.device,
                          background_sigma_px=p.trace.background_sigma_px)
        self.val_history.append({"step": self.step, **asdict(scores)})
        return scores

    def calibrate_threshold(self, candidates: tuple[float, ...] = CALIBRATION_THRESHOLDS
                            ) -> tuple[float, ValidationScores]:
        """The "neuron" score threshold with the best F1 on the held-out windows, and its
        scores. Focal-loss scores are not probabilities (they rarely pass 0.5 early in
        training), so the threshold that ships with the weights is chosen here."""
        self.validate()  # builds the samples; this step's scores at 0.5 are recorded
        self.val_history.pop()
        return best_threshold(self.model, self._val_samples, self.device,
                              self.preset.trace.background_sigma_px, candidates)


    def state_dict(self) -> dict:
        """Everything a resumed run needs (plain types and tensors: loads with weights_only)."""
        return {
            "format": STATE_FORMAT, "preset": self.preset.name, "loss_mode": self.loss_mode,
            "total_steps": self.total_steps, "step": self.step,
            "model": self.model.state_dict(), "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(), "torch_rng": torch.get_rng_state(),
            "history": self.history, "val_history": self.val_history,
        }

    def load_state_dict(self, state: dict) -> None:
        """Continue the run ``state`` came from (same preset and loss mode)."""
        if state.get("format") != STATE_FORMAT:
            raise TrainError(f"not a training state ({state.get('format')!r})")
        for key, mine in (("preset", self.preset.name), ("loss_mode", self.loss_mode)):
            if state[key] != mine:
                raise TrainError(f"the checkpoint was trained with {key}={state[key]!r}, "
                                 f"this run uses {mine!r}")
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        torch.set_rng_state(state["torch_rng"].cpu())  # map_location may have moved it
        self.step = int(state["step"])
        self.history = list(state["history"])
        self.val_history = list(state["val_history"])

    def save_state(self, path: str | Path) -> None:
        """Write the training state atomically (a crash never leaves half a file)."""
        path = Path(path)
        tmp = path.with_suffix(".tmp")
        torch.save(self.state_dict(), tmp)
        os.replace(tmp, path)

    def resume(self, path: str | Path) -> None:
        try:
            state = torch.load(path, map_location=self.device, weights_only=True)
        except (OSError, RuntimeError) as err:
            raise TrainError(f"cannot read training state {path}: {err}") from err
        self.load_state_dict(state)


def best_threshold(model: torch.nn.Module, samples: list, device: str | torch.device,
                   background_sigma_px: float,
                   candidates: tuple[float, ...] = CALIBRATION_THRESHOLDS
                   ) -> tuple[float, ValidationScores]:
    """Of ``candidates``, the score threshold with the best F1 on ``samples`` (the
    first of equals), and its scores."""
    best = None
    for threshold in candidates:
        scores = validate(model, samples, device, threshold,
                          background_sigma_px=background_sigma_px)
        f1 = scores.f1 if math.isfinite(scores.f1) else -1.0
        if best is None or f1 > best[2]:
            best = (threshold, scores, f1)
    return best[0], best[1]


def by_mode_extra(calibration: dict[str, tuple[float, ValidationScores]],
                  windows_per_mode: int = CALIBRATION_WINDOWS_PER_MODE) -> dict:
    """The checkpoint entries of a :func:`calibrate_by_mode` result (plain data)."""
    return {"score_threshold_by_mode": {m: t for m, (t, _) in calibration.items()},
            "calibration_by_mode": {m: asdict(sc) for m, (_, sc) in calibration.items()},
            "calibration_windows_per_mode": int(windows_per_mode)}


def calibrate_by_mode(model: torch.nn.Module, preset: TrainPreset,
                      device: str | torch.device = "cpu",
                      windows_per_mode: int = CALIBRATION_WINDOWS_PER_MODE,
                      candidates: tuple[float, ...] = CALIBRATION_THRESHOLDS
                      ) -> dict[str, tuple[float, ValidationScores]]:
    """Per kind of recording ("2p", "1p"): the score threshold with the best F1 on
    ``windows_per_mode`` held-out windows of that kind (the validation seeds, with
    the kind forced), and its scores.

    One network scores 2p and 1p windows on different scales. With the shipped
    weights, on 32 pooled validation windows (24 2p, 8 1p), the best thresholds
    were 0.4 in 2p and 0.3 in 1p. Their F1 was 0.644 and 0.526, against 0.617
    and 0.462 at the pooled optimum of 0.35. ``LearnedDetector`` uses the
    threshold of the recording's mode (``score_threshold_by_mode`` in the
    checkpoint)."""
    return {mode: best_threshold(model, calibration_samples(preset, mode, windows_per_mode),
                                 device, preset.trace.background_sigma_px, candidates)
            for mode in ("2p", "1p")}


def calibration_samples(preset: TrainPreset, mode: str, n_windows: int) -> list:
    """The held-out windows :func:`calibrate_by_mode` scores for ``mode``: the first
    ``n_windows`` validation seeds, simulated as ``mode`` with full-resolution
    trace frames."""
    data = replace(preset.data, trace_downsample=1, p_one_photon=1.0 if mode == "1p" else 0.0)
    return [make_sample(data, s) for s in validation_seeds(n_windows)]


@dataclass(frozen=True)
class TrainPaths:
    """Files a run writes into its output directory."""

    state: Path
    weights: Path
    curve_csv: Path
    val_csv: Path
    curve_png: Path

    @staticmethod
    def under(out_dir: str | Path) -> TrainPaths:
        out = Path(out_dir)
        return TrainPaths(out / "state.pt", out / "detector.pt", out / "curve.csv",
                          out / "validation.csv", out / "curve.png")


def write_record(trainer: Trainer, paths: TrainPaths, plot: bool = True) -> None:
    """State, CSVs and (optionally) the plot of the run so far."""
    trainer.save_state(paths.state)
    write_csv(trainer.history, paths.curve_csv)
    write_csv(trainer.val_history, paths.val_csv)
    if plot:
        title = f"rtcal detector, preset {trainer.preset.name}, loss {trainer.loss_mode}"
        save_curve(trainer.history, trainer.val_history, paths.curve_png, title)


def _status(trainer: Trainer) -> str:
    """Progress-bar text: loss and trace r averaged over the last 20 steps, last validation."""
    recent = trainer.history[-20:]
    loss = np.mean([r["total"] for r in recent])
    corr = [r["trace_corr"] for r in recent if np.isfinite(r["trace_corr"])]
    text = f"loss {loss:.3f}" + (f" trace r {np.mean(corr):.2f}" if corr else "")
    text += f" {np.mean([r['seconds'] for r in recent]):.2f} s/step"
    if trainer.val_history:
        v = trainer.val_history[-1]
        text += f" | val F1 {v['f1']:.3f} r {v['median_trace_corr']:.3f}"
    return text


def run_training(trainer: Trainer, out_dir: str | Path, progress: bool = True,
                 plot: bool = True) -> TrainPaths:
    """Train to ``trainer.total_steps`` with checkpoints and validation; returns the paths.

    On Ctrl-C the state is written before the interrupt propagates, so
    ``--resume`` continues from the last finished step.
    """
    from rich.progress import (
        BarColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    p, paths = trainer.preset, TrainPaths.under(out_dir)
    paths.state.parent.mkdir(parents=True, exist_ok=True)
    columns = (TextColumn("[bold]train"), BarColumn(), TextColumn("{task.completed}/{task.total}"),
               TimeElapsedColumn(), TimeRemainingColumn(), TextColumn("{task.fields[info]}"))
    with Progress(*columns, disable=not progress, transient=False) as bar:
        task = bar.add_task("train", total=trainer.total_steps, completed=trainer.step, info="")
        try:
            while trainer.step < trainer.total_steps:
                trainer.train_step()
                done = trainer.step == trainer.total_steps
                if p.val_every and (trainer.step % p.val_every == 0 or done):
                    trainer.validate()
                if trainer.step % p.checkpoint_every == 0 or done:
                    write_record(trainer, paths, plot)
                bar.update(task, completed=trainer.step, info=_status(trainer))
        except KeyboardInterrupt:
            write_record(trainer, paths, plot=False)
            raise
    extra = {"preset": p.name, "loss_mode": trainer.loss_mode, "steps": trainer.step,
             "validation": trainer.val_history[-1] if trainer.val_history else {}}
    if p.val_every:
        threshold, scores = trainer.calibrate_threshold()
        extra["score_threshold"] = threshold
        extra["calibration"] = asdict(scores)
        extra.update(by_mode_extra(calibrate_by_mode(trainer.model, p, trainer.device)))
        if progress:
            print(f"score threshold {threshold:.2f} (best F1 {scores.f1:.3f} on the "
                  f"{p.val_windows} held-out windows); by mode: "
                  + ", ".join(f"{m} {t:.2f}" for m, t in extra["score_threshold_by_mode"].items()))
    save_checkpoint(paths.weights, trainer.model, extra)
    return paths
