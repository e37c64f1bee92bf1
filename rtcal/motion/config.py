"""Settings of the motion stage: one frozen dataclass, validated without I/O."""

from __future__ import annotations

from dataclasses import dataclass

from rtcal.errors import RtcalError


class MotionConfigError(RtcalError):
    """A motion setting (or template / frame geometry) that cannot work."""


def _require(ok: bool, field: str, value: object, rule: str) -> None:
    if not ok:
        raise MotionConfigError(f"MotionConfig.{field} {rule}, got {value!r}")


@dataclass(frozen=True)
class MotionConfig:
    """Rigid (default) or piecewise-rigid registration to a running template.

    max_shift_px: largest rigid shift searched, per axis.
    radius_px: soma radius; sets the default high-pass scale.
    lowpass_sigma_px: Gaussian low-pass of the band-pass (pixel noise); px.
    highpass_sigma_px: Gaussian scale removed as background; None means radius_px / 2.
    upsample: sub-pixel refinement, samples per px (1 = integer shifts only).
    max_correlation_px: frames whose smaller side exceeds this are binned b x b
        (smallest b bringing it under, capped so that the high-pass scale stays
        >= 1.5 binned px) before the correlation; 0 = never bin. 128: a
        256 x 256 frame binned 2 x 2 took 0.38 ms instead of 0.68 per frame,
        with an RMS error of 0.056 px instead of 0.048 (``bench/motion.py``);
        512 and 1024 px frames are binned 2 x 2 either way (the scale cap).
    template_update_every: frames between template refreshes (0 = never).
    template_weight: weight of the newest registered frames in a refresh.
    min_score: below this peak correlation a frame is untrusted.
    max_bad_fraction: a frame with more non-finite, or more saturated, pixels
        than this fraction is untrusted.
    saturation_level: pixel value counted as saturated; None means the integer
        dtype's maximum (float frames are then not checked).
    piecewise: also register overlapping patches (NoRMCorre) after the rigid shift.
    patch_px: patch side; overlap_px: overlap of neighbouring patches.
    max_deviation_px: largest patch shift away from the rigid shift, per axis.
    """

    max_shift_px: float = 15.0
    radius_px: float = 6.0
    lowpass_sigma_px: float = 0.75
    highpass_sigma_px: float | None = None
    upsample: int = 4
    max_correlation_px: int = 128
    template_update_every: int = 100
    template_weight: float = 0.1
    min_score: float = 0.1
    max_bad_fraction: float = 0.05
    saturation_level: float | None = None
    piecewise: bool = False
    patch_px: int = 128
    overlap_px: int = 32
    max_deviation_px: float = 3.0

    def __post_init__(self) -> None:
        _require(0 < self.max_shift_px <= 200, "max_shift_px", self.max_shift_px,
                 "must be in (0, 200]")
        _require(1 <= self.radius_px <= 100, "radius_px", self.radius_px, "must be in [1, 100]")
        _require(0 < self.lowpass_sigma_px <= 20, "lowpass_sigma_px", self.lowpass_sigma_px,
                 "must be in (0, 20]")
        _require(self.sigma_hi_px > self.lowpass_sigma_px, "highpass_sigma_px",
                 self.highpass_sigma_px, "must exceed lowpass_sigma_px")
        _require(isinstance(self.upsample, int) and 1 <= self.upsample <= 100, "upsample",
                 self.upsample, "must be an int in [1, 100]")
        _require(self.max_correlation_px == 0 or self.max_correlation_px >= 64,
                 "max_correlation_px", self.max_correlation_px, "must be 0 or >= 64")
        _require(self.template_update_every >= 0, "template_update_every",
                 self.template_update_every, "must be >= 0")
        _require(0 < self.template_weight <= 1, "template_weight", self.template_weight,
                 "must be in (0, 1]")
        _require(-1 <= self.min_score < 1, "min_score", self.min_score, "must be in [-1, 1)")
        _require(0 <= self.max_bad_fraction < 1, "max_bad_fraction", self.max_bad_fraction,
                 "must be in [0, 1)")
        _require(self.saturation_level is None or self.saturation_level > 0,
                 "saturation_level", self.saturation_level, "must be None or > 0")
        _require(16 <= self.patch_px <= 4096, "patch_px", self.patch_px, "must be in [16, 4096]")
        _require(0 <= self.overlap_px <= self.patch_px // 2, "overlap_px", self.overlap_px,
                 "must be in [0, patch_px / 2]")
        _require(0 < self.max_deviation_px <= self.patch_px / 4, "max_deviation_px",
                 self.max_deviation_px, "must be in (0, patch_px / 4]")

    @property
    def sigma_hi_px(self) -> float:
        """The high-pass scale in use: highpass_sigma_px, or radius_px / 2 when None."""
        if self.highpass_sigma_px is None:
            return 0.5 * self.radius_px
        return self.highpass_sigma_px
