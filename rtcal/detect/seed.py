"""Classical greedy seed detector, in the spirit of CNMF-E's initialisation.

Zhou et al. 2018 (eLife 7:e28728), section "Initialization": seed pixels are
local maxima of (local correlation x peak-to-noise ratio) of the spatially
band-passed movie; each seed is refined into a footprint/trace pair by rank-1
non-negative factorisation of the data around it, and accepted only if the pair
explains the data there.

rtcal adds a second kind of seed. Many real cells rarely fire in a short window
but are plainly visible at rest (DESIGN.md, "What the real data teach"), so
blobs of cell size in the band-passed *mean image* are seeds too; their
footprint comes from that image when the movie shows no activity there.

One-photon data (``background = "ring"``, set by mode "1p"). A microendoscope's
out-of-focus background fluctuates as much as the cells do, at their scale, and
a spatial band-pass leaves enough of it that rank-1 footprints spread over the
whole search box (measured on a simulated 1p movie, r = 9 px: masks of 800-2000
px against 300-570 px for the true cells, so the soma gate kept 16 of 219
seeds, 5 of them cells). As CNMF-E does, the background is modelled first: the
ring model (``rtcal.nmf.ring_fit``) is fitted on the window, with no cells
known and a stronger ridge (``first_ring_ridge``: otherwise the most active
cells are predicted from their own faint halo on the ring and vanish from the
residual), and subtracted; the seeds found on that residual give footprints, and
the ring is refitted with those cells taken out: their pixels out of its
sources, their least-squares traces out of its fit (a very active cell
otherwise leaks into its own background and its footprint shrinks: on two
simulated 1p movies, 5 of the 21 init proposals on one came out at half their
cell's area with the pixels excluded alone, 2 with the traces removed too).
The seeds are then found again on the second residual. The
residual has no resting fluorescence (the ring's static image holds it), so
there are no resting seeds. Each footprint is fitted with a local background
regressor (``local_background``; CNMF-E's ``extract_ac``): the median trace
of the box's pixels that do not correlate with the seed, so that what is
left of the background does not widen it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

import numpy as np
from scipy import ndimage

from rtcal.buffer.summary import local_correlation, noise_std, temporal_median
from rtcal.detect.bandpass import dog_filter
from rtcal.detect.proposal import Proposal
from rtcal.detect.soma import SomaGate
from rtcal.errors import RtcalError
from rtcal.nmf.ring import RingConfig
from rtcal.nmf.ring_fit import ring_residual

BACKGROUNDS = ("none", "ring")
# local_background: pixels whose trace correlates with the seed's below
# BACKGROUND_MAX_CORR are the background's (CNMF-E's extract_ac uses 0.3); their
# median is a regressor when they are at least BACKGROUND_MIN_FRACTION of the box
# (extract_ac asks for a tenth; on synthetic patches where the cell's activity
# and the background happened to correlate 0.25, 10 % was just missed and the
# footprint took the background's whole blob: tests/test_detect_seed.py).
BACKGROUND_MAX_CORR = 0.3
BACKGROUND_MIN_FRACTION = 0.02


class SeedConfigError(RtcalError):
    pass


@dataclass(frozen=True)
class SeedConfig:
    """Settings of the seed detector.

    radius_px: typical soma radius; every spatial scale derives from it.
    min_corr, min_pnr: an activity seed needs local correlation and
        peak-to-noise of the band-passed movie above both.
    min_morph_z: a resting-fluorescence seed needs its band-passed mean image
        this many robust standard deviations above the field (3 let background
        texture in: five seeds at z 3.0-3.7 on one simulated movie covered no
        cell; 4 raised F1 on all four simulated movies tried and the real crop).
    min_area_frac, max_area_frac, max_elongation: the soma gate
        (``rtcal.detect.soma``): accepted footprint area relative to pi r^2 and
        largest ratio of the mask's principal axes.
    max_overlap_iou: a candidate overlapping an accepted footprint more than
        this (IoU of the 0.2 x max masks) is a duplicate.
    max_components: stop after this many.
    highpass_radii: the spatial high-pass of the movie, in radii (the
        correlation image's band ends at this scale, the peak-to-noise image's
        at twice it); 0: none, only the smoothing (mode "1p": the ring residual
        has no background left, and a high-pass cuts into the blurred cells:
        init footprints on two simulated 1p movies had a median IoU of
        0.65-0.75 at 2, 0.80-0.85 at 4, 0.81-0.83 with none).
    background: "none", or "ring" to remove a CNMF-E ring background first
        (module docstring; mode "1p" sets it).
    local_background: fit each footprint with the box's background trace as a
        second regressor (module docstring; mode "1p" sets it).
    corr_threshold_sd: the local correlation image is computed on the movie
        with every value under this many noise sigmas (per pixel) set to 0, as
        CNMF-E does (``thresh_init``), so that a cell seen in one or two
        transients correlates with its neighbours there and not with the noise
        of the other frames; 0: off.
    first_ring_ridge: the ridge weight of the first ring fit, the one with no
        cells known (``RingConfig.ridge``; the second fit keeps the ring's own).
        With no cells taken out, a very active cell's faint halo on the ring is
        worth fitting and the cell leaks into its own background; a stronger
        ridge keeps the weights smooth.
    sure_score: an activity seed scoring at least this (local correlation x
        peak-to-noise) is marked ``sure`` (``rtcal.detect.proposal.Proposal``):
        the live engine adds it at the first re-run that proposes it (inf: none;
        mode "1p" sets 7.5, ``rtcal.engine.pipeline.pipeline_config``).
    """

    radius_px: float = 6.0
    min_corr: float = 0.2
    min_pnr: float = 5.0
    min_morph_z: float = 4.0
    min_area_frac: float = 0.5
    max_area_frac: float = 3.0
    max_elongation: float = 2.0
    max_overlap_iou: float = 0.3
    max_components: int = 5000
    highpass_radii: float = 2.0
    background: str = "none"
    local_background: bool = False
    corr_threshold_sd: float = 0.0
    first_ring_ridge: float = 0.1
    sure_score: float = np.inf

    def __post_init__(self) -> None:
        if not self.sure_score > 0:
            raise SeedConfigError(f"sure_score must be positive (inf: none), got {self.sure_score}")
        if not 1.0 <= self.radius_px <= 100.0:
            raise SeedConfigError(f"radius_px must be in [1, 100] px, got {self.radius_px}")
        if not -1.0 < self.min_corr < 1.0:
            raise SeedConfigError(f"min_corr must be in (-1, 1), got {self.min_corr}")
        if self.min_pnr <= 0 or self.min_morph_z <= 0:
            raise SeedConfigError("min_pnr and min_morph_z must be positive")
        if not 0 < self.min_area_frac < self.max_area_frac:
            raise SeedConfigError(
                f"need 0 < min_area_frac < max_area_frac, got "
                f"{self.min_area_frac}, {self.max_area_frac}"
            )
        if not self.max_elongation >= 1:
            raise SeedConfigError(f"max_elongation must be >= 1, got {self.max_elongation}")
        if not 0 < self.max_overlap_iou <= 1:
            raise SeedConfigError(f"max_overlap_iou must be in (0, 1], got {self.max_overlap_iou}")
        if self.max_components < 1:
            raise SeedConfigError(f"max_components must be >= 1, got {self.max_components}")
        if not (self.highpass_radii == 0 or 0.5 <= self.highpass_radii <= 100):
            raise SeedConfigError(
                f"highpass_radii must be 0 (none) or in [0.5, 100], got {self.highpass_radii}")
        if not (math.isfinite(self.corr_threshold_sd) and 0 <= self.corr_threshold_sd <= 10):
            raise SeedConfigError(
                f"corr_threshold_sd must be in [0, 10] (0: off), got {self.corr_threshold_sd}")
        if not (math.isfinite(self.first_ring_ridge) and self.first_ring_ridge >= 0):
            raise SeedConfigError(
                f"first_ring_ridge must be finite and >= 0, got {self.first_ring_ridge}")
        if self.background not in BACKGROUNDS:
            raise SeedConfigError(
                f"background must be one of {BACKGROUNDS}, got {self.background!r}")


@dataclass(frozen=True)
class _Seed:
    row: int
    col: int
    score: float
    active: bool  # found by activity (True) or by resting fluorescence (False)


class SeedDetector:
    """propose(window) -> Proposal; see the module docstring for the method."""

    def __init__(self, config: SeedConfig | None = None) -> None:
        self.config = config or SeedConfig()
        c = self.config
        self.gate = SomaGate(c.radius_px, c.min_area_frac, c.max_area_frac, c.max_elongation)

    def propose(self, window: np.ndarray) -> Proposal:
        if window.ndim != 3 or window.shape[0] < 10:
            raise SeedConfigError(
                f"seed detector needs a (T, H, W) window with T >= 10, got shape {window.shape}"
            )
        Y = window.astype(np.float32, copy=False)
        if self.config.background == "none":
            return self._propose(Y, resting=True)
        # Ring background (module docstring): fitted with no cells, then with the
        # first pass's cells and their traces taken out of its fit.
        T, H, W = Y.shape
        ring = RingConfig.from_neuron_radius(self.config.radius_px)
        residual = ring_residual(Y, np.zeros((0, H, W), np.float32),
                                 np.zeros((0, T), np.float32),
                                 replace(ring, ridge=self.config.first_ring_ridge))
        first = self._propose(residual, resting=False).footprints
        traces = _nonneg_traces(first, residual)
        del residual
        return self._propose(ring_residual(Y, first, traces, ring), resting=False)

    def _propose(self, Y: np.ndarray, resting: bool) -> Proposal:
        r = self.config.radius_px
        hp = self.config.highpass_radii
        baseline = temporal_median(Y)
        if hp > 0:
            # High-passed movie (neuropil and background removed): its neighbour
            # correlations are not inflated by smoothing, so they measure shared signal.
            D = dog_filter(Y, 0.0, hp * r, subtract=baseline)
            corr = thresholded_correlation(D, self.config.corr_threshold_sd)
            # Smoothed to cell scale for the peak-to-noise ratio and the footprints (in place).
            D = dog_filter(D, 0.25 * r, 2.0 * hp * r, out=D)
        else:  # no background left to remove (a ring residual)
            D = np.subtract(Y, baseline, dtype=np.float32)
            corr = thresholded_correlation(D, self.config.corr_threshold_sd)
            D = ndimage.gaussian_filter(D, (0.0, 0.25 * r, 0.25 * r), output=D)
        noise = noise_std(D)
        pnr = D.max(axis=0) / noise
        if resting:
            morph = dog_filter(Y.mean(axis=0), 0.35 * r, 1.5 * r)
            morph_z = morph / _robust_sigma(morph)
        else:
            morph_z = np.zeros_like(pnr)
        seeds = self._seeds(corr, pnr, morph_z)
        return self._grow(seeds, D, Y.mean(axis=0))

    def _seeds(self, corr: np.ndarray, pnr: np.ndarray, morph_z: np.ndarray) -> list[_Seed]:
        """Local maxima of the activity and resting scores above their thresholds."""
        c = self.config
        size = max(3, int(round(c.radius_px)) | 1)
        activity = np.where((corr > c.min_corr) & (pnr > c.min_pnr), corr * pnr, 0.0)
        seeds = [
            _Seed(int(y), int(x), float(activity[y, x]), True)
            for y, x in zip(*_local_maxima(activity, size), strict=True)
        ]
        resting = np.where(morph_z > c.min_morph_z, morph_z, 0.0)
        seeds += [
            _Seed(int(y), int(x), float(resting[y, x]), False)
            for y, x in zip(*_local_maxima(resting, size), strict=True)
        ]
        # Activity seeds first (their footprints are better defined), each kind by score.
        return sorted(seeds, key=lambda s: (not s.active, -s.score))

    def _grow(self, seeds: list[_Seed], D: np.ndarray, mean: np.ndarray) -> Proposal:
        c = self.config
        H, W = mean.shape
        half = int(np.ceil(2.5 * c.radius_px))
        taken = np.zeros((H, W), dtype=bool)
        accepted: list[tuple[np.ndarray, tuple[slice, slice], float, bool]] = []
        for seed in seeds:
            if len(accepted) >= c.max_components or taken[seed.row, seed.col]:
                continue
            box = (
                slice(max(seed.row - half, 0), min(seed.row + half + 1, H)),
                slice(max(seed.col - half, 0), min(seed.col + half + 1, W)),
            )
            centre = (seed.row - box[0].start, seed.col - box[1].start)
            if seed.active and c.local_background:
                patch = footprint_with_background_fast(D[:, box[0], box[1]], centre)
            elif seed.active:
                patch = rank1_footprint(D[:, box[0], box[1]], centre)
            else:
                patch = _resting_footprint(mean[box], centre, c.radius_px)
            patch = clean_footprint(patch, centre)
            if patch is None:
                continue
            if self.gate.why_not_patch(patch) is not None:
                continue
            mask = patch >= 0.2
            overlap = (mask & taken[box]).sum()
            if overlap > c.max_overlap_iou * mask.sum():
                continue
            taken[box] |= mask
            accepted.append((patch, box, seed.score, seed.active and seed.score >= c.sure_score))
        return _to_proposal(accepted, H, W)


def thresholded_correlation(D: np.ndarray, k: float) -> np.ndarray:
    """Local correlation image (H, W) of D (T, H, W) (about its baseline), computed
    on D with every value under k noise sigmas of its pixel set to 0 (CNMF-E's
    ``thresh_init``; ``SeedConfig.corr_threshold_sd``); k = 0: plain
    :func:`local_correlation`."""
    if k == 0:
        return local_correlation(D)
    return local_correlation(np.where(D >= k * noise_std(D), D, np.float32(0)))


def _nonneg_traces(footprints: np.ndarray, frames: np.ndarray) -> np.ndarray:
    """Least-squares traces (K, T) float32 of footprints (K, H, W) in frames (T, H, W)
    about each pixel's temporal median, clipped at 0 (a first estimate of the
    cells' activity, to keep it out of a background fit)."""
    K, T = footprints.shape[0], frames.shape[0]
    if K == 0:
        return np.zeros((0, T), np.float32)
    flat = footprints.reshape(K, -1)
    support = np.flatnonzero(flat.any(axis=0))  # only these pixels enter the fit
    A = flat[:, support].astype(np.float64)
    Y = np.ascontiguousarray(frames.reshape(T, -1)[:, support].T)  # (p, T), time last
    AY = A @ Y - (A @ np.median(Y, axis=1))[:, None]  # (K, T)
    G = A @ A.T
    G[np.diag_indices_from(G)] += 1e-6 * np.trace(G) / K
    return np.maximum(np.linalg.solve(G, AY), 0.0).astype(np.float32)


def _robust_sigma(img: np.ndarray) -> float:
    med = np.median(img)
    return float(max(1.4826 * np.median(np.abs(img - med)), 1e-12))


def _local_maxima(score: np.ndarray, size: int) -> tuple[np.ndarray, np.ndarray]:
    peaks = (score == ndimage.maximum_filter(score, size=size)) & (score > 0)
    return np.nonzero(peaks)


def rank1_footprint(P: np.ndarray, centre: tuple[int, int], n_iter: int = 10) -> np.ndarray:
    """Rank-1 non-negative factorisation of a local patch P (T, h, w) ~ c a^T.

    Initialised with the mean trace of the 3x3 pixels at ``centre``; alternates
    a = max(0, P^T c) / |c|^2 and c = max(0, P a) / |a|^2 (Zhou et al. 2018).
    Returns the footprint a as (h, w).
    """
    T, h, w = P.shape
    flat = P.reshape(T, h * w)
    y, x = centre
    c = P[:, max(y - 1, 0) : y + 2, max(x - 1, 0) : x + 2].mean(axis=(1, 2))
    c = np.maximum(c, 0.0)
    a = np.zeros(h * w, dtype=np.float32)
    for _ in range(n_iter):
        cc = float(c @ c)
        if cc <= 0:
            break
        a = np.maximum(flat.T @ c, 0.0) / cc
        aa = float(a @ a)
        if aa <= 0:
            break
        c = np.maximum(flat @ a, 0.0) / aa
    return a.reshape(h, w)


def _centre_trace(P: np.ndarray, centre: tuple[int, int]) -> tuple[np.ndarray, np.ndarray, float]:
    """The seed's trace c (the mean of the 3x3 pixels at ``centre`` of P (T, h, w)),
    float64, c - mean(c) and its norm."""
    y, x = centre
    c = P[:, max(y - 1, 0) : y + 2, max(x - 1, 0) : x + 2].mean(axis=(1, 2)).astype(np.float64)
    cz = c - c.mean()
    return c, cz, float(np.sqrt(cz @ cz))


def footprint_with_background(P: np.ndarray, centre: tuple[int, int]) -> np.ndarray:
    """Footprint of the seed at ``centre`` in a local patch P (T, h, w), with the
    patch's background as a nuisance regressor (after CNMF-E's ``extract_ac``,
    Zhou et al. 2018).

    The neuron's trace c is the mean of the 3x3 pixels at the centre; pixels
    whose traces correlate with it below BACKGROUND_MAX_CORR give the background
    trace b, their median (used when they are at least BACKGROUND_MIN_FRACTION
    of the patch). Each pixel's trace is regressed on [c - median(c), b - mean(b),
    1] by least squares; the footprint is the non-negative part of c's
    coefficients. Returns it as float32 (h, w) (zeros when c is constant).
    """
    T, h, w = P.shape
    flat = P.reshape(T, h * w).astype(np.float64)
    c, cz, norm = _centre_trace(P, centre)
    if norm <= 0:
        return np.zeros((h, w), np.float32)
    z = flat - flat.mean(axis=0)
    z /= np.maximum(np.sqrt((z * z).sum(axis=0)), 1e-12)
    corr = (cz / norm) @ z
    columns = [c - np.median(c)]
    background = corr < BACKGROUND_MAX_CORR
    if np.count_nonzero(background) >= BACKGROUND_MIN_FRACTION * h * w:
        b = np.median(flat[:, background], axis=1)
        columns.append(b - b.mean())
    columns.append(np.ones(T))
    X = np.stack(columns, axis=1)
    coef = np.linalg.lstsq(X, flat, rcond=None)[0]
    return np.maximum(coef[0], 0.0).reshape(h, w).astype(np.float32)


def footprint_with_background_fast(P: np.ndarray, centre: tuple[int, int]) -> np.ndarray:
    """:func:`footprint_with_background` with the same result (tested), ~6x faster
    on a (60, 31, 31) patch (the online search's extraction, where it runs within
    one frame): the correlations from one matrix-vector product and the column
    sums of squares, the background's per-frame median by sorting (NumPy's
    ``median`` partitions each row, ~5x slower on these shapes), and the least
    squares by its 3 x 3 normal equations."""
    T, h, w = P.shape
    flat = P.reshape(T, h * w)
    c, cz, norm = _centre_trace(P, centre)
    if norm <= 0:
        return np.zeros((h, w), np.float32)
    flat64 = flat.astype(np.float64)
    mean = flat64.mean(axis=0)
    # sum_t (y_t - mean)^2 = sum_t y_t^2 - T mean^2; cz sums to 0, so cz . (y - mean) = cz . y
    spread = np.sqrt(np.maximum(np.einsum("tp,tp->p", flat64, flat64) - T * mean * mean, 0.0))
    corr = (cz @ flat64) / (norm * np.maximum(spread, 1e-12))
    columns = [c - np.median(c)]
    background = np.flatnonzero(corr < BACKGROUND_MAX_CORR)
    if background.size >= BACKGROUND_MIN_FRACTION * h * w:
        ranked = np.sort(np.take(flat, background, axis=1), axis=1)
        n = background.size
        b = ranked[:, n // 2].astype(np.float64)
        if n % 2 == 0:
            b = 0.5 * (ranked[:, n // 2 - 1].astype(np.float64) + b)
        columns.append(b - b.mean())
    columns.append(np.ones(T))
    X = np.stack(columns, axis=1)
    gram = X.T @ X
    rhs = X.T @ flat64
    try:
        coef = np.linalg.solve(gram, rhs)
    except np.linalg.LinAlgError:  # a degenerate background column: as lstsq would
        coef = np.linalg.lstsq(X, flat64, rcond=None)[0]
    return np.maximum(coef[0], 0.0).reshape(h, w).astype(np.float32)


def _resting_footprint(patch: np.ndarray, centre: tuple[int, int], radius: float) -> np.ndarray:
    """Footprint of a cell seen at rest: the mean image above its local background.

    The background is the median of an annulus 1.6 r to 2.4 r from the seed;
    the footprint is the excess over it within 1.5 r, lightly smoothed so that
    a donut's darker nucleus stays inside the cell.
    """
    h, w = patch.shape
    yy, xx = np.mgrid[:h, :w]
    dist = np.hypot(yy - centre[0], xx - centre[1])
    ring = (dist >= 1.6 * radius) & (dist <= 2.4 * radius)
    level = np.median(patch[ring]) if ring.any() else np.median(patch)
    excess = ndimage.gaussian_filter(patch - level, 0.15 * radius)
    return np.where(dist <= 1.5 * radius, np.maximum(excess, 0.0), 0.0)


def clean_footprint(patch: np.ndarray, centre: tuple[int, int]) -> np.ndarray | None:
    """Normalise to max 1, keep the connected part above 0.1 x max that holds the centre.

    Returns None if nothing is left at the centre.
    """
    peak = float(patch.max())
    if peak <= 0:
        return None
    patch = patch / peak
    labels, _ = ndimage.label(patch >= 0.1)
    # The seed may sit on a donut's dark nucleus: take the component nearest the centre.
    label = labels[centre]
    if label == 0:
        ys, xs = np.nonzero(labels)
        if ys.size == 0:
            return None
        nearest = np.argmin((ys - centre[0]) ** 2 + (xs - centre[1]) ** 2)
        if (ys[nearest] - centre[0]) ** 2 + (xs[nearest] - centre[1]) ** 2 > 9:
            return None
        label = labels[ys[nearest], xs[nearest]]
    kept = np.where(labels == label, patch, 0.0)
    return (kept / kept.max()).astype(np.float32)


def _to_proposal(
    accepted: list[tuple[np.ndarray, tuple[slice, slice], float, bool]], H: int, W: int
) -> Proposal:
    K = len(accepted)
    footprints = np.zeros((K, H, W), dtype=np.float32)
    centers = np.zeros((K, 2), dtype=np.float32)
    score = np.zeros(K, dtype=np.float32)
    sure = np.zeros(K, dtype=bool)
    for k, (patch, box, s, is_sure) in enumerate(accepted):
        footprints[k][box] = patch
        centers[k] = ndimage.center_of_mass(footprints[k])
        score[k] = s
        sure[k] = is_sure
    return Proposal(footprints=footprints, centers=centers, score=score, sure=sure)
