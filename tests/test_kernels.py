"""Fast paths against plain references: summary images, band-pass, HALS, OASIS."""

import numpy as np
import pytest
from scipy.ndimage import gaussian_filter
from scipy.optimize import nnls

from rtcal.buffer.summary import local_correlation, noise_std, summary_images
from rtcal.deconv.oasis import decay_factor, oasis_ar1, oasis_ar1_reference
from rtcal.detect.bandpass import dog_filter
from rtcal.nmf.background import cosine_basis
from rtcal.nmf.hals import hals, hals_reference


def _local_correlation_brute(Y):
    T, H, W = Y.shape
    sd = Y.std(0)
    Z = (Y - Y.mean(0)) / np.where(sd > 0, sd, 1)
    out = np.zeros((H, W))
    for i in range(H):
        for j in range(W):
            vals = [
                (Z[:, i, j] * Z[:, i + dy, j + dx]).mean()
                for dy in (-1, 0, 1)
                for dx in (-1, 0, 1)
                if (dy, dx) != (0, 0) and 0 <= i + dy < H and 0 <= j + dx < W
            ]
            out[i, j] = np.mean(vals)
    return out


def test_local_correlation_matches_brute_force():
    rng = np.random.default_rng(0)
    Y = rng.normal(size=(60, 11, 14)).astype(np.float32)
    Y[:, 2:6, 3:9] += 2 * rng.normal(size=(60, 1, 1)).astype(np.float32)  # a correlated patch
    got = local_correlation(Y, chunk=7)  # chunking must not matter
    np.testing.assert_allclose(got, _local_correlation_brute(Y), atol=1e-5)
    assert got[3:5, 4:8].mean() > 0.7 > got[8:, :].mean() + 0.5


def test_noise_std_recovers_gaussian_sigma_despite_sparse_transients():
    rng = np.random.default_rng(1)
    Y = 3.0 * rng.normal(size=(2000, 8, 8))
    Y[::50] += 40.0  # sparse large events barely move the median difference
    sigma = noise_std(Y)
    assert abs(sigma.mean() - 3.0) < 0.06 * 3.0
    np.testing.assert_allclose(sigma, 3.0, rtol=0.15)
    assert Y.std(0).mean() > 2 * 3.0  # the plain std would be fooled


def test_summary_images_fields():
    rng = np.random.default_rng(2)
    Y = rng.poisson(50, size=(40, 16, 16)).astype(np.float32)
    s = summary_images(Y)
    np.testing.assert_allclose(s.mean, Y.mean(0), rtol=1e-5)
    np.testing.assert_array_equal(s.max, Y.max(0))
    assert all(a.shape == (16, 16) and a.dtype == np.float32 for a in vars(s).values())


@pytest.mark.parametrize("shape", [(64, 80), (3, 50, 41)])
def test_dog_filter_matches_scipy_gaussians(shape):
    x = np.random.default_rng(3).normal(size=shape).astype(np.float32)
    axes = (-2, -1)
    sig = [0] * (len(shape) - 2)
    ref = gaussian_filter(x, sig + [1.5, 1.5], mode="reflect", truncate=8, axes=None)
    ref -= gaussian_filter(x, sig + [6, 6], mode="reflect", truncate=8)
    del axes
    np.testing.assert_allclose(dog_filter(x, 1.5, 6.0), ref, atol=5e-5)


def test_dog_filter_rejects_bad_sigmas():
    with pytest.raises(ValueError, match="sigma_lo"):
        dog_filter(np.zeros((8, 8)), 3.0, 2.0)


