"""The classical seed detector: its configuration, the local-background footprint
fit, the one-photon path on a ring residual, and the compiled ring fit it uses."""

import numpy as np
import pytest
import scipy.fft

from rtcal.buffer.summary import local_correlation
from rtcal.detect.bandpass import dog_filter
from rtcal.detect.seed import (
    SeedConfig,
    SeedConfigError,
    SeedDetector,
    footprint_with_background,
    footprint_with_background_fast,
    rank1_footprint,
    thresholded_correlation,
)
from rtcal.engine.pipeline import pipeline_config
from rtcal.metrics.evaluate import score_footprints
from rtcal.metrics.truth import dense_to_csr, truth_from_arrays
from rtcal.nmf.ring import RingConfig
from rtcal.nmf.ring_fit import (
    fit_ring_model,
    fit_ring_weights,
    fit_ring_weights_reference,
    ring_residual,
)
from rtcal.sim import ActivityParams, Simulation, make_config, static_truth


@pytest.mark.parametrize("field,value", [
    ("background", "lowrank"), ("highpass_radii", 0.2), ("highpass_radii", 200.0),
    ("corr_threshold_sd", -1.0), ("corr_threshold_sd", float("nan")),
    ("first_ring_ridge", -0.1), ("first_ring_ridge", float("inf")),
    ("sure_score", 0.0), ("sure_score", float("nan")),
])
def test_config_rejects_bad_values_naming_them(field, value):
    with pytest.raises(SeedConfigError, match=field):
        SeedConfig(**{field: value})


def test_modes_choose_the_background():
    two, one = pipeline_config(30.0, 6.0, "2p").seed, pipeline_config(20.0, 9.0, "1p").seed
    assert (two.background, two.local_background, two.highpass_radii) == ("none", False, 2.0)
    assert (one.background, one.local_background, one.highpass_radii) == ("ring", True, 0.0)
    assert (two.corr_threshold_sd, one.corr_threshold_sd) == (0.0, 2.0)
    assert one.radius_px == 9.0
    assert (two.sure_score, one.sure_score) == (np.inf, 7.5)


