"""Piecewise-rigid registration: patch grid, and a smooth non-rigid warp recovered."""

import numpy as np
import pytest

from rtcal.motion.corrector import MotionConfig, MotionCorrector
from rtcal.motion.patches import extract_patches, patch_grid


@pytest.mark.parametrize("n,patch,overlap", [(256, 128, 32), (512, 128, 32), (100, 128, 32),
                                             (300, 64, 16)])
def test_patch_grid_covers_the_axis_with_equal_overlapping_patches(n, patch, overlap):
    grid = patch_grid((n, n + 7), patch, overlap)
    h, w = grid.size
    assert h == min(patch, n) and w == min(patch, n + 7)
    assert grid.starts_y[0] == 0 and grid.starts_y[-1] + h == n
    assert grid.starts_x[-1] + w == n + 7
    if len(grid.starts_y) > 1:
        assert (np.diff(grid.starts_y) <= h - overlap).all()
    image = np.arange(n * (n + 7), dtype=np.float32).reshape(n, n + 7)
    patches = extract_patches(image, grid)
    assert patches.shape == (len(grid.starts_y) * len(grid.starts_x), h, w)
    y, x = grid.starts_y[-1], grid.starts_x[0]
    np.testing.assert_array_equal(patches[(len(grid.starts_y) - 1) * len(grid.starts_x)],
                                  image[y : y + h, x : x + w])


def _warp(yy, xx, size):
    """A smooth non-rigid displacement (dy, dx) px: up to 2 px, half a period across the view."""
    return (2.0 * np.sin(np.pi * xx / size), 1.5 * np.cos(np.pi * yy / size) - 0.5)


def _scene(centres, size, warped):
    yy, xx = np.mgrid[:size, :size]
    img = np.full((size, size), 100.0)
    for cy, cx, amp in centres:
        dy, dx = _warp(cy, cx, size) if warped else (0.0, 0.0)
        img += amp * np.exp(-((yy - cy - dy) ** 2 + (xx - cx - dx) ** 2) / (2 * 2.5**2))
    return img.astype(np.float32)


def test_piecewise_recovers_a_smooth_warp_that_rigid_cannot():
    size, rng = 192, np.random.default_rng(5)
    centres = np.stack([rng.uniform(-5, size + 5, 500), rng.uniform(-5, size + 5, 500),
                        rng.uniform(50, 200, 500)], axis=1)
    template = _scene(centres, size, warped=False)
    frame = rng.poisson(_scene(centres, size, warped=True)).astype(np.float32)
    base = dict(radius_px=5.0, template_update_every=0)
    rigid = MotionCorrector(MotionConfig(**base), template).step(frame)
    pw_corrector = MotionCorrector(
        MotionConfig(**base, piecewise=True, patch_px=64, overlap_px=16, max_deviation_px=3),
        template,
    )
    pw = pw_corrector.step(frame)
    assert pw.trusted and pw.patch_shifts.shape == (4, 4, 2)
    # The patch shifts match the warp at the patch centres (patches average it a little).
    cy, cx = pw_corrector.patch_centres
    truth = np.stack(_warp(*np.meshgrid(cy, cx, indexing="ij"), size), axis=-1)
    assert np.sqrt(((pw.patch_shifts - truth) ** 2).mean()) < 0.2  # measured 0.12
    # The dense field is close to the warp everywhere; the rigid shift cannot be.
    yy, xx = np.mgrid[:size, :size]
    true_field = np.stack(_warp(yy, xx, size))
    pw_err = np.sqrt(((pw_corrector.shift_field(pw) - true_field) ** 2).mean())
    rigid_err = np.sqrt(((np.array(rigid.shift)[:, None, None] - true_field) ** 2).mean())
    assert pw_err < 0.35 < 0.6 < rigid_err  # measured 0.25 and 0.87
    # And the registered frame matches the template better, away from the edges.
    inner = (slice(16, -16), slice(16, -16))
    res_pw = np.abs(pw.corrected - template)[inner].mean()
    res_rigid = np.abs(rigid.corrected - template)[inner].mean()
    assert res_pw < 0.7 * res_rigid
    assert rigid.shift == pytest.approx(pw.shift)  # the reported (dy, dx) stays rigid


def test_piecewise_with_no_warp_matches_rigid():
    size, rng = 128, np.random.default_rng(6)
    centres = np.stack([rng.uniform(0, size, 200), rng.uniform(0, size, 200),
                        rng.uniform(50, 200, 200)], axis=1)
    template = _scene(centres, size, warped=False)
    yy, xx = np.mgrid[:size, :size]
    frame = template.copy()
    cfg = MotionConfig(radius_px=5.0, piecewise=True, patch_px=64, overlap_px=16)
    corrector = MotionCorrector(cfg, template)
    step = corrector.step(frame)
    assert np.abs(step.patch_shifts).max() < 0.05
    assert corrector.shift_field(step).shape == (2, size, size)
