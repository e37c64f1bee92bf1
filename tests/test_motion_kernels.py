"""Motion kernels: every Numba fast path against its plain reference."""

import numpy as np
import pytest
import scipy.fft

from rtcal.motion.bandpass import (
    band_pass_spectrum,
    band_pass_spectrum_reference,
    band_pass_transfer,
    spectrum_and_power,
    spectrum_power,
)
from rtcal.motion.frame_check import centre_frame, centre_frame_reference
from rtcal.motion.remap import shift_field, unwarp, unwarp_reference
from rtcal.motion.rigid import apply_shift, apply_shift_reference
from rtcal.motion.upsampled_dft import (
    dft_correlation,
    dft_correlation_reference,
    refine_peak,
    refine_peak_reference,
)


@pytest.mark.parametrize("shape", [(40, 53), (64, 64), (33, 48)])
def test_band_pass_spectrum_matches_float64_reference_and_batches(shape):
    rng = np.random.default_rng(0)
    img = (rng.normal(size=shape) + np.linspace(0, 20, shape[1])).astype(np.float32)
    ref = band_pass_spectrum_reference(img, 1.0, 5.0)
    fast = band_pass_spectrum(img, 1.0, 5.0)
    assert np.abs(fast - ref).max() < 1e-5 * np.abs(ref).max()
    batch = np.stack([img, 2 * img])
    batch -= batch.mean(axis=(1, 2), keepdims=True)
    spectra, powers = spectrum_and_power(batch, 1.0, 5.0)
    assert np.abs(spectra[1] - 2 * ref).max() < 1e-5 * np.abs(ref).max()
    np.testing.assert_allclose(powers, [1, 4] * np.array(spectrum_power(ref, shape[1])), rtol=1e-5)


def test_periodic_part_removes_the_wraparound_edge():
    # A ramp is a pure wrap-around step to the FFT; its periodic part is nearly flat.
    ramp = np.add.outer(np.linspace(0, 50, 64), np.linspace(0, 80, 72)).astype(np.float32)
    transfer = band_pass_transfer((64, 72), 1.0, 5.0)
    plain = scipy.fft.rfft2(ramp - ramp.mean()) * transfer
    periodic = band_pass_spectrum(ramp, 1.0, 5.0)
    assert spectrum_power(periodic, 72) < 1e-3 * spectrum_power(plain, 72)


@pytest.mark.parametrize("width", [50, 51])
def test_dft_correlation_equals_inverse_fft_and_reference(width):
    rng = np.random.default_rng(2)
    a, b = rng.normal(size=(2, 3, 36, width))
    product = (scipy.fft.rfft2(a) * np.conj(scipy.fft.rfft2(b))).astype(np.complex64)
    offsets = np.arange(-3, 4, dtype=float)
    centres_y, centres_x = np.array([2.0, -5.0, 0.0]), np.array([-4.0, 7.0, 1.0])
    fast = dft_correlation(product, width, centres_y, centres_x, offsets, offsets)
    for k in range(3):
        xc = scipy.fft.irfft2(product[k].astype(np.complex128), s=(36, width))
        rows = (centres_y[k] + offsets).astype(int) % 36
        cols = (centres_x[k] + offsets).astype(int) % width
        np.testing.assert_allclose(fast[k], xc[np.ix_(rows, cols)], atol=1e-4 * np.abs(xc).max())
    sub = np.linspace(-0.8, 0.8, 5)
    np.testing.assert_allclose(
        dft_correlation(product, width, centres_y, centres_x, sub, sub),
        dft_correlation_reference(product, width, centres_y, centres_x, sub, sub),
        atol=1e-5 * np.abs(fast).max(),
    )


