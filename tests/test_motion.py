"""Rigid motion correction: kernels against references, shifts recovered, template stepper."""

import numpy as np
import pytest

from rtcal.motion.corrector import MotionConfig, MotionConfigError, RigidMotionCorrector
from rtcal.motion.rigid import (
    apply_shift,
    apply_shift_reference,
    band_pass_spectrum,
    estimate_shift,
)


def _cells_image(rng, H=128, W=144, n=80, radius=4.0):
    yy, xx = np.mgrid[:H, :W]
    img = np.full((H, W), 100.0)
    for cy, cx, amp in zip(
        rng.uniform(0, H, n), rng.uniform(0, W, n), rng.uniform(50, 200, n), strict=True
    ):
        img += amp * np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / (2 * (radius / 1.5) ** 2))
    return img.astype(np.float32)


@pytest.mark.parametrize("shift", [(0.0, 0.0), (1.3, -2.7), (-4.6, 3.25), (0.5, 0.5)])
def test_numba_bilinear_shift_equals_scipy(shift):
    img = np.random.default_rng(0).normal(size=(40, 53)).astype(np.float32)
    np.testing.assert_allclose(
        apply_shift(img, *shift), apply_shift_reference(img, *shift), atol=1e-4
    )


def test_estimate_shift_recovers_known_subpixel_shifts():
    rng = np.random.default_rng(1)
    template = _cells_image(rng)
    spec_t = band_pass_spectrum(template, 1.0, 8.0)
    errors = []
    for _ in range(30):
        true = rng.uniform(-6, 6, size=2)
        frame = apply_shift_reference(template, *true)
        frame = rng.poisson(frame).astype(np.float32)  # shot noise
        dy, dx, score = estimate_shift(
            band_pass_spectrum(frame, 1.0, 8.0), spec_t, template.shape, 10
        )
        errors.append((dy - true[0], dx - true[1]))
        assert score > 0.5
    errors = np.abs(np.array(errors))
    # The 3-point Gaussian peak fit has a known bias towards whole pixels (about
    # 0.1 px here); an upsampled-DFT refinement would remove it.
    assert errors.max() < 0.4
    assert np.sqrt((errors**2).mean()) < 0.2


def test_estimate_shift_stays_within_bound_and_scores_unrelated_images_low():
    rng = np.random.default_rng(2)
    a, b = _cells_image(rng), _cells_image(rng)
    dy, dx, score = estimate_shift(
        band_pass_spectrum(a, 1.0, 8.0), band_pass_spectrum(b, 1.0, 8.0), a.shape, 3
    )
    assert abs(dy) <= 3.5 and abs(dx) <= 3.5
    assert score < 0.3


def test_corrector_registers_a_moving_sequence():
    rng = np.random.default_rng(3)
    scene = _cells_image(rng)
    shifts = np.cumsum(rng.normal(0, 0.4, size=(200, 2)), axis=0)
    shifts = np.clip(shifts, -8, 8)
    frames = np.stack(
        [rng.poisson(apply_shift_reference(scene, *s)).astype(np.float32) for s in shifts]
    )
    corrector = RigidMotionCorrector.from_frames(
        MotionConfig(radius_px=4.0, template_update_every=20), frames[:50]
    )
    est = np.array([corrector.step(f).shift for f in frames])
    # The template sits at the early frames' mean position: compare relative motion.
    rel_true = shifts - shifts.mean(0)
    rel_est = est - est.mean(0)
    assert np.sqrt(((rel_est - rel_true) ** 2).mean()) < 0.2
    assert corrector.n_untrusted == 0


def test_untrusted_frame_keeps_last_shift():
    rng = np.random.default_rng(4)
    scene = _cells_image(rng)
    corrector = RigidMotionCorrector(MotionConfig(radius_px=4.0, min_score=0.5), scene)
    good = corrector.step(apply_shift_reference(scene, 2.0, -1.0))
    assert good.trusted
    noise = rng.normal(100, 10, size=scene.shape).astype(np.float32)
    bad = corrector.step(noise)
    assert not bad.trusted and corrector.n_untrusted == 1
    assert bad.shift == pytest.approx(good.shift)


def test_motion_config_validation_names_the_field():
    with pytest.raises(MotionConfigError, match="max_shift_px"):
        MotionConfig(max_shift_px=-1)
    with pytest.raises(MotionConfigError, match="template_weight"):
        MotionConfig(template_weight=0)
