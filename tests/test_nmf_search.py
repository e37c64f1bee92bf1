"""The residual search's fast paths against their references: the block maximum of
the residual buffer, the thresholded peak scan, the memory of rejected peaks, the
search spread over frames, and the incremental structure update of an addition."""

import numpy as np
import pytest
import scipy.sparse as sp

from rtcal.detect.soma import SomaGate
from rtcal.engine.pipeline import pipeline_config
from rtcal.nmf.footprints import FootprintSet, support_of
from rtcal.nmf.online import OnlineNMF, OnlineNMFConfig
from rtcal.nmf.residual import (
    Extraction,
    RejectedPeaks,
    ResidualBuffer,
    SearchRound,
    SpaceTest,
    _extract,
    _extract_reference,
    bin_and_smooth_reference,
    covered_core,
    covered_core_reference,
    filter_small,
    filtered_noise,
    find_candidates,
    local_peaks,
    local_peaks_reference,
    search_decay,
    transient_frames,
)
from rtcal.nmf.shapes import overlap_lists


def _disc(h, w, r, centre):
    yy, xx = np.mgrid[:h, :w]
    return np.hypot(yy - centre[0], xx - centre[1]) <= r


def _random_discs(rng, n, h, w, r, lo, hi):
    """n flat discs of radius r, centres in [lo, hi), heights 0.5-1.5: float32 (n, h, w)."""
    fps = np.zeros((n, h, w), np.float32)
    for k in range(n):
        fps[k][_disc(h, w, r, rng.integers(lo, hi, 2))] = rng.random() + 0.5
    return fps


# ---------------------------------------------------------------- buffer max
@pytest.mark.parametrize("length, block", [(30, 10), (30, 7), (5, 10), (13, 1), (12, 4)])
def test_block_maximum_equals_the_maximum_over_every_held_frame(length, block):
    rng = np.random.default_rng(length * 100 + block)
    buffer = ResidualBuffer(length, 16, 20, block=block)
    assert not buffer.small_max().any()
    for t in range(3 * length + 5):
        buffer.push(rng.normal(0, 1, (16, 20)).astype(np.float32) + (t % 7))
        np.testing.assert_array_equal(buffer.small_max(), buffer.small_max_reference())


# ---------------------------------------------------------------- peak scan
@pytest.mark.parametrize("size", [3, 5])
def test_local_peaks_matches_the_maximum_filter_reference(size):
    rng = np.random.default_rng(size)
    for _ in range(20):
        image = rng.normal(0, 3, (37, 41)).astype(np.float32)
        image[rng.random(image.shape) < 0.05] = 4.0  # plateaus: ties count as peaks
        excluded = rng.random(image.shape) < 0.2
        got = local_peaks(image, size, np.float32(2.0), excluded)
        want = local_peaks_reference(image, size, 2.0, excluded)
        assert np.array_equal(got[0], want[0]) and np.array_equal(got[1], want[1])
    nan = np.full((10, 10), np.nan, np.float32)
    assert local_peaks(nan, 3, np.float32(0.0), np.zeros((10, 10), bool))[0].size == 0


def test_covered_core_matches_the_reference_with_empty_and_retired_rows():
    rng = np.random.default_rng(7)
    rows = []
    for k in range(12):
        n = 0 if k == 3 else 40
        idx = np.sort(rng.choice(900, n, replace=False))
        values = rng.random(n).astype(np.float32) * (0.0 if k == 5 else 1.0)  # 5: retired
        rows.append(sp.csr_matrix((values, idx, [0, n]), shape=(1, 900)))
    csr = sp.vstack(rows, format="csr")
    csr.data[:3] = 0.0  # stored zeros (a footprint's margin)
    got = covered_core(csr, (30, 30))
    np.testing.assert_array_equal(got, covered_core_reference(csr, (30, 30)))
    assert 0 < got.sum() < 900


