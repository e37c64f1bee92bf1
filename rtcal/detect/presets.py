"""Training presets: one frozen ``TrainPreset`` per named recipe.

- ``default``: the recipe of the weights shipped in ``rtcal/weights/detector_default.pt``;
  runs on a CPU: about 0.5 s per step on 2 idle cores (0.25 s network, 1 s per
  group of 4 simulated windows shared by 4 steps), so 4000 steps take ~35 min.
- ``ablation``: the default network and data for 1200 steps with the trace terms
  from step 300, trained once per ``--loss`` (mask / mask+trace /
  mask+trace+contrastive) for the ablation table of ``bench/detector.py``: three
  equal, shorter runs (about 12 min each on 2 idle cores), so that only the loss differs.
- ``2p``: the default recipe on two-photon windows alone, the recipe of
  ``rtcal/weights/detector_2p.pt``, the weights 2p recordings use (38 min on 2 cores;
  its pipeline threshold then comes from ``tools/pipeline_threshold.py --write``).
- ``1p``: the default recipe on one-photon windows alone (20 min on 2 cores). Not
  shipped: on held-out 1p windows it beat the mixed weights standalone (F1 0.662
  against 0.578; the seed detector 0.658) but not inside the pipeline, where 1p
  starts from the seed detector (README, "Learned detector").
- ``smoke``: a tiny model on tiny windows for a few steps (tests, a quick check).
- ``gpu``: a larger model, larger batches and more steps for a lent GPU.

``get_preset(name)`` is the one place a preset is looked up by name.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

from rtcal.detect.losses import LOSS_MODES, LossWeights
from rtcal.detect.matcher import MatchWeights
from rtcal.detect.model import DetectorNetConfig
from rtcal.detect.trace_loss import TraceLossConfig
from rtcal.detect.train_data import TrainDataConfig
from rtcal.errors import RtcalError


class PresetError(RtcalError, ValueError):
    """Unknown preset name or an inconsistent preset; the message names it."""


@dataclass(frozen=True)
class TrainPreset:
    """Everything a training run depends on besides the device.

    steps: optimisation steps; batch_size: windows per step; views_per_window:
    consecutive steps that reuse the same windows under different symmetries;
    lr, weight_decay: AdamW;
    warmup_steps, final_lr_ratio: schedule; grad_clip: max gradient norm;
    trace_start_step, trace_ramp_steps: when the trace terms come in;
    checkpoint_every, val_every: steps between states written / validations
    (val_every 0: never); val_windows: held-out windows; seed: model init and data.
    """

    name: str
    net: DetectorNetConfig
    data: TrainDataConfig = field(default_factory=TrainDataConfig)
    loss: LossWeights = field(default_factory=LossWeights)
    match: MatchWeights = field(default_factory=MatchWeights)
    trace: TraceLossConfig = field(default_factory=TraceLossConfig)
    loss_mode: str = "mask+trace+contrastive"
    steps: int = 2000
    batch_size: int = 4
    views_per_window: int = 1
    lr: float = 3e-4
    weight_decay: float = 0.05
    warmup_steps: int = 100
    final_lr_ratio: float = 0.05
    grad_clip: float = 1.0
    trace_start_step: int = 200
    trace_ramp_steps: int = 200
    checkpoint_every: int = 100
    val_every: int = 250
    val_windows: int = 8
    seed: int = 0

    def __post_init__(self) -> None:
        if self.loss_mode not in LOSS_MODES:
            raise PresetError(f"{self.name}: loss_mode {self.loss_mode!r} not in {LOSS_MODES}")
        for name in ("steps", "batch_size", "views_per_window", "checkpoint_every"):
            if getattr(self, name) < 1:
                raise PresetError(f"{self.name}: {name}={getattr(self, name)} must be >= 1")
        for name in ("warmup_steps", "trace_start_step", "trace_ramp_steps", "val_every",
                     "val_windows", "seed"):
            if getattr(self, name) < 0:
                raise PresetError(f"{self.name}: {name}={getattr(self, name)} must be >= 0")
        if not (self.lr > 0 and self.grad_clip > 0 and self.weight_decay >= 0
                and 0 <= self.final_lr_ratio <= 1):
            raise PresetError(f"{self.name}: lr, grad_clip > 0, weight_decay >= 0 and "
                              "final_lr_ratio in [0, 1] required")


def _presets() -> dict[str, TrainPreset]:
    smoke = TrainPreset(
        name="smoke",
        net=DetectorNetConfig(embed_dim=16, depths=(1, 1, 1, 1), num_heads=(1, 1, 2, 2),
                              window_size=4, fpn_dim=32, mask_dim=32, n_queries=24,
                              n_learned_queries=4, n_decoder_layers=2, n_decoder_heads=2,
                              decoder_ffn_dim=64),
        data=TrainDataConfig(size_px=64, window_frames=(60, 80), trace_frames=32,
                             max_neurons=12),
        steps=30, batch_size=2, lr=2e-3, warmup_steps=3, trace_start_step=0,
        trace_ramp_steps=5, checkpoint_every=10, val_every=0, val_windows=2,
    )
    default = TrainPreset(
        name="default", net=DetectorNetConfig(), steps=4000, batch_size=4, views_per_window=4,
        lr=5e-4, warmup_steps=200, trace_start_step=600, trace_ramp_steps=600,
        checkpoint_every=250, val_every=500, val_windows=8,
    )
    ablation = dataclasses.replace(
        default, name="ablation", steps=1200, warmup_steps=100, trace_start_step=300,
        trace_ramp_steps=300, checkpoint_every=200, val_every=400,
    )
    two_photon = dataclasses.replace(
        default, name="2p", data=dataclasses.replace(default.data, p_one_photon=0.0),
    )
    one_photon = dataclasses.replace(
        default, name="1p", data=dataclasses.replace(default.data, p_one_photon=1.0),
    )
    gpu = TrainPreset(
        name="gpu",
        net=DetectorNetConfig(embed_dim=48, num_heads=(2, 3, 6, 12), fpn_dim=96, mask_dim=96,
                              decoder_ffn_dim=384),
        steps=20000, batch_size=16, views_per_window=2, lr=5e-4, warmup_steps=500,
        trace_start_step=2000, trace_ramp_steps=2000, checkpoint_every=500, val_every=1000,
        val_windows=16,
    )
    return {p.name: p for p in (default, ablation, two_photon, one_photon, smoke, gpu)}


def preset_names() -> tuple[str, ...]:
    return tuple(_presets())


def get_preset(name: str) -> TrainPreset:
    """The preset called ``name``; PresetError naming the known ones otherwise."""
    presets = _presets()
    if name not in presets:
        raise PresetError(f"unknown training preset {name!r}; known: {', '.join(presets)}")
    return presets[name]
