"""The unconstrained ("noisy") traces: offsets from the clamped HALS traces, on
every implementation, and what they are for (symmetric noise at rest)."""

import numpy as np
import pytest
import scipy.sparse as sp

from rtcal.deconv.ar import noise_sigma
from rtcal.nmf.hals import hals, unclipped_offset, unclipped_offset_reference
from rtcal.nmf.online import OnlineNMF, OnlineNMFConfig
from rtcal.nmf.xp_hals import unclipped_offset_into
from rtcal.sim import Simulation, make_config, static_truth


def _problem(seed, K=12, nb=3):
    rng = np.random.default_rng(seed)
    M = rng.random((K + nb, 200)) * (rng.random((K + nb, 200)) < 0.3)
    M[:K, 100:] *= np.arange(K)[:, None] % 3 == 0  # some pairs of components never overlap
    G = M @ M.T
    G[4, :] = G[:, 4] = 0.0  # a zeroed component
    y = M.T @ np.r_[rng.exponential(1.0, K) * (rng.random(K) < 0.5), rng.normal(size=nb)]
    y += rng.normal(0, 0.5, 200)
    b = M @ y
    nonneg = np.r_[np.ones(K, bool), np.zeros(nb, bool)]
    c = hals(G, b, np.zeros(K + nb, np.float32), nonneg, 3)
    return G, b, c, K


def _overlaps(G, K):
    """CSR lists of the components overlapping each one (itself included)."""
    pattern = sp.csr_matrix(G[:K, :K] != 0)
    pattern.setdiag(True)
    pattern.sort_indices()
    return pattern.indptr.astype(np.int64), pattern.indices.astype(np.int64)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_every_implementation_gives_the_reference_offsets(seed):
    G, b, c, K = _problem(seed)
    want = unclipped_offset_reference(G, b, c, K)
    ov_ptr, ov_idx = _overlaps(G, K)
    assert len(ov_idx) < K * K  # the sparse sum skips pairs that do not overlap
    np.testing.assert_allclose(unclipped_offset(G, b, c, K, ov_ptr, ov_idx), want,
                               rtol=1e-5, atol=1e-6)
    out, gc, gd = np.zeros(K), np.zeros(K), np.zeros(K)
    unclipped_offset_into(G, b, c.astype(np.float64), gc, gd, out)
    np.testing.assert_allclose(out, want, rtol=1e-5, atol=1e-6)
    assert want[4] == 0.0  # G_kk = 0: no offset
    # by definition: c_k + offset_k is the unconstrained value given the others
    k = int(np.flatnonzero((c[:K] == 0) & (np.diagonal(G)[:K] > 0))[0])
    others = G[k] @ c - G[k, k] * c[k]
    assert np.isclose(c[k] + want[k], (b[k] - others) / G[k, k], rtol=1e-5)
    assert want[k] < 0  # clamped at 0 because its unconstrained value is negative


def test_the_noisy_traces_are_not_rectified_at_rest():
    cfg = make_config("2p", height=64, width=64, n_frames=260, n_neurons=6, seed=4,
                      motion_px=0.0)
    sim = Simulation(cfg)
    frames = np.stack([f.image for f in sim.stream()]).astype(np.float32)
    truth = static_truth(sim)
    nmf = OnlineNMF(OnlineNMFConfig(radius_px=5.0, max_new_per_search=0), cfg.fps_hz,
                    truth["footprints"], frames[:60])
    steps = [nmf.step(f) for f in frames[60:]]
    traces = np.stack([s.traces for s in steps], 1)
    noisy = np.stack([s.noisy for s in steps], 1)
    assert noisy.dtype == np.float32 and noisy.shape == traces.shape
    # where the clamped trace is positive the two agree (HALS has converged there)
    pos = traces > 0.05 * traces.max(axis=1, keepdims=True)
    np.testing.assert_allclose(noisy[pos], traces[pos], rtol=0.05, atol=0.05 * traces.max())
    # the clamped traces sit at exactly 0 a good part of the time; the noisy ones never
    assert (traces == 0).mean() > 0.2
    assert (noisy == 0).mean() < 0.01
    assert (noisy < 0).mean() > 0.1
    # so the clamped traces understate the noise that sets the spike threshold
    assert np.median(noise_sigma(noisy) / np.maximum(noise_sigma(traces), 1e-9)) > 1.2
    # the initial frames too
    assert nmf.init_noisy.shape == nmf.init_traces.shape
    assert (nmf.init_noisy < 0).any() and (nmf.init_traces >= 0).all()
