"""Footprint shapes: normalised, irregular, donuts with a dark centre, sizes from the config."""

import numpy as np

from rtcal.sim import Simulation, make_config
from rtcal.sim.config import CellParams
from rtcal.sim.footprints import soma_patch


def _sim(**kw):
    cfg = make_config("2p", height=96, width=96, n_frames=8, n_neurons=40, motion_px=0.0, **kw)
    return Simulation(cfg)


def test_footprints_normalised_and_inside_frame():
    sim = _sim()
    a = sim.footprints
    assert a.shape == (40, 96, 96) and a.dtype == np.float32
    np.testing.assert_allclose(a.max(axis=(1, 2)), 1.0, atol=1e-6)
    assert a.min() >= 0
    c = sim.tissue.centers
    assert np.all((c >= 0) & (c < 96))


def test_sizes_follow_config():
    sim = _sim(radius_min_px=4.0, radius_max_px=6.0)
    r = sim.tissue.radius_px
    assert r.min() >= 4.0 and r.max() <= 6.0
    area = (sim.footprints > 0.5).sum(axis=(1, 2))  # radius_px is the half-maximum radius
    filled = ~sim.tissue.is_donut
    inside = np.all((sim.tissue.centers > 8) & (sim.tissue.centers < 88), axis=1)
    equiv_r = np.sqrt(area / np.pi)
    sel = filled & inside
    assert sel.sum() >= 5
    np.testing.assert_allclose(np.median(equiv_r[sel] / r[sel]), 1.0, atol=0.1)


def test_donuts_have_dark_centre_filled_cells_do_not():
    rng = np.random.default_rng(0)
    for p, dark in ((CellParams(nucleus_depth=0.9), 0.45), (CellParams(), 0.75)):
        for donut in (True, False):
            for _ in range(10):
                patch = soma_patch(rng, np.array([30.0, 30.0]), 6.0, donut, p)
                v = patch.values
                centre = v[30 - patch.row, 30 - patch.col]
                assert v.max() == 1.0
                assert (centre < dark) if donut else (centre > 0.9)


def test_shapes_irregular_and_anisotropic():
    rng = np.random.default_rng(1)
    ratios = []
    for _ in range(20):
        v = soma_patch(rng, np.array([30.0, 30.0]), 6.0, False, CellParams()).values > 0.5
        rr, cc = np.nonzero(v)
        cov = np.cov(np.stack([rr, cc]).astype(float))
        ev = np.linalg.eigvalsh(cov)
        ratios.append(np.sqrt(ev[0] / ev[1]))
    ratios = np.array(ratios)
    assert ratios.min() < 0.9  # some clearly elongated
    assert np.std(ratios) > 0.03  # not all the same shape


def test_some_neighbours_overlap_and_donut_fraction():
    sim = _sim(radius_min_px=4.5, radius_max_px=7.5)
    binary = sim.footprints > 0.2
    overlap = (binary.sum(axis=0) > 1).sum()
    assert overlap > 0
    sim2 = Simulation(make_config("2p", height=128, width=128, n_frames=8, n_neurons=200))
    assert 0.5 < sim2.tissue.is_donut.mean() < 0.8  # default donut_fraction 0.65
