"""Per-frame motion correction against a running template: the motion stage's stepper.

Each frame is screened and centred (:mod:`rtcal.motion.frame_check`), binned
b x b when it is large (``MotionConfig.max_correlation_px``), band-passed
(:mod:`rtcal.motion.bandpass`) and registered rigidly (:mod:`rtcal.motion.rigid`);
with ``piecewise`` its patches are then registered around the rigid shift
(:mod:`rtcal.motion.piecewise`) and the frame is resampled through the smooth
field of patch shifts (:mod:`rtcal.motion.remap`).

The template starts as the mean of the first frames after they are registered
to their own median (twice), and is then refreshed every
``template_update_every`` trusted frames as an exponential average of
registered frames, so slow changes in brightness or in the tissue are followed
while a single bad frame cannot drag it.

Bad frames never raise: a frame with too many NaN / inf or saturated pixels, a
featureless (e.g. constant) frame, or one whose correlation with the template is
below ``min_score`` comes back with ``trusted=False`` and a ``quality`` saying
why; it keeps the last trusted shift, is counted in ``n_untrusted`` and never
enters the template. Only a frame of the wrong shape raises
(:class:`MotionFrameError`), because that is a wiring error, not data.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np

from rtcal.buffer.summary import time_last
from rtcal.errors import RtcalError
from rtcal.motion.bandpass import spectrum_and_power
from rtcal.motion.config import MotionConfig, MotionConfigError
from rtcal.motion.frame_check import FrameQuality, centre_frame, saturation_level_for
from rtcal.motion.patches import PatchGrid, extract_patches, patch_grid
from rtcal.motion.piecewise import estimate_patch_shifts
from rtcal.motion.remap import shift_field, unwarp
from rtcal.motion.rigid import apply_shift, normalised_score, shift_from_product

__all__ = [
    "FrameQuality",
    "MotionConfig",
    "MotionConfigError",
    "MotionCorrector",
    "MotionFrameError",
    "MotionStep",
    "RigidMotionCorrector",
]


class MotionFrameError(RtcalError):
    """A frame that does not fit the corrector (wrong number of dimensions or shape)."""


@dataclass(frozen=True)
class MotionStep:
    """One registered frame.

    corrected: float32 (H, W) registered frame; shift: (dy, dx) px rigid content
    displacement (the last trusted one if this frame is untrusted); score: rigid
    peak normalised correlation (0 when not computed); trusted: whether the shift
    was measured on this frame; quality: why (not); patch_shifts: float32
    (n_y, n_x, 2) (dy, dx) per patch in piecewise mode (the last trusted ones if
    untrusted), else None; centres in :attr:`MotionCorrector.patch_centres`, dense
    field from :meth:`MotionCorrector.shift_field`. An untrusted frame's
    ``corrected`` is resampled by the last trusted shifts, NaN / inf pixels
    replaced by the mean of its finite pixels (by the template's mean if none).
    """

    corrected: np.ndarray
    shift: tuple[float, float]
    score: float
    trusted: bool
    quality: FrameQuality = FrameQuality.OK
    patch_shifts: np.ndarray | None = None

    @property
    def invented_border(self) -> tuple[int, int, int, int]:
        """(top, bottom, left, right): rows and columns of ``corrected`` at each
        edge that hold no measured pixel, only the replicated edge (registration
        reads the frame at (y + dy, x + dx)). Piecewise: the largest patch shift
        towards each edge. Their content is invented: the online NMF keeps it out
        of the residual, where a sustained drift made it look like new cells."""
        shifts = (
            np.asarray(self.patch_shifts, np.float64).reshape(-1, 2)
            if self.patch_shifts is not None
            else np.asarray([self.shift], np.float64)
        )
        dy, dx = shifts[:, 0], shifts[:, 1]
        return tuple(
            int(np.ceil(max(0.0, float(v)) - 1e-6))
            for v in (-dy.min(), dy.max(), -dx.min(), dx.max())
        )


@dataclass(frozen=True)
class _Measured:
    """Registration of one frame before the trust decision (internal)."""

    shift: tuple[float, float]
    score: float
    quality: FrameQuality
    patch_shifts: np.ndarray | None
    n_nonfinite: int  # NaN / inf pixels, replaced by fill_value before resampling
    fill_value: float


MIN_BINNED_SIGMA_PX = 1.5  # below this high-pass scale (in binned px) accuracy falls apart


def correlation_bin(shape: tuple[int, int], config: MotionConfig) -> int:
    """Binning b of the correlated image: the smallest with min(H, W) / b <=
    max_correlation_px, but no more than keeps the high-pass scale >= 1.5 binned px
    (1 if max_correlation_px is 0). At 1024x1024 with a 3 px high-pass, b = 4 would
    leave almost no pass band (0.15 px RMS error on simulated movies); b = 2 keeps it."""
    if config.max_correlation_px == 0:
        return 1
    by_size = int(np.ceil(min(shape) / config.max_correlation_px))
    by_scale = int(config.sigma_hi_px // MIN_BINNED_SIGMA_PX)
    return max(1, min(by_size, by_scale))


class MotionCorrector:
    """Rigid or piecewise-rigid registration of (H, W) frames to a running template."""

    def __init__(self, config: MotionConfig, template: np.ndarray) -> None:
        if template.ndim != 2:
            raise MotionConfigError(f"template must be 2-D, got shape {template.shape}")
        self.config = config
        self.shape = template.shape
        self.bin_px = correlation_bin(self.shape, config)
        b = self.bin_px
        self._small_shape = (self.shape[0] // b, self.shape[1] // b)
        if min(self._small_shape) < 16:
            raise MotionConfigError(f"frames of shape {self.shape} are too small to register")
        self._sigmas = (config.lowpass_sigma_px / b, config.sigma_hi_px / b)
        self._grid: PatchGrid | None = None
        if config.piecewise:
            self._grid = patch_grid(
                self._small_shape, max(config.patch_px // b, 8), config.overlap_px // b
            )
        self._work = np.empty(self._small_shape, np.float32)
        self._set_template(np.asarray(template, np.float32))
        self._accumulated = np.zeros(self.shape, np.float32)
        self._n_accumulated = 0
        self._last_shift = (0.0, 0.0)
        self._last_patch_shifts = (
            np.zeros((*self._grid.shape, 2), np.float32) if self._grid is not None else None
        )
        self.n_untrusted = 0

    @classmethod
    def from_frames(cls, config: MotionConfig, frames: np.ndarray) -> MotionCorrector:
        """Build the first template from (T, H, W) frames: median, register, average, twice.

        Untrusted frames (bad pixels, featureless, low score) are left out of the averages.
        """
        frames = np.asarray(frames)
        if frames.ndim != 3 or len(frames) == 0:
            raise MotionConfigError(f"from_frames needs (T, H, W) frames, got {frames.shape}")
        template = np.empty(frames.shape[1:], np.float32)
        with warnings.catch_warnings():  # a pixel NaN in every frame stays NaN here ...
            warnings.simplefilter("ignore", RuntimeWarning)
            for r0 in range(0, frames.shape[1], 32):  # row blocks: the median copies its input
                # time last and contiguous; nanmedian (a masked sort, ~10x slower)
                # only where a block holds a NaN
                block = time_last(frames[:, r0 : r0 + 32])
                median = np.nanmedian if np.isnan(block).any() else np.median
                template[r0 : r0 + 32] = median(block, axis=-1)
            fill = np.nanmean(template) if np.isfinite(template).any() else 0.0
        template = np.where(np.isfinite(template), template, np.float32(fill))  # ... until now
        for _ in range(2):
            corrector = cls(config, template)
            total, n_good = np.zeros(template.shape), 0
            for frame in frames:  # a running sum: the window is the peak of memory
                corrected, meta = corrector._register(frame)
                if meta.quality is FrameQuality.OK:
                    total += corrected
                    n_good += 1
            if n_good:
                template = (total / n_good).astype(np.float32)
        return cls(config, template)

    @property
    def template(self) -> np.ndarray:
        """float32 (H, W) copy of the current template."""
        return self._template.copy()

    @property
    def patch_centres(self) -> tuple[np.ndarray, np.ndarray] | None:
        """Patch centres (rows (n_y,), columns (n_x,)) float px in the frame, or None if rigid."""
        if self._grid is None:
            return None
        b = self.bin_px
        return (self._grid.centres_y + 0.5) * b - 0.5, (self._grid.centres_x + 0.5) * b - 0.5

    def shift_field(self, step: MotionStep) -> np.ndarray:
        """Dense float32 (2, H, W) (dy, dx) field of a step (constant for a rigid step)."""
        if step.patch_shifts is None or self._grid is None:
            field = np.empty((2, *self.shape), np.float32)
            field[0], field[1] = step.shift
            return field
        return shift_field(step.patch_shifts, *self.patch_centres, self.shape)

    def _set_template(self, template: np.ndarray) -> None:
        centred, stats = centre_frame(template, float("inf"), self.bin_px)
        spectrum, power = spectrum_and_power(centred, *self._sigmas)
        if not np.isfinite(stats.mean) or not power > 0:
            raise MotionConfigError("template has no finite cell-scale structure to register to")
        self._template = template
        self._template_mean = stats.mean
        self._template_conj = np.conj(spectrum)
        self._template_power = power
        if self._grid is not None:
            patches, powers = spectrum_and_power(extract_patches(centred, self._grid),
                                                 *self._sigmas)
            self._patch_conj = np.conj(patches)
            self._patch_power = powers

    def _measure(self, frame: np.ndarray) -> _Measured:
        """Shifts and score of a frame, or the reason it cannot be trusted."""
        cfg = self.config
        if frame.shape != self.shape:
            raise MotionFrameError(f"frame has shape {frame.shape}, corrector expects {self.shape}")
        level = saturation_level_for(frame.dtype, cfg.saturation_level)
        centred, stats = centre_frame(frame, level, self.bin_px, out=self._work)
        fill = stats.mean if np.isfinite(stats.mean) else self._template_mean
        quality = stats.verdict(cfg.max_bad_fraction)
        bad = stats.n_nonfinite
        if quality is not FrameQuality.OK:
            return _Measured(self._last_shift, 0.0, quality, self._last_patch_shifts, bad, fill)
        b, small = self.bin_px, self._small_shape
        spectrum, power = spectrum_and_power(centred, *self._sigmas)
        if not power > 0:
            return _Measured(self._last_shift, 0.0, FrameQuality.FEATURELESS,
                             self._last_patch_shifts, bad, fill)
        spectrum *= self._template_conj  # now the cross-power spectrum
        dy, dx, peak = shift_from_product(spectrum, small, cfg.max_shift_px / b, cfg.upsample)
        score = normalised_score(peak, small, power, self._template_power)
        if score < cfg.min_score:
            return _Measured(self._last_shift, score, FrameQuality.LOW_SCORE,
                             self._last_patch_shifts, bad, fill)
        patch_shifts = None
        if self._grid is not None:
            spectra, powers = spectrum_and_power(extract_patches(centred, self._grid),
                                                 *self._sigmas)
            shifts, _ = estimate_patch_shifts(
                spectra, powers, self._patch_conj, self._patch_power, self._grid.size[1], (dy, dx),
                cfg.max_deviation_px / b, cfg.upsample, cfg.min_score,
            )
            patch_shifts = (shifts * b).astype(np.float32).reshape(*self._grid.shape, 2)
        return _Measured((dy * b, dx * b), score, FrameQuality.OK, patch_shifts, bad, fill)

    def _apply(self, frame: np.ndarray, measured: _Measured) -> np.ndarray:
        source = frame
        if measured.n_nonfinite > 0:  # the mean of the finite pixels, or the template's
            source = np.where(np.isfinite(frame), frame, np.float32(measured.fill_value))
        if measured.patch_shifts is not None:
            return unwarp(source, measured.patch_shifts, *self.patch_centres)
        return apply_shift(source, -measured.shift[0], -measured.shift[1])

    def _register(self, frame: np.ndarray) -> tuple[np.ndarray, _Measured]:
        measured = self._measure(frame)
        return self._apply(frame, measured), measured

    def step(self, frame: np.ndarray) -> MotionStep:
        """Register one (H, W) frame (any real dtype) and, if trusted, feed the template."""
        corrected, m = self._register(frame)
        trusted = m.quality is FrameQuality.OK
        if trusted:
            self._last_shift = m.shift
            self._last_patch_shifts = m.patch_shifts
            self._update_template(corrected)
        else:
            self.n_untrusted += 1
        return MotionStep(corrected, m.shift, m.score, trusted, m.quality, m.patch_shifts)

    def _update_template(self, corrected: np.ndarray) -> None:
        every = self.config.template_update_every
        if every == 0:
            return
        self._accumulated += corrected
        self._n_accumulated += 1
        if self._n_accumulated >= every:
            w = self.config.template_weight
            recent = (self._accumulated / self._n_accumulated).astype(np.float32)
            self._set_template((1 - w) * self._template + w * recent)
            self._accumulated[:] = 0
            self._n_accumulated = 0


# The name the engine and first pass use; the corrector does piecewise-rigid too.
RigidMotionCorrector = MotionCorrector