def _cell_and_background(seed, background_ratio, T=300, size=41):
    """A patch with one cell (Gaussian, sigma 3 px, at the centre) and a broad
    blob of background over it whose slow fluctuation has ``background_ratio``
    times the standard deviation of the cell's calcium."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:size, :size] - size // 2
    cell = np.exp(-(yy**2 + xx**2) / (2 * 3.0**2))
    spikes = rng.random(T) < 0.05
    c = np.convolve(spikes.astype(float), np.exp(-np.arange(30) / 8.0))[:T]
    c *= 0.5 / c.std()
    blob = np.exp(-((yy - 4) ** 2 + (xx + 6) ** 2) / (2 * 14.0**2))
    b = np.convolve(rng.normal(size=T), np.ones(15) / 15, mode="same")
    b *= background_ratio * 0.5 / b.std()
    P = c[:, None, None] * cell + b[:, None, None] * blob + 0.05 * rng.normal(size=(T, size, size))
    return P.astype(np.float32), cell


def _mask_iou(a, b):
    ma, mb = a >= 0.2 * a.max(), b >= 0.2 * b.max()
    return (ma & mb).sum() / (ma | mb).sum()


def test_local_background_keeps_the_footprint_on_the_cell():
    """With a background half as variable as the cell, the fit with the
    background regressor finds the cell's mask every time; the plain rank-1 fit
    takes much of the blob with it (IoU 0.1-0.5 on most of these patches). In
    several of them the cell's activity and the background correlate ~0.25 by
    chance, so fewer than a tenth of the pixels decorrelate from the seed: the
    rule CNMF-E uses (a tenth) then drops the regressor."""
    fitted, plain = [], []
    for seed in range(8):
        P, cell = _cell_and_background(seed, background_ratio=0.5)
        fitted.append(_mask_iou(footprint_with_background(P, (20, 20)), cell))
        plain.append(_mask_iou(rank1_footprint(P, (20, 20)), cell))
    assert min(fitted) > 0.85
    assert np.median(plain) < 0.5


def test_local_background_on_a_flat_patch_is_empty_not_nan():
    P = np.ones((50, 15, 15), np.float32)
    for fit in (footprint_with_background, footprint_with_background_fast):
        out = fit(P, (7, 7))
        assert out.shape == (15, 15) and np.all(out == 0)


def test_fast_local_background_fit_with_a_cleared_border_equals_the_reference(monkeypatch):
    """The residual's border rows and columns are zeroed where registration invented
    them; when they are most of a patch's background pixels, the background trace
    (their median) is 0 in every frame, the normal equations are singular, and the
    fast fit falls back to least squares, as the reference solves it."""
    P, _ = _cell_and_background(1, background_ratio=0.5, T=120)
    P[:, :, 28:] = 0  # 13 of 41 columns cleared
    want = footprint_with_background(P, (20, 20))
    solved = []
    lstsq = np.linalg.lstsq
    monkeypatch.setattr(np.linalg, "lstsq", lambda *a, **k: solved.append(1) or lstsq(*a, **k))
    got = footprint_with_background_fast(P, (20, 20))
    assert solved, "the singular case did not reach the fallback"
    assert want.max() > 0
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6 * want.max())


@pytest.mark.parametrize("case", ["cell", "strong background", "edge", "odd", "noise"])
def test_fast_local_background_fit_equals_the_reference(case):
    """The fast fit (one matrix-vector product for the correlations, medians by
    sorting, 3 x 3 normal equations) gives the reference's footprint: with and
    without the background regressor (too few decorrelated pixels), at a patch's
    edge, with an odd and an even number of background pixels."""
    if case == "noise":
        P = np.random.default_rng(3).normal(size=(60, 31, 31)).astype(np.float32)
        centre = (15, 15)
    else:
        P, _ = _cell_and_background(1, background_ratio=4.0 if case == "strong background"
                                    else 0.5, T=120)
        if case == "odd":
            P = P[:, :, :40]
        centre = (0, 20) if case == "edge" else (20, 20)
    want = footprint_with_background(P, centre)
    got = footprint_with_background_fast(P, centre)
    assert want.max() > 0
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6 * want.max())


@pytest.mark.parametrize("seed", range(4))
def test_thresholded_correlation_shows_a_cell_seen_in_one_transient(seed):
    """A cell with one transient in 300 frames hardly correlates with its
    neighbours over the whole window (noise dominates); on the values above 2
    noise sigmas it does, and noise pixels stay uncorrelated. Measured: centre
    0.17-0.26 plain, 0.47-0.62 thresholded; noise < 0.1 either way."""
    rng = np.random.default_rng(seed)
    T, H, W = 300, 32, 32
    yy, xx = np.mgrid[:H, :W]
    cell = np.exp(-((yy - 16) ** 2 + (xx - 16) ** 2) / (2 * 3.0**2)).astype(np.float32)
    c = np.zeros(T, np.float32)
    t0 = rng.integers(20, 260)
    c[t0:] = 5 * np.exp(-np.arange(T - t0) / 6.0)
    D = (c[:, None, None] * cell + rng.normal(0, 1, (T, H, W))).astype(np.float32)
    plain, above = thresholded_correlation(D, 0.0), thresholded_correlation(D, 2.0)
    np.testing.assert_array_equal(plain, local_correlation(D))
    assert plain[16, 16] < 0.3
    assert above[16, 16] > 0.4 and above[16, 16] > 1.8 * plain[16, 16]
    assert np.abs(above[:6, :6]).max() < 0.15


def test_first_ring_fit_uses_its_own_ridge(monkeypatch, one_photon_window):
    """The fit with no cells known takes first_ring_ridge; the second the ring's own."""
    import rtcal.detect.seed as seed_module

    ridges = []

    def spy(Y, footprints, traces, config):
        ridges.append((footprints.shape[0], config.ridge))
        return ring_residual(Y, footprints, traces, config)

    monkeypatch.setattr(seed_module, "ring_residual", spy)
    Y, truth, _ = one_photon_window
    config = pipeline_config(20.0, float(np.median(truth["radius_px"])), "1p").seed
    SeedDetector(config).propose(Y[:100])
    assert ridges[0] == (0, config.first_ring_ridge) == (0, 0.1)
    assert ridges[1][1] == RingConfig.from_neuron_radius(config.radius_px).ridge


