"""Rigid motion correction on a backend: the motion stage's stepper for the device path.

Same behaviour as the rigid mode of :class:`rtcal.motion.corrector.MotionCorrector`
(screening, band-passed phase correlation with sub-pixel refinement, bounded
shift, trust rules, running template), with the frame, the template and the
registered frame kept on the backend (:mod:`rtcal.motion.xp_rigid`). Per frame
it uploads the frame, downloads seven numbers (mean, bad-pixel counts, power,
shift, score: the trust decision needs them on the host, and the shift is
reported anyway) and returns the registered frame still on the device, ready
for :class:`rtcal.nmf.device_step.DeviceNMF`. Piecewise-rigid correction is
not ported (DeviceMotionError).

On the "cuda" backend the frame's measurement and shift run as the fused
kernels of :mod:`rtcal.backend.cuda_motion` (seven kernels and four cuFFT calls
instead of ~100 small launches); ``fused=False`` keeps the xp-generic kernels of
:mod:`rtcal.motion.xp_rigid`, which the fused ones are tested against. The
template's spectrum (every ``template_update_every`` frames) always comes from
the generic kernels.
"""

from __future__ import annotations

import numpy as np

from rtcal.backend import Backend, fft_module
from rtcal.backend.cuda_motion import FusedRigid, Launcher, fits
from rtcal.errors import RtcalError
from rtcal.motion.corrector import MotionConfigError, MotionCorrector, MotionFrameError, MotionStep
from rtcal.motion.frame_check import FrameQuality, FrameStats, saturation_level_for
from rtcal.motion.xp_rigid import (
    apply_shift,
    centre,
    normalised_score,
    rigid_tables,
    shift_from_product,
    spectrum_and_power,
)


class DeviceMotionError(RtcalError):
    """A motion setting the device path does not support."""


