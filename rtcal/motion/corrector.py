"""Per-frame rigid motion correction against a running template.

The template starts as the mean of the first frames after they are registered
to their own median (twice), and is then refreshed every
``template_update_every`` frames as an exponential average of registered
frames, so slow changes in brightness or in the tissue are followed while a
single bad frame cannot drag it.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from rtcal.errors import RtcalError
from rtcal.motion.rigid import apply_shift, band_pass_spectrum, estimate_shift


class MotionConfigError(RtcalError):
    pass


@dataclass(frozen=True)
class MotionConfig:
    """max_shift_px: largest shift searched; radius_px: soma radius, sets the band-pass
    scales; template_update_every: frames between template refreshes (0 = never);
    template_weight: weight of the newest registered frames in a refresh; min_score:
    below this peak correlation the shift is not trusted and the last good one is kept."""

    max_shift_px: float = 15.0
    radius_px: float = 6.0
    template_update_every: int = 100
    template_weight: float = 0.1
    min_score: float = 0.1

    def __post_init__(self) -> None:
        if not 0 < self.max_shift_px <= 200:
            raise MotionConfigError(f"max_shift_px must be in (0, 200], got {self.max_shift_px}")
        if not 1 <= self.radius_px <= 100:
            raise MotionConfigError(f"radius_px must be in [1, 100], got {self.radius_px}")
        if self.template_update_every < 0:
            raise MotionConfigError("template_update_every must be >= 0")
        if not 0 < self.template_weight <= 1:
            raise MotionConfigError(
                f"template_weight must be in (0, 1], got {self.template_weight}"
            )


@dataclass(frozen=True)
class MotionStep:
    """corrected: float32 (H, W) registered frame; shift: (dy, dx) estimated content
    displacement; score: peak correlation; trusted: False if score < min_score."""

    corrected: np.ndarray
    shift: tuple[float, float]
    score: float
    trusted: bool


class RigidMotionCorrector:
    def __init__(self, config: MotionConfig, template: np.ndarray) -> None:
        if template.ndim != 2:
            raise MotionConfigError(f"template must be 2-D, got shape {template.shape}")
        self.config = config
        self.shape = template.shape
        self._sigmas = (0.25 * config.radius_px, 2.0 * config.radius_px)
        self._set_template(template.astype(np.float32))
        self._accumulated = np.zeros(self.shape, np.float64)
        self._n_accumulated = 0
        self._last_shift = (0.0, 0.0)
        self.n_untrusted = 0

    @classmethod
    def from_frames(cls, config: MotionConfig, frames: np.ndarray) -> RigidMotionCorrector:
        """Build the first template from (T, H, W) frames: median, register, average, twice."""
        template = np.median(frames, axis=0).astype(np.float32)
        for _ in range(2):
            corrector = cls(config, template)
            template = np.mean([corrector._register(f)[0] for f in frames], axis=0)
        return cls(config, template)

    @property
    def template(self) -> np.ndarray:
        return self._template.copy()

    def _set_template(self, template: np.ndarray) -> None:
        self._template = template
        self._template_spectrum = band_pass_spectrum(template, *self._sigmas)

    def _register(self, frame: np.ndarray) -> tuple[np.ndarray, float, float, float]:
        spectrum = band_pass_spectrum(frame, *self._sigmas)
        dy, dx, score = estimate_shift(
            spectrum, self._template_spectrum, self.shape, self.config.max_shift_px
        )
        return apply_shift(frame, -dy, -dx), dy, dx, score

    def step(self, frame: np.ndarray) -> MotionStep:
        corrected, dy, dx, score = self._register(frame)
        trusted = score >= self.config.min_score
        if trusted:
            self._last_shift = (dy, dx)
        else:
            self.n_untrusted += 1
            dy, dx = self._last_shift
            corrected = apply_shift(frame, -dy, -dx)
        self._update_template(corrected, trusted)
        return MotionStep(corrected, (dy, dx), score, trusted)

    def _update_template(self, corrected: np.ndarray, trusted: bool) -> None:
        every = self.config.template_update_every
        if every == 0 or not trusted:
            return
        self._accumulated += corrected
        self._n_accumulated += 1
        if self._n_accumulated >= every:
            w = self.config.template_weight
            recent = (self._accumulated / self._n_accumulated).astype(np.float32)
            self._set_template((1 - w) * self._template + w * recent)
            self._accumulated[:] = 0
            self._n_accumulated = 0