def test_stronger_first_ridge_keeps_more_of_the_active_cells(one_photon_window):
    """With no cells known, the ring learns the most active cells' transients from
    their faint halo on the ring and takes them out of the residual. A stronger
    ridge keeps more of them. Measured on the 4 cells that spike 15 times or more
    in the window: 7-36 % of each transient kept at ridge 0.01, 14-51 % at 0.1."""
    Y, truth, _ = one_photon_window
    spikes, calcium = truth["window_spikes"], truth["window_calcium"]
    T, H, W = Y.shape
    ring = RingConfig.from_neuron_radius(float(np.median(truth["radius_px"])))
    none, zero = np.zeros((0, H, W), np.float32), np.zeros((0, T), np.float32)
    kept = {}
    for ridge in (0.01, 0.1):
        R = ring_residual(Y, none, zero, RingConfig(ring.ring_radius_px, ridge=ridge))
        fractions = []
        for k in np.nonzero(spikes.sum(axis=0) >= 15)[0]:
            y, x = np.round(truth["centers"][k]).astype(int)
            top = calcium[:, k] > np.quantile(calcium[:, k], 0.9)
            low = calcium[:, k] < np.quantile(calcium[:, k], 0.5)
            raw = Y[top, y, x].mean() - Y[low, y, x].mean()
            if raw > 0:  # its transients rise above the background's own swings
                fractions.append((R[top, y, x].mean() - R[low, y, x].mean()) / raw)
        kept[ridge] = np.array(fractions)
    assert len(kept[0.1]) >= 3
    assert (kept[0.1] > kept[0.01]).all()
    assert kept[0.1].mean() > kept[0.01].mean() + 0.05


def test_nonneg_traces_on_the_footprints_support_equal_the_dense_solution():
    """The first pass's traces are solved on the pixels the footprints cover only;
    the same as the least-squares solution over the whole frame."""
    from rtcal.detect.seed import _nonneg_traces

    rng = np.random.default_rng(7)
    T, H, W = 40, 24, 30
    A = np.zeros((3, H, W), np.float32)
    A[0, 2:8, 3:9], A[1, 6:12, 6:14], A[2, 15:20, 20:27] = 1.0, 0.5, 2.0
    Y = (100 + rng.normal(size=(T, H, W)) + np.einsum("kt,khw->thw",
         rng.random((3, T)) * 10, A)).astype(np.float32)
    flat = A.reshape(3, -1).astype(np.float64)
    b = flat @ np.median(Y.reshape(T, -1), axis=0)
    G = flat @ flat.T
    G[np.diag_indices_from(G)] += 1e-6 * np.trace(G) / 3
    want = np.maximum(np.linalg.solve(G, flat @ Y.reshape(T, -1).T - b[:, None]), 0)
    np.testing.assert_allclose(_nonneg_traces(A, Y), want, rtol=1e-4, atol=1e-3)
    assert _nonneg_traces(A[:0], Y).shape == (0, T)


def test_ring_fit_without_cells_and_residual():
    rng = np.random.default_rng(1)
    Y = rng.normal(100.0, 1.0, (30, 48, 48)).astype(np.float32)
    ring = RingConfig.from_neuron_radius(4.0)
    none = np.zeros((0, 48, 48), np.float32)
    model = fit_ring_model(Y, none, np.zeros((0, 30), np.float32), ring)  # K = 0 was a crash
    assert model.nnz > 0
    R = ring_residual(Y, none, np.zeros((0, 30), np.float32), ring)
    assert R.shape == Y.shape and R.dtype == np.float32
    assert abs(float(R.mean())) < 0.1 and 0.5 < float(R.std()) < 1.5


def test_ring_residual_keeps_a_known_cell_out_of_the_background():
    """A cell whose traces are given is taken out of the fit and of each frame's
    prediction: its transients stay in the residual at full size."""
    rng = np.random.default_rng(2)
    T, H, W = 200, 64, 64
    yy, xx = np.mgrid[:H, :W]
    cell = np.exp(-((yy - 32) ** 2 + (xx - 32) ** 2) / (2 * 3.0**2)).astype(np.float32)
    c = np.zeros(T, np.float32)
    c[rng.random(T) < 0.3] = 20.0  # a very active cell
    f = np.convolve(rng.normal(size=T), np.ones(10) / 10, mode="same").astype(np.float32)
    smooth = (1 + 0.5 * np.cos(xx / 20.0)).astype(np.float32)
    Y = 50 + f[:, None, None] * 10 * smooth + c[:, None, None] * cell
    Y = (Y + rng.normal(0, 0.5, Y.shape)).astype(np.float32)
    ring = RingConfig.from_neuron_radius(4.0)
    R = ring_residual(Y, cell[None], c[None], ring)
    active = c > 0
    peak = R[:, 32, 32]
    assert np.median(peak[active]) - np.median(peak[~active]) == pytest.approx(20.0, rel=0.15)
    far = R[:, 8:20, 44:56]  # no cell there: the background is gone
    assert far.std() < 1.5