@pytest.mark.parametrize("bin_px", [1, 2, 3])
def test_centre_frame_matches_reference(bin_px):
    rng = np.random.default_rng(3)
    frame = rng.poisson(100, size=(50, 61)).astype(np.float32)
    frame[3, 4], frame[5, 6], frame[7, 8] = np.nan, np.inf, 5000
    fast, stats = centre_frame(frame, 5000.0, bin_px)
    ref, ref_stats = centre_frame_reference(frame, 5000.0, bin_px)
    np.testing.assert_allclose(fast, ref, atol=1e-3)
    assert stats == ref_stats
    assert (stats.n_nonfinite, stats.n_saturated) == (2, 1)
    ints = frame.copy()
    ints[~np.isfinite(ints)] = 0
    ints = ints.astype(np.uint16)
    fast, stats = centre_frame(ints, 65535.0, bin_px)
    ref, ref_stats = centre_frame_reference(ints, 65535.0, bin_px)
    np.testing.assert_allclose(fast, ref, atol=1e-3)
    assert stats == ref_stats


@pytest.mark.parametrize("shift", [(0.0, 0.0), (1.3, -2.7), (-4.6, 3.25), (0.5, 0.5), (60, -70)])
@pytest.mark.parametrize("dtype", [np.float32, np.uint16])
def test_numba_bilinear_shift_equals_scipy_for_each_dtype(shift, dtype):
    img = np.random.default_rng(0).uniform(0, 1000, size=(40, 53)).astype(dtype)
    np.testing.assert_allclose(
        apply_shift(img, *shift), apply_shift_reference(img, *shift), rtol=1e-5, atol=1e-3
    )


def test_unwarp_equals_dense_field_reference_and_rigid_shift():
    rng = np.random.default_rng(4)
    frame = rng.normal(size=(100, 90)).astype(np.float32)
    patch_shifts = rng.normal(0, 2, size=(3, 4, 2))
    centres_y, centres_x = np.array([20.0, 50.0, 80.0]), np.array([10.0, 35.0, 60.0, 85.0])
    field = shift_field(patch_shifts, centres_y, centres_x, frame.shape)
    assert field.shape == (2, 100, 90)
    np.testing.assert_allclose(field[:, 50, 35], patch_shifts[1, 1], atol=1e-6)
    np.testing.assert_allclose(field[:, 0, 0], patch_shifts[0, 0], atol=1e-6)  # held beyond
    np.testing.assert_allclose(
        unwarp(frame, patch_shifts, centres_y, centres_x), unwarp_reference(frame, field),
        atol=1e-4,
    )
    constant = np.broadcast_to([1.3, -2.2], (3, 4, 2))
    np.testing.assert_allclose(
        unwarp(frame, constant, centres_y, centres_x), apply_shift_reference(frame, -1.3, 2.2),
        atol=1e-4,
    )


@pytest.mark.parametrize("width, upsample", [(64, 4), (51, 4), (64, 1), (48, 10)])
def test_refine_peak_matches_the_numpy_reference(width, upsample):
    rng = np.random.default_rng(width + upsample)
    from scipy import ndimage

    template = ndimage.gaussian_filter(rng.normal(size=(40, width)), 2.0, mode="wrap")
    shifts = [(1.3, -2.6), (-0.45, 0.2), (3.0, 4.7)]
    frames = [ndimage.shift(template, s, mode="wrap", order=3) for s in shifts]
    product = np.stack(
        [scipy.fft.rfft2(f) * np.conj(scipy.fft.rfft2(template)) for f in frames]
    ).astype(np.complex64)
    coarse_y = np.round([s[0] for s in shifts])
    coarse_x = np.round([s[1] for s in shifts])
    got = refine_peak(product, width, coarse_y, coarse_x, upsample)
    want = refine_peak_reference(product, width, coarse_y, coarse_x, upsample)
    np.testing.assert_allclose(got[0], want[0], atol=1e-5)
    np.testing.assert_allclose(got[1], want[1], atol=1e-5)
    np.testing.assert_allclose(got[2], want[2], rtol=1e-4)
    if upsample > 1:  # and both find the shifts
        np.testing.assert_allclose(got[0], [s[0] for s in shifts], atol=0.15)
        np.testing.assert_allclose(got[1], [s[1] for s in shifts], atol=0.15)
