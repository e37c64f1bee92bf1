"""Bad frames never corrupt the template or the shift; config and geometry validation."""

import numpy as np
import pytest

from rtcal.errors import RtcalError
from rtcal.motion.corrector import (
    FrameQuality,
    MotionConfig,
    MotionConfigError,
    MotionCorrector,
    MotionFrameError,
)
from rtcal.motion.rigid import apply_shift_reference


def _scene(seed=0, size=96):
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:size, :size]
    img = np.full((size, size), 200.0)
    for cy, cx, amp in zip(rng.uniform(0, size, 60), rng.uniform(0, size, 60),
                           rng.uniform(100, 400, 60), strict=True):
        img += amp * np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / 8.0)
    return img.astype(np.float32)


def _bad_frames(scene):
    nan = np.full(scene.shape, np.nan, np.float32)
    mostly_nan = scene.copy()
    mostly_nan[: scene.shape[0] // 2] = np.nan
    flash = scene.astype(np.uint16)
    flash[:, : scene.shape[1] // 3] = 65535
    return {
        "all_nan": (nan, FrameQuality.NON_FINITE),
        "half_nan": (mostly_nan, FrameQuality.NON_FINITE),
        "inf": (np.full(scene.shape, np.inf, np.float32), FrameQuality.NON_FINITE),
        "constant": (np.full(scene.shape, 321.0, np.float32), FrameQuality.FEATURELESS),
        "zeros_uint16": (np.zeros(scene.shape, np.uint16), FrameQuality.FEATURELESS),
        "saturated": (np.full(scene.shape, 65535, np.uint16), FrameQuality.SATURATED),
        "flash": (flash, FrameQuality.SATURATED),
    }


@pytest.mark.parametrize("name", list(_bad_frames(_scene())))
@pytest.mark.parametrize("piecewise", [False, True])
def test_bad_frame_is_untrusted_and_leaves_template_and_shift_alone(name, piecewise):
    scene = _scene()
    cfg = MotionConfig(radius_px=3.0, template_update_every=1, template_weight=1.0,
                       piecewise=piecewise, patch_px=48, overlap_px=16)
    corrector = MotionCorrector(cfg, scene)
    good = corrector.step(apply_shift_reference(scene, 1.5, -2.0))
    assert good.trusted and good.quality is FrameQuality.OK
    template = corrector.template
    frame, quality = _bad_frames(scene)[name]
    bad = corrector.step(frame)
    assert not bad.trusted and bad.quality is quality
    assert bad.shift == good.shift
    assert corrector.n_untrusted == 1
    assert np.isfinite(bad.corrected).all() and bad.corrected.dtype == np.float32
    np.testing.assert_array_equal(corrector.template, template)  # untouched
    if piecewise:
        np.testing.assert_array_equal(bad.patch_shifts, good.patch_shifts)
    # ... and the next good frame registers as before.
    after = corrector.step(apply_shift_reference(scene, -1.0, 0.5))
    assert after.trusted and after.shift == pytest.approx((-1.0, 0.5), abs=0.1)


def test_a_few_bad_pixels_are_filled_not_fatal():
    scene = _scene()
    corrector = MotionCorrector(MotionConfig(radius_px=3.0), scene)
    frame = apply_shift_reference(scene, 2.0, 1.0)
    frame[10, 10:20] = np.nan  # a short dropped stretch of one line
    step = corrector.step(frame)
    assert step.trusted and step.shift == pytest.approx((2.0, 1.0), abs=0.1)
    assert np.isfinite(step.corrected).all()


def test_from_frames_skips_bad_frames():
    scene = _scene()
    frames = np.stack([apply_shift_reference(scene, 0.3 * (i % 3), -0.2 * (i % 4))
                       for i in range(12)])
    frames[4] = np.nan
    frames[7] = 0.0
    corrector = MotionCorrector.from_frames(MotionConfig(radius_px=3.0), frames)
    assert np.isfinite(corrector.template).all()
    assert corrector.step(frames[1]).trusted


def test_wrong_shape_raises_a_catchable_error():
    corrector = MotionCorrector(MotionConfig(radius_px=3.0), _scene())
    with pytest.raises(MotionFrameError, match="shape"):
        corrector.step(np.zeros((10, 10), np.float32))
    assert issubclass(MotionFrameError, RtcalError)


def test_featureless_template_is_refused():
    with pytest.raises(MotionConfigError, match="template"):
        MotionCorrector(MotionConfig(), np.full((64, 64), 5.0, np.float32))
    with pytest.raises(MotionConfigError, match="2-D"):
        MotionCorrector(MotionConfig(), np.zeros(64, np.float32))


@pytest.mark.parametrize("field,value", [
    ("max_shift_px", 0), ("radius_px", 0.5), ("lowpass_sigma_px", 0), ("upsample", 0),
    ("upsample", 2.5), ("max_correlation_px", 10), ("template_update_every", -1),
    ("template_weight", 1.5), ("min_score", 1.0), ("max_bad_fraction", 1.0),
    ("saturation_level", 0), ("patch_px", 8), ("overlap_px", 100), ("max_deviation_px", 0),
    ("max_deviation_px", 64),
])
def test_config_validation_names_field_and_value(field, value):
    with pytest.raises(MotionConfigError, match=rf"{field}.*{value}"):
        MotionConfig(**{field: value})


def test_config_highpass_defaults_to_half_the_radius_and_must_exceed_lowpass():
    assert MotionConfig(radius_px=8.0).sigma_hi_px == 4.0
    assert MotionConfig(highpass_sigma_px=10.0).sigma_hi_px == 10.0
    with pytest.raises(MotionConfigError, match="highpass_sigma_px"):
        MotionConfig(lowpass_sigma_px=2.0, highpass_sigma_px=1.0)
    assert not MotionConfig().piecewise  # rigid stays the default