@pytest.mark.parametrize("downsample", [1, 2])
def test_compiled_ring_weights_match_the_reference(downsample):
    rng = np.random.default_rng(3)
    X = rng.normal(size=(24 * 24, 80)).astype(np.float32)
    X[::7] += 5 * (rng.random((1, 80)) > 0.9)  # outliers for the refit passes
    cells = np.zeros((24, 24), bool)
    cells[5:9, 5:9] = True
    cfg = RingConfig(ring_radius_px=3.0 * downsample, downsample=downsample)
    fast, ref = fit_ring_weights(X, cells, cfg), fit_ring_weights_reference(X, cells, cfg)
    np.testing.assert_array_equal(fast.indptr, ref.indptr)
    np.testing.assert_array_equal(fast.indices, ref.indices)
    np.testing.assert_allclose(fast.data, ref.data, rtol=1e-4, atol=1e-6)


def test_dog_filter_pads_to_a_fast_length_without_changing_the_filter():
    """An awkward padded length (767 = 13 x 59) is rounded up to a fast one; the
    band-pass is still a difference of Gaussians of the reflected frame."""
    from scipy import ndimage

    rng = np.random.default_rng(4)
    img = rng.normal(size=(128, 128)).astype(np.float32)
    lo, hi = 2.0, 40.0  # pad min(160, 127) -> 382, rounded to 384
    assert scipy.fft.next_fast_len(128 + 2 * 127, real=False) == 384
    got = dog_filter(img, lo, hi)
    ref = ndimage.gaussian_filter(img.astype(np.float64), lo, mode="reflect", truncate=8) - \
        ndimage.gaussian_filter(img.astype(np.float64), hi, mode="reflect", truncate=8)
    inner = (slice(8, -8), slice(8, -8))  # the padding's own truncation shows at the edge
    np.testing.assert_allclose(got[inner], ref[inner], atol=0.02 * np.abs(ref).max())


@pytest.fixture(scope="module")
def one_photon_window():
    """300 frames of a simulated 128 x 128 microendoscope movie, 14 cells, and
    which cells spike at least twice in them (what activity can find)."""
    cfg = make_config("1p", height=128, width=128, n_frames=300, n_neurons=14, seed=8,
                      activity=ActivityParams(rate_median_hz=0.5))
    sim = Simulation(cfg)
    chunks = list(sim.chunks())
    Y = np.concatenate([c.images for c in chunks]).astype(np.float32)
    spikes = np.concatenate([c.spikes for c in chunks])
    truth = dict(static_truth(sim))
    truth["window_spikes"] = spikes
    truth["window_calcium"] = np.concatenate([c.calcium for c in chunks])
    return Y, truth, (spikes > 0).sum(axis=0) >= 2


def test_ring_seeds_find_one_photon_cells_that_the_band_pass_alone_does_not(one_photon_window):
    """On a simulated microendoscope window the ring path (mode 1p) proposes
    most of the active cells with few false ones; the 2p band-pass alone, at
    the same radius, finds few (its footprints spread over the background).
    Measured: 8 of the 11 active cells in 9 proposals, against 1 in 6."""
    Y, truth, active = one_photon_window
    radius = float(np.median(truth["radius_px"]))
    t = truth_from_arrays(truth["footprints"])
    found = {}
    for name, config in [("ring", pipeline_config(20.0, radius, "1p").seed),
                         ("plain", SeedConfig(radius_px=radius))]:
        proposal = SeedDetector(config).propose(Y)
        m = score_footprints(dense_to_csr(proposal.footprints), t).main
        found[name] = (int(active[m.true_index[m.is_tp]].sum()), len(proposal.footprints) - m.n_tp)
    (ring_found, ring_false), (plain_found, _) = found["ring"], found["plain"]
    assert ring_found >= 0.6 * active.sum()
    assert ring_false <= 2
    assert ring_found >= plain_found + 4


def test_sure_marks_the_activity_seeds_scoring_at_least_sure_score(one_photon_window):
    """``Proposal.sure``: the activity seeds whose local correlation x
    peak-to-noise reaches ``sure_score``; none with the default (inf)."""
    from dataclasses import replace

    Y = one_photon_window[0]
    config = pipeline_config(20.0, 9.0, "1p").seed
    never = SeedDetector(replace(config, sure_score=np.inf)).propose(Y)
    assert len(never) >= 4 and never.sure.dtype == bool and not never.sure.any()
    scores = np.sort(never.score)
    cut = float(scores[len(scores) // 2])  # about half of them
    p = SeedDetector(replace(config, sure_score=cut)).propose(Y)
    np.testing.assert_array_equal(p.footprints, never.footprints)  # only the flags differ
    np.testing.assert_array_equal(p.sure, p.score >= cut)  # 1p windows: activity seeds only
    assert 0 < p.sure.sum() < len(p)
