"""Ring background model: config, geometry, fused kernel vs dense reference, W fit."""

import numpy as np
import pytest
import scipy.sparse as sp

from rtcal.errors import RtcalError
from rtcal.nmf.ring import (
    CoarseGrid,
    RingConfig,
    RingConfigError,
    RingModel,
    RingModelError,
    ring_background_reference,
    ring_offsets,
    ring_trace_step,
    stencil_from_csr,
)
from rtcal.nmf.ring_fit import fit_ring_model, fit_ring_weights, ring_sources


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("downsample", 0),
        ("downsample", 1.5),
        ("downsample", True),
        ("ring_radius_px", 1.0),  # below downsample=2
        ("ring_radius_px", float("nan")),
        ("ridge", -1e-3),
        ("ridge", float("inf")),
        ("footprint_threshold", 0.0),
        ("footprint_threshold", 1.5),
        ("min_source_fraction", -0.1),
        ("min_source_fraction", 2.0),
        ("outlier_sd", 0.0),
    ],
)
def test_config_rejects_bad_values_naming_field_and_value(field, value):
    with pytest.raises(RingConfigError) as err:
        RingConfig(**{field: value})
    assert field in str(err.value) and repr(value) in str(err.value)
    assert isinstance(err.value, RtcalError)


def test_config_from_neuron_radius():
    cfg = RingConfig.from_neuron_radius(8.0, downsample=4)
    assert cfg.ring_radius_px == pytest.approx(12.0) and cfg.coarse_radius == pytest.approx(3.0)
    with pytest.raises(RingConfigError, match="neuron_radius_px"):
        RingConfig.from_neuron_radius(0.0)


@pytest.mark.parametrize("radius", [1.0, 3.5, 7.25])
def test_ring_offsets_lie_on_the_ring(radius):
    off = ring_offsets(radius)
    dist = np.hypot(off[:, 0], off[:, 1])
    assert np.all((dist >= radius) & (dist < radius + 1))
    assert {tuple(o) for o in off} == {tuple(-o) for o in off}  # symmetric
    assert abs(len(off) - 2 * np.pi * (radius + 0.5)) < 0.25 * len(off)