# --------------------------------------------------------- rejection memory
def test_rejected_peaks_block_until_a_larger_transient_or_expiry():
    memory = RejectedPeaks((32, 32), lifetime=30, radius=2.0)
    cols = np.arange(4, 40)  # the neurite the rejected extraction found, partly off the grid
    memory.add(10, 10, score=9.0, now=100, region=(np.full(cols.size, 20), cols))
    assert memory.blocks(11, 11, 9.0, now=101)  # the same transient, one binned pixel away
    assert memory.blocks(20, 25, 8.0, now=101)  # another maximum along the neurite
    assert memory.blocks(10, 10, 10.0, now=101)  # noise: within 25 %
    assert not memory.blocks(10, 10, 11.5, now=101)  # grown: new evidence
    assert not memory.blocks(14, 10, 5.0, now=101)  # elsewhere
    assert memory.blocks(10, 10, 9.0, now=129)
    assert not memory.blocks(10, 10, 1.0, now=130)  # its evidence has left a 30-frame buffer
    assert memory.live(129).sum() == memory.live(101).sum() > 24 and not memory.live(130).any()
    memory.add(10, 10, score=3.0, now=200)  # a stale mark's score does not linger
    assert not memory.blocks(10, 10, 4.0, now=201)


def _neurite_and_cell_buffer(rng, H=64, W=64):
    """A bright, wide rod (rejected by the soma gate) and a dimmer disc firing together."""
    buffer = ResidualBuffer(30, H, W, block=10)
    cell = _disc(H, W, 6.0, (16, 44)) * 1.0
    rod = np.zeros((H, W))
    rod[42:46, 18:46] = 1.0  # shorter than an extraction box (31 px)
    for t in range(30):
        on = t in (10, 11, 12)
        frame = (80.0 * rod + 20.0 * cell) * on + rng.normal(0, 1.0, (H, W))
        buffer.push(frame.astype(np.float32))
    noise = np.full((H // 2, W // 2), 1.0 / 3, np.float32)
    return buffer, noise


def test_search_remembers_a_rejection_and_does_not_extract_it_again(monkeypatch):
    import rtcal.nmf.residual as residual

    rng = np.random.default_rng(3)
    buffer, noise = _neurite_and_cell_buffer(rng)
    calls = []
    extract = residual._extract
    monkeypatch.setattr(residual, "_extract", lambda *a: calls.append(1) or extract(*a))
    kwargs = dict(radius_px=6.0, min_pnr=5.0, min_space_corr=0.5, max_new=1)
    covered = np.zeros((64, 64), bool)
    # without a memory the rod's maxima take the extraction slots and the cell is missed
    assert find_candidates(buffer, noise, covered, **kwargs) == []
    assert len(calls) == 4
    calls.clear()
    memory = RejectedPeaks((32, 32), lifetime=30)
    found = find_candidates(buffer, noise, covered, rejected=memory, now=30, **kwargs)
    # an extraction marks the part of the rod it found, so the same search reaches the cell
    assert len(found) == 1 and len(calls) <= 3 and memory.live(30).sum() > 12
    centre = np.argwhere(found[0].footprint >= 0.2).mean(axis=0)
    assert np.abs(centre - (16, 44)).max() < 2
    calls.clear()
    covered = found[0].footprint >= 0.3  # the cell is a component now
    assert find_candidates(buffer, noise, covered, rejected=memory, now=40, **kwargs) == []
    assert len(calls) == 0, "the rod was extracted again"


def test_search_spread_over_frames_finds_what_one_frame_finds():
    rng = np.random.default_rng(4)
    H = W = 96
    buffer = ResidualBuffer(30, H, W, block=10)
    cells = [_disc(H, W, 6.0, c) * 1.0 for c in ((20, 20), (20, 70), (70, 30), (70, 75))]
    for t in range(30):
        frame = rng.normal(0, 1.0, (H, W))
        for k, cell in enumerate(cells):
            frame += (20.0 + 5 * k) * cell * (t in (5 + 4 * k, 6 + 4 * k))
        buffer.push(frame.astype(np.float32))
    noise = np.full((H // 2, W // 2), 1.0 / 3, np.float32)
    kwargs = dict(radius_px=6.0, min_pnr=5.0, min_space_corr=0.5, max_new=3)
    covered = np.zeros((H, W), bool)
    at_once = find_candidates(buffer, noise, covered, **kwargs)
    search = SearchRound(**kwargs)
    search.start(buffer, noise, covered, now=30)
    spread, frames = [], 0
    while search.active:
        frames += 1
        found = search.next(buffer, now=30 + frames)
        if found is not None:
            spread.append(found)
    assert len(at_once) == 3 and frames >= 3
    assert [c.score for c in spread] == [c.score for c in at_once]
    for a, b in zip(spread, at_once, strict=True):
        np.testing.assert_array_equal(a.footprint, b.footprint)
        np.testing.assert_array_equal(a.trace, b.trace)


# ------------------------------------------------------ incremental addition
def test_footprint_set_add_keeps_every_support_pixel_as_vstack_did():
    rng = np.random.default_rng(5)
    fps = _random_discs(rng, 4, 40, 50, 5.0, 8, 32)
    A = FootprintSet(40, 50)
    A.add(fps[:2], born_frame=0, margin_px=2)
    A.add(fps[2:], born_frame=7, margin_px=2)
    rows = []
    for fp in fps:
        idx = np.flatnonzero(support_of(fp, 2).reshape(-1))
        rows.append(sp.csr_matrix((fp.reshape(-1)[idx], idx, [0, idx.size]), shape=(1, 2000)))
    want = sp.vstack(rows, format="csr")
    assert A.csr.nnz == sum(r.nnz for r in rows)  # the margin's zeros are stored
    np.testing.assert_array_equal(A.csr.indptr, np.r_[0, np.cumsum([r.nnz for r in rows])])
    np.testing.assert_array_equal(A.csr.toarray(), want.toarray())
    assert list(A.born_frame) == [0, 0, 7, 7]


def test_adding_components_updates_the_structure_as_a_full_rebuild():
    rng = np.random.default_rng(6)
    H = W = 64

    def blob():
        c = rng.integers(8, 56, 2)
        yy, xx = np.mgrid[:H, :W]
        d2 = (yy - c[0]) ** 2 + (xx - c[1]) ** 2
        return (np.exp(-d2 / 12.5) * (d2 <= 25)).astype(np.float32)

    init = (rng.normal(0, 1, (40, H, W)) + 10).astype(np.float32)
    nmf = OnlineNMF(OnlineNMFConfig(radius_px=5.0, merge_every=0), 30.0,
                    np.stack([blob() for _ in range(8)]), init)
    for _ in range(30):  # refinement changes the footprints' values
        nmf.step((rng.normal(0, 1, (H, W)) + 10).astype(np.float32))
    held = min(nmf.buffer.n_seen, nmf.buffer.length)
    for n in (1, 3):
        nmf.add_components(np.stack([blob() for _ in range(n)]),
                           rng.random((n, held)).astype(np.float32))
        G, ov = nmf._G.copy(), nmf._ov
        nmf._rebuild()
        np.testing.assert_allclose(G, nmf._G, rtol=0, atol=1e-6 * np.abs(G).max())
        for got, want in zip(ov, overlap_lists(nmf.A.csr), strict=True):
            np.testing.assert_array_equal(got, want)


def test_background_rows_match_the_reference():
    from rtcal.nmf.background import cosine_basis
    from rtcal.nmf.shapes import background_rows, background_rows_reference

    rng = np.random.default_rng(9)
    fps = _random_discs(rng, 5, 30, 40, 4.0, 5, 25)
    A = FootprintSet(30, 40)
    A.add(fps, born_frame=0, margin_px=1)
    B = cosine_basis(30, 40, 3)
    K, nb = 5, B.shape[0]
    got, want = np.zeros((K + nb, K + nb)), np.zeros((K + nb, K + nb))
    order = np.array([3, 0, 4], np.int64)
    background_rows(A.csr.indptr, A.csr.indices, A.csr.data, np.ascontiguousarray(B.T),
                    order, got, K)
    background_rows_reference(A.csr, B, order, want, K)
    np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-12)
    assert got[3, K:].any() and not got[1].any()


# ------------------------------------------------------- temporal matched filter
def test_filtered_buffer_holds_the_reference_filter_of_the_smoothed_frames():
    rng = np.random.default_rng(3)
    frames = rng.normal(0, 1, (25, 16, 20)).astype(np.float32)
    plain, filtered = ResidualBuffer(8, 16, 20, block=3), ResidualBuffer(8, 16, 20, block=3,
                                                                          decay=0.85)
    for f in frames:
        plain.push(f)
        filtered.push(f)
        np.testing.assert_array_equal(filtered.small_max(), filtered.small_max_reference())
    smooth = np.stack([bin_and_smooth_reference(f) for f in frames])
    expect = filter_small(smooth, 0.85)[-8:]
    np.testing.assert_allclose(filtered.small[filtered._order()], expect, atol=1e-5)
    np.testing.assert_allclose(plain.small[plain._order()], smooth[-8:], atol=1e-5)
    with pytest.raises(ValueError, match="decay"):
        ResidualBuffer(8, 16, 20, decay=1.0)


@pytest.mark.parametrize("decay", [0.0, 0.9])
def test_filtered_noise_equals_its_formula_along_the_first_axis(decay):
    """The medians run along a time-last copy; the plain formula, on (T, h, w)."""
    from scipy import ndimage

    small = np.random.default_rng(5).normal(size=(80, 9, 11)).astype(np.float32)
    sigma = np.maximum(np.median(np.abs(np.diff(small, axis=0)), axis=0)
                       / (0.6745 * np.sqrt(2)), 1e-6)
    want = sigma
    if decay:
        f = filter_small(small, decay)[min(int(np.ceil(3.0 / (1.0 - decay))), 40):]
        spread = 1.4826 * np.median(np.abs(f - np.median(f, axis=0)), axis=0)
        white = sigma / np.sqrt(1.0 - decay**2)
        want = white * np.maximum(ndimage.gaussian_filter(spread / white, 8.0, mode="nearest"), 1)
    np.testing.assert_allclose(filtered_noise(small, decay), want, rtol=1e-5)


def test_filtered_noise_follows_white_noise_and_grows_with_slow_noise():
    rng = np.random.default_rng(4)
    decay = search_decay(0.5, 30.0)
    white = rng.normal(0, 2.0, (600, 24, 24)).astype(np.float32)
    assert abs(np.median(filtered_noise(white, 0.0)) / 2.0 - 1) < 0.03
    predicted = 2.0 / np.sqrt(1 - decay**2)
    assert abs(np.median(filtered_noise(white, decay)) / predicted - 1) < 0.05
    # slow (AR(1), 0.99) noise: the difference-based sigma misses it, the filter does not
    slow = np.zeros_like(white)
    for t in range(1, len(slow)):
        slow[t] = 0.99 * slow[t - 1] + rng.normal(0, 0.5, (24, 24))
    noisy = white + slow
    assert np.median(filtered_noise(noisy, decay)) > 1.5 * predicted
    assert search_decay(0.0, 30.0) == 0.0


def test_transient_frames_is_the_run_round_the_largest_peak():
    trace = np.array([0, 1, 0, 2, 5, 9, 6, 4, 5, 1, 0], np.float32)
    assert transient_frames(trace) == slice(4, 7)  # 5, 9, 6 >= 4.5; 4 is not
    assert transient_frames(np.array([3.0, 1.0])) == slice(0, 1)


def _weak_cell_buffer(decay, amplitude, seed=0):
    """A 2 s buffer (60 frames at 30 Hz) of white noise (sigma 1) with one soma-sized
    transient (a spike, 0.5 s decay) at frame 30."""
    rng = np.random.default_rng(seed)
    H = W = 48
    yy, xx = np.mgrid[:H, :W]
    cell = np.exp(-((yy - 24) ** 2 + (xx - 24) ** 2) / (2 * 4.0**2)).astype(np.float32)
    calcium = np.zeros(60, np.float32)
    calcium[30:] = amplitude * np.exp(-np.arange(30) / 15.0)
    init = rng.normal(0, 1, (200, H, W)).astype(np.float32)
    noise = filtered_noise(np.stack([bin_and_smooth_reference(f) for f in init]), decay)
    buffer = ResidualBuffer(60, H, W, decay=decay)
    for f in init[-60:]:  # the filter's state is warm before the transient
        buffer.push(f)
    for t in range(60):
        buffer.push(rng.normal(0, 1, (H, W)).astype(np.float32) + calcium[t] * cell)
    return buffer, noise


def test_matched_filter_finds_cells_single_frames_rarely_show():
    """One spike whose peak is ~5 x the single-frame noise of the smoothed residual
    (threshold 7), in 12 noise draws: the unfiltered search finds the cell in 3,
    the filtered one in 11 (measured); found means a candidate peaking within 2 px
    of the cell, with the transient's trace."""
    kwargs = dict(radius_px=5.0, min_pnr=7.0, min_space_corr=0.9, max_new=2)
    covered = np.zeros((48, 48), bool)
    decay = search_decay(0.5, 30.0)
    hits = {0.0: 0, decay: 0}
    for seed in range(12):
        for d in hits:
            buffer, noise = _weak_cell_buffer(d, amplitude=1.0, seed=seed)
            for c in find_candidates(buffer, noise, covered, **kwargs):
                peak = np.unravel_index(np.argmax(c.footprint), (48, 48))
                if np.hypot(peak[0] - 24, peak[1] - 24) <= 2 and np.argmax(c.trace) >= 30:
                    hits[d] += 1
    assert hits[0.0] <= 5
    assert hits[decay] >= 10


def test_space_test_lets_a_whole_cell_pass_at_the_lower_correlation():
    test = SpaceTest(0.875, large_area_px=100, large_min_corr=0.75)
    big, small = np.zeros((20, 20), np.float32), np.zeros((20, 20), np.float32)
    big[:10, :10] = 1.0  # 100 px >= 0.2
    big[10, 0] = 0.19  # below the mask's level: not counted
    small[:9, :11] = 1.0  # 99 px
    assert test.passes(0.9, small) and test.passes(0.875, small)
    assert test.passes(0.8, big) and test.passes(0.75, big)
    assert not test.passes(0.8, small)
    assert not test.passes(0.74, big)
    assert not test.passes(float("nan"), big)
    assert SpaceTest.of(0.9) == SpaceTest(0.9)  # a plain threshold: no large rule
    assert not SpaceTest.of(0.9).passes(0.89, np.ones((50, 50), np.float32))
    assert SpaceTest.of(test) is test


def _bisect_space_corr(extract):
    """The space correlation r of an accepted extraction, found from outside:
    extract(threshold) accepts exactly when r >= threshold."""
    lo, hi = -1.0, 1.0
    assert extract(lo)[1] is not None
    for _ in range(30):
        mid = 0.5 * (lo + hi)
        lo, hi = (mid, hi) if extract(mid)[1] is not None else (lo, mid)
    return lo


@pytest.mark.parametrize("local_background", [False, True])
@pytest.mark.parametrize("reference", [False, True])
def test_extraction_applies_the_large_footprint_rule_at_its_space_correlation(
    local_background, reference
):
    """A cell (a transient of 1.2 noise sigmas per pixel; r 0.93-0.95, 198-204 px):
    the extraction (fast and reference, rank-1 and background fit) accepts it
    under the large rule, its correlation between the rule's threshold and the
    plain one, only when its footprint covers the rule's area."""
    rng = np.random.default_rng(7)
    L, h, w = 40, 31, 31
    yy, xx = np.mgrid[:h, :w]
    cell = np.exp(-((yy - 15) ** 2 + (xx - 15) ** 2) / (2 * 4.0**2))
    trace = np.zeros(L)
    trace[20:] = 1.2 * np.exp(-np.arange(L - 20) / 8.0)
    local = (trace[:, None, None] * cell + rng.normal(0, 1, (L, h, w))).astype(np.float32)
    gate = SomaGate(6.0, min_area_frac=0.5)
    run = _extract_reference if reference else _extract

    def extract(space):
        return run(local, (15, 15), 6.0, space, gate, local_background)

    r = _bisect_space_corr(extract)
    assert abs(extract(0.9)[2] - r) < 1e-6  # the correlation it reports is the one it tests
    patch = extract(-1.0)[0]
    area = int((patch >= 0.2).sum())
    assert 0.3 < r < 0.99 and area > 50
    assert extract(SpaceTest(r + 0.01, area, r - 0.01))[1] is not None
    assert extract(SpaceTest(r + 0.01, area + 1, r - 0.01))[1] is None
    assert extract(SpaceTest(r + 0.01, area, r + 0.005))[1] is None
    np.testing.assert_array_equal(extract(SpaceTest(r + 0.01, area, r - 0.01))[0], patch)


def test_online_search_takes_its_space_test_from_the_config():
    """By default (2p and 1p) no large-footprint rule; set, a whole cell's area
    (new_large_area_frac x pi r^2) passes at new_large_min_space_corr."""
    H = W = 32
    init = (np.random.default_rng(0).normal(0, 1, (20, H, W)) + 10).astype(np.float32)
    config = pipeline_config(30.0, 5.0, mode="2p").nmf
    none = np.zeros((0, H, W), np.float32)
    assert OnlineNMF(config, 30.0, none, init).search.space == SpaceTest(0.875, np.inf, 0.75)
    assert pipeline_config(20.0, 9.0, mode="1p").nmf.new_large_area_frac == np.inf
    rule = OnlineNMFConfig(radius_px=5.0, new_large_area_frac=1.1, new_large_min_space_corr=0.7)
    space = OnlineNMF(rule, 30.0, none, init).search.space
    assert space == SpaceTest(0.875, 1.1 * np.pi * 25.0, 0.7)
    big = np.zeros((H, W), np.float32)
    big[:10, :10] = 1.0  # 100 px: over 1.1 pi 25 = 86
    assert space.passes(0.72, big) and not space.passes(0.72, big[:8, :8])


def test_search_observer_sees_every_extraction_with_its_verdict():
    """The observer gets one record per extraction: the accepted one carries the
    candidate's footprint and a space correlation at or over the threshold; the
    refused ones their reason, with a correlation under it where the gate let
    them through."""
    rng = np.random.default_rng(3)
    buffer, noise = _neurite_and_cell_buffer(rng)
    search = SearchRound(radius_px=6.0, min_pnr=5.0, min_space_corr=0.5, max_new=1,
                         rejected=RejectedPeaks((32, 32), lifetime=30))
    seen: list[Extraction] = []
    search.observer = seen.append
    search.start(buffer, noise, np.zeros((64, 64), bool), 30)
    found = []
    while search.active:
        c = search.next(buffer, 30)
        if c is not None:
            found.append(c)
    assert len(found) == 1 and 2 <= len(seen) <= 3
    assert [e.verdict for e in seen].count("accepted") == 1
    for e in seen:
        assert e.frame == 30 and e.footprint is not None
        assert e.footprint.shape == (e.box[0].stop - e.box[0].start,
                                     e.box[1].stop - e.box[1].start)
        if e.verdict == "accepted":
            np.testing.assert_array_equal(found[0].footprint[e.box], e.footprint)
            assert e.space_corr >= 0.5 and e.score == found[0].score
        elif e.verdict == "space correlation":
            assert e.space_corr < 0.5
        else:  # the soma gate's reason; the correlation was never computed
            assert np.isnan(e.space_corr) and ("elongation" in e.verdict or "area" in e.verdict)