class DeviceMotionCorrector:
    """Rigid registration of (H, W) frames on ``backend``, continuing ``corrector``'s state
    (template, pending template average, last trusted shift, untrusted count).

    fused: None (the fused kernels on the "cuda" backend unless ``upsample`` is too
    fine for their shared memory, the generic ones elsewhere),
    False (generic), True (fused; "cuda" only), or a :data:`rtcal.backend.cuda_motion.
    Launcher` that runs the fused kernels' source some other way (the tests' CPU
    emulation).
    """

    def __init__(
        self, corrector: MotionCorrector, backend: Backend,
        fused: bool | Launcher | None = None,
    ) -> None:
        config = corrector.config
        if config.piecewise:
            raise DeviceMotionError(
                "piecewise-rigid motion correction is not ported to the device; "
                "use rigid motion (MotionConfig.piecewise=False) or the 'cpu' backend"
            )
        self.config = config
        self.backend = backend
        self.shape = corrector.shape
        self.bin_px = corrector.bin_px
        self._small_shape = corrector._small_shape
        b = self.bin_px
        self._tables = rigid_tables(
            self._small_shape,
            *corrector._sigmas,
            config.max_shift_px / b,
            config.upsample,
            backend,
        )
        self._fused = self._fused_path(fused)
        self._set_template(backend.asarray(corrector.template))
        self._accumulated = backend.asarray(corrector._accumulated.copy())
        self._n_accumulated = corrector._n_accumulated
        self._last_shift = corrector._last_shift
        self.n_untrusted = corrector.n_untrusted

    def _fused_path(self, fused) -> FusedRigid | None:
        backend = self.backend
        if fused is None:  # the fused kernels where they can run
            fused = backend.on_device and fits(self._tables)
        if fused is False:
            return None
        if fused is True:
            if not backend.on_device:
                raise DeviceMotionError("the fused motion kernels need the 'cuda' backend")
            from rtcal.backend.cuda import motion_launcher

            launch = motion_launcher()
        else:
            launch = fused
        return FusedRigid(self._tables, self.shape, self.bin_px, backend.xp,
                          fft_module(backend.xp), launch, backend.to_host)

    @property
    def fused(self) -> bool:
        """Whether frames go through the fused kernels."""
        return self._fused is not None

    @property
    def template(self) -> np.ndarray:
        """float32 (H, W) host copy of the current template."""
        return self.backend.to_host(self._template).copy()

    def _set_template(self, template) -> None:
        xp = self.backend.xp
        centred = centre(template, float("inf"), self.bin_px)
        spectrum, power = spectrum_and_power(centred.image, self._tables)
        mean, power_h = self.backend.to_host(xp.stack([centred.mean, power]))
        if not np.isfinite(mean) or not power_h > 0:
            raise MotionConfigError("template has no finite cell-scale structure to register to")
        self._template = template
        self._template_mean = float(mean)
        self._template_conj = xp.ascontiguousarray(xp.conj(spectrum))
        self._template_power = power
        self._template_power_host = float(power_h)

    def step(self, frame) -> MotionStep:
        """Register one (H, W) frame (host or backend array, any real dtype).

        Returns a MotionStep whose ``corrected`` is a float32 backend array.
        """
        if frame.shape != self.shape:
            raise MotionFrameError(f"frame has shape {frame.shape}, corrector expects {self.shape}")
        cfg, xp, b = self.config, self.backend.xp, self.bin_px
        f = self.backend.asarray(frame)
        saturation = saturation_level_for(frame.dtype, cfg.saturation_level)
        if self._fused is not None:
            f = xp.ascontiguousarray(f, dtype=xp.float32)
            m = self._fused.measure(f, saturation, self._template_conj,
                                    self._template_power_host)
            mean, n_bad, n_sat, power = m.mean, m.n_nonfinite, m.n_saturated, m.power
            dy, dx, score = m.dy, m.dx, m.score
        else:
            mean, n_bad, n_sat, power, dy, dx, score = self._measure(f, saturation)
        quality = FrameStats(mean, int(n_bad), int(n_sat), f.size).verdict(cfg.max_bad_fraction)
        if quality is not FrameQuality.OK:
            score = 0.0
        elif not power > 0:
            quality, score = FrameQuality.FEATURELESS, 0.0
        elif score < cfg.min_score:
            quality = FrameQuality.LOW_SCORE
        trusted = quality is FrameQuality.OK
        shift = (dy * b, dx * b) if trusted else self._last_shift
        fill = None
        if n_bad > 0:  # the mean of the finite pixels, or the template's
            fill = mean if np.isfinite(mean) else self._template_mean
        if self._fused is not None:
            corrected = self._fused.shift(f, -shift[0], -shift[1], fill)
        else:
            source = f if fill is None else xp.where(xp.isfinite(f), f, xp.float32(fill))
            corrected = apply_shift(source, -shift[0], -shift[1])
        if trusted:
            self._last_shift = shift
            self._update_template(corrected)
        else:
            self.n_untrusted += 1
        return MotionStep(corrected, shift, score, trusted, quality, None)

    def _measure(self, f, saturation: float) -> list:
        """The generic kernels: mean, non-finite and saturated counts, power, dy, dx,
        score (host floats, one download)."""
        xp = self.backend.xp
        centred = centre(f, saturation, self.bin_px)
        spectrum, power = spectrum_and_power(centred.image, self._tables)
        dy, dx, peak = shift_from_product(spectrum * self._template_conj, self._tables)
        score = normalised_score(peak, self._small_shape, power, self._template_power)
        measured = xp.stack(
            [centred.mean, centred.n_nonfinite, centred.n_saturated, power, dy, dx, score]
        ).astype(xp.float64)
        return self.backend.to_host(measured).tolist()

    def _update_template(self, corrected) -> None:
        every = self.config.template_update_every
        if every == 0:
            return
        self._accumulated += corrected
        self._n_accumulated += 1
        if self._n_accumulated >= every:
            w = self.config.template_weight
            recent = (self._accumulated / self._n_accumulated).astype(self.backend.xp.float32)
            self._set_template((1 - w) * self._template + w * recent)
            self._accumulated[...] = 0
            self._n_accumulated = 0