@pytest.mark.parametrize(("shape", "factor"), [((12, 16), 2), ((13, 10), 3), ((9, 7), 1)])
def test_coarse_grid_preserves_constants_and_linear_ramps(shape, factor):
    g = CoarseGrid(*shape, factor)
    assert g.coarse_shape == (-(-shape[0] // factor), -(-shape[1] // factor))
    np.testing.assert_allclose(g.downsample(np.full(shape, 3.0)), 3.0)
    np.testing.assert_allclose(g.upsample(np.full(g.coarse_shape, 2.0)), 2.0)
    # a ramp sampled at the coarse pixel centres comes back exactly between them
    h, w = g.coarse_shape
    centres = np.arange(h) * factor + (factor - 1) / 2
    ramp = np.repeat(centres[:, None], w, axis=1)
    up = g.upsample(ramp)
    inside = (np.arange(shape[0]) >= centres[0]) & (np.arange(shape[0]) <= centres[-1])
    np.testing.assert_allclose(up[inside], np.arange(shape[0])[inside, None] * np.ones(shape[1]))


def _random_ring_model(shape, config, seed=0):
    rng = np.random.default_rng(seed)
    g = CoarseGrid(*shape, config.downsample)
    cells = rng.random(g.coarse_shape) < 0.3
    sources = ring_sources(cells, config)
    indptr = np.r_[0, np.cumsum([s.size for s in sources])]
    data = rng.normal(0, 0.1, indptr[-1]).astype(np.float32)
    n = g.coarse_shape[0] * g.coarse_shape[1]
    weights = sp.csr_matrix((data, np.concatenate(sources), indptr), shape=(n, n))
    b0 = (1000 + 50 * rng.standard_normal(shape)).astype(np.float32)
    return RingModel(b0, weights, config), rng


@pytest.mark.parametrize(
    ("shape", "downsample", "radius"), [((24, 20), 1, 3.0), ((23, 19), 2, 4.0), ((25, 31), 3, 6.5)]
)
def test_fused_kernel_matches_dense_reference(shape, downsample, radius):
    model, rng = _random_ring_model(shape, RingConfig(ring_radius_px=radius, downsample=downsample))
    for _ in range(3):
        r = (1000 + 40 * rng.standard_normal(shape)).astype(np.float32)
        ref = ring_background_reference(model, r)
        got = model.background(r)
        assert got.dtype == np.float32 and got.shape == shape
        np.testing.assert_allclose(got, ref, rtol=0, atol=1e-6 * np.abs(ref).max())
        np.testing.assert_array_equal(model.background_flat(r.ravel()), got.ravel())
        assert np.abs(ref - model.b0).max() > 1.0  # the fluctuation term is not trivially 0


def test_stencil_holds_exactly_the_csr_entries():
    model, _ = _random_ring_model((30, 26), RingConfig(ring_radius_px=5.0, downsample=2))
    h, w = model.grid.coarse_shape
    offsets, stencil = stencil_from_csr(model.weights, (h, w))
    rows, cols, vals = [], [], []
    for k, (dy, dx) in enumerate(offsets):
        ii, jj = np.nonzero(stencil[k])
        rows.append(ii * w + jj)
        cols.append((ii + dy) * w + jj + dx)
        vals.append(stencil[k, ii, jj])
    rebuilt = sp.csr_matrix((np.concatenate(vals), (np.concatenate(rows), np.concatenate(cols))),
                            shape=model.weights.shape)
    assert (rebuilt != model.weights).nnz == 0
    # the offsets are distinct and in (dy, dx) order, as np.unique(axis=0) gives them
    assert np.array_equal(offsets, np.unique(offsets, axis=0))
    empty = stencil_from_csr(sp.csr_matrix(model.weights.shape, dtype=np.float32), (h, w))
    assert empty[0].shape == (0, 2) and empty[1].shape == (0, h, w)


def test_model_rejects_mismatched_shapes():
    model, _ = _random_ring_model((20, 20), RingConfig(ring_radius_px=4.0, downsample=2))
    with pytest.raises(RingModelError, match="residual shape"):
        model.background(np.zeros((20, 21), np.float32))
    with pytest.raises(RingModelError, match="weights shape"):
        RingModel(np.zeros((20, 20), np.float32), sp.csr_matrix((10, 10)), model.config)


def test_ring_sources_skip_cells_unless_too_few_remain():
    cfg = RingConfig(ring_radius_px=3.0, downsample=1, min_source_fraction=0.5)
    cells = np.zeros((15, 15), bool)
    cells[:, :6] = True  # left part covered: the centre keeps the right part of its ring
    centre = 7 * 15 + 7
    src = ring_sources(cells, cfg)[centre]
    assert src.size > 0 and not cells.ravel()[src].any()
    cells[:, :10] = True  # now under half the ring is off cells: keep the whole ring
    src_all = ring_sources(cells, cfg)[centre]
    assert src_all.size == len(ring_offsets(3.0)) and cells.ravel()[src_all].any()


def test_fit_recovers_a_known_ring_relation():
    """Targets on a sparse lattice are exact combinations of their (random) ring pixels."""
    rng = np.random.default_rng(3)
    cfg = RingConfig(ring_radius_px=3.0, downsample=1, ridge=0.0)
    h = w = 33
    T = 400
    X = rng.standard_normal((h * w, T)).astype(np.float32)
    sources = ring_sources(np.zeros((h, w), bool), cfg)
    targets = [i * w + j for i in range(4, h - 4, 9) for j in range(4, w - 4, 9)]  # 9 > 2 r + 1
    truth = {}
    for q in targets:
        truth[q] = rng.normal(0, 0.3, sources[q].size)
        X[q] = truth[q] @ X[sources[q]]
    W = fit_ring_weights(X, np.zeros((h, w), bool), cfg)
    for q in targets:
        row = W.getrow(q)
        np.testing.assert_array_equal(row.indices, np.sort(sources[q]))
        order = np.argsort(sources[q])
        np.testing.assert_allclose(row.data, truth[q][order], atol=1e-4)


def test_fit_predicts_a_harmonic_background_and_ignores_cells():
    """Harmonic fields obey the mean value property, so a ring predicts them; the cells'
    activity (uncorrelated with the background) must not leak into the prediction."""
    rng = np.random.default_rng(4)
    H = W = 40
    T = 300
    yy, xx = np.mgrid[:H, :W] / 40.0
    basis = np.stack([np.ones_like(xx), xx, yy, xx**2 - yy**2, xx * yy])
    bg = 1000 + np.einsum("tj,jhw->thw", rng.normal(0, [5, 50, 50, 80, 80], (T, 5)), basis)
    footprints = np.zeros((1, H, W), np.float32)
    footprints[0, 17:23, 17:23] = 1.0
    spikes = 300 * (rng.random(T) < 0.1)
    Y = (bg + footprints[0] * spikes[:, None, None]).astype(np.float32)
    model = fit_ring_model(Y, footprints, np.zeros((1, T), np.float32),
                           RingConfig(ring_radius_px=6.0, downsample=2, ridge=1e-6))
    fluct = bg - bg.mean(axis=0)
    pred = np.stack([model.background(y) for y in Y]) - model.b0
    err = pred - fluct
    assert np.sqrt((err[:, 8:-8, 8:-8] ** 2).mean() / (fluct**2).mean()) < 0.05
    cell_err = err[:, 19:21, 19:21].mean(axis=(1, 2))
    assert abs(np.corrcoef(cell_err, spikes)[0, 1]) < 0.3


def test_fit_rejects_mismatched_inputs():
    Y = np.zeros((10, 12, 12), np.float32)
    cfg = RingConfig(ring_radius_px=3.0, downsample=1)
    with pytest.raises(RingModelError, match="traces shape"):
        fit_ring_model(Y, np.zeros((2, 12, 12)), np.zeros((2, 9)), cfg)
    with pytest.raises(RingModelError, match="footprints shape"):
        fit_ring_model(Y, np.zeros((2, 12, 11)), np.zeros((2, 10)), cfg)


def test_ring_trace_step_subtracts_previous_cells_then_background():
    model, rng = _random_ring_model((16, 16), RingConfig(ring_radius_px=4.0, downsample=2))
    A = sp.csr_matrix(rng.random((2, 256)).astype(np.float32))
    y = (1000 + rng.standard_normal(256)).astype(np.float32)
    c_prev = np.array([3.0, 5.0], np.float32)
    seen = []

    def solve(y_minus_b, c_start):
        seen.append((y_minus_b.copy(), c_start.copy()))
        return c_start + 1

    step = ring_trace_step(y, c_prev, A, model, solve, n_alternations=2)
    b1 = model.background_flat(y - A.T @ c_prev)
    np.testing.assert_allclose(seen[0][0], y - b1)
    np.testing.assert_array_equal(seen[0][1], c_prev)
    b2 = model.background_flat(y - A.T @ (c_prev + 1))
    np.testing.assert_allclose(seen[1][0], y - b2)
    np.testing.assert_allclose(step.background, b2)
    np.testing.assert_array_equal(step.traces, c_prev + 2)
    with pytest.raises(RingModelError, match="n_alternations"):
        ring_trace_step(y, c_prev, A, model, solve, n_alternations=0)