def _random_problem(rng, K=25, n_free=4, P=300):
    M = np.abs(rng.normal(size=(K + n_free, P)))
    M[K:] = rng.normal(size=(n_free, P))
    truth = np.r_[np.abs(rng.normal(size=K)), rng.normal(size=n_free)]
    truth[: K // 3] = 0  # some components inactive
    y = M.T @ truth + 0.05 * rng.normal(size=P)
    nonneg = np.r_[np.ones(K, bool), np.zeros(n_free, bool)]
    return M, y, nonneg


def test_hals_numba_equals_reference_and_converges_to_nnls():
    rng = np.random.default_rng(4)
    M, y, nonneg = _random_problem(rng, n_free=0)
    G, b = M @ M.T, M @ y
    start = np.zeros(len(b), np.float32)
    fast = hals(G, b, start, nonneg, 300)
    np.testing.assert_allclose(fast, hals_reference(G, b, start, nonneg, 300), atol=1e-5)
    np.testing.assert_allclose(fast, nnls(M.T, y)[0], atol=1e-3)


def test_hals_leaves_free_components_unclamped():
    rng = np.random.default_rng(5)
    M, y, nonneg = _random_problem(rng)
    c = hals(M @ M.T, M @ y, np.zeros(len(nonneg), np.float32), nonneg, 300)
    assert (c[nonneg] >= 0).all()
    assert (c[~nonneg] < 0).any()  # the free truth has negative weights; they must survive
    lstsq = np.linalg.lstsq(M.T, y, rcond=None)[0]
    residual = np.linalg.norm(M.T @ c - y)
    assert residual <= np.linalg.norm(M.T @ np.where(nonneg, np.maximum(lstsq, 0), lstsq) - y)


def test_cosine_basis_orthonormal():
    B = cosine_basis(20, 30, 3).astype(np.float64)
    np.testing.assert_allclose(B @ B.T, np.eye(9), atol=1e-6)


def _ar1_spikes(rng, T, g, rate):
    s = (rng.random(T) < rate).astype(float) * rng.uniform(0.5, 1.5, T)
    c = np.zeros(T)
    for t in range(T):
        c[t] = (g * c[t - 1] if t else 0.0) + s[t]
    return s, c


def test_oasis_numba_equals_reference():
    rng = np.random.default_rng(6)
    g = decay_factor(0.8, 30.0)
    _, c = _ar1_spikes(rng, 1500, g, 0.02)
    y = c + 0.15 * rng.normal(size=c.size)
    for lam, s_min in [(0.0, 0.0), (0.3, 0.0), (0.0, 0.3)]:
        ref = oasis_ar1_reference(y, g, lam, s_min)
        fast = oasis_ar1(y, g, lam, s_min)
        np.testing.assert_allclose(fast[0], ref[0], atol=1e-5)
        np.testing.assert_allclose(fast[1], ref[1], atol=1e-5)


def test_oasis_recovers_calcium_and_spike_times():
    rng = np.random.default_rng(7)
    g = decay_factor(1.0, 30.0)
    s_true, c_true = _ar1_spikes(rng, 3000, g, 0.01)
    y = c_true + 0.1 * rng.normal(size=c_true.size)
    c, s = oasis_ar1(y, g, s_min=0.3)
    assert np.corrcoef(c, c_true)[0, 1] > 0.98
    found = np.flatnonzero(s > 0)
    true = np.flatnonzero(s_true > 0)
    # every true spike has an inferred one within one frame, and few extras
    assert all(np.abs(found - t).min() <= 1 for t in true)
    assert len(found) <= 1.2 * len(true)
    # the constraint holds: between spikes calcium decays by exactly g
    quiet = s[1:] == 0
    np.testing.assert_allclose(c[1:][quiet], g * c[:-1][quiet], atol=1e-5)


def test_oasis_rejects_bad_g():
    with pytest.raises(ValueError, match="g must be"):
        oasis_ar1(np.zeros(10), 1.2)


def test_dog_filter_chunked_with_subtract_and_in_place_equals_one_go():
    rng = np.random.default_rng(8)
    Y = rng.normal(size=(37, 40, 44)).astype(np.float32)
    base = rng.normal(size=(40, 44)).astype(np.float32)
    whole = dog_filter(Y - base, 1.0, 5.0, chunk=1000)
    np.testing.assert_allclose(dog_filter(Y, 1.0, 5.0, subtract=base, chunk=5), whole, atol=1e-5)
    work = Y - base
    dog_filter(work, 1.0, 5.0, out=work, chunk=4)
    np.testing.assert_allclose(work, whole, atol=1e-5)


def test_temporal_median_in_row_blocks_equals_numpy():
    from rtcal.buffer.summary import temporal_median

    Y = np.random.default_rng(9).normal(size=(31, 45, 20)).astype(np.float32)
    np.testing.assert_allclose(temporal_median(Y, rows=7), np.median(Y, axis=0), rtol=1e-6)
    U = np.random.default_rng(10).integers(0, 4000, size=(30, 45, 20)).astype(np.uint16)
    np.testing.assert_array_equal(temporal_median(U, rows=7),  # even T: mean of the middle two
                                  np.median(U, axis=0).astype(np.float32))


@pytest.mark.parametrize("dtype", [np.float32, np.uint16])
def test_noise_std_in_row_blocks_equals_its_formula(dtype):
    Y = np.random.default_rng(11).integers(0, 4000, size=(40, 37, 23)).astype(dtype)
    d = np.abs(np.diff(Y.astype(np.float32), axis=0))
    want = np.maximum(np.median(d, axis=0) / (0.6745 * np.sqrt(2)), 1e-6)
    np.testing.assert_allclose(noise_std(Y, rows=5), want, rtol=1e-4)
