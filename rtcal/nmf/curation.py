"""Merging duplicate components and retiring dead ones, a few components per frame.

Two components are *duplicates* (CaImAn's merge rule, Pnevmatikakis et al.
2016) when their footprints overlap strongly and their recent traces
correlate strongly:

    overlap_ij = a_i . a_j / (|a_i| |a_j|) >= merge_min_overlap   (from the Gram matrix)
    corr(c_i, c_j) over the last merge_window_s              >= merge_min_corr

and their centres (footprint-weighted centroids) lie within
merge_max_distance soma radii of each other (CNMF-E's ``dmin``), or when the
footprints are near-identical (overlap >= DUPLICATE_OVERLAP) and
the newer one carries almost nothing (the older has taken all the signal, which
is what the trace fit does to an exact copy). The newer is merged into the older
(:func:`merged_footprint`): the older keeps its index, its footprint becomes
the combination weighted by each trace's RMS over the window both share,
re-scaled to its old norm, and its trace, statistics and history become the
projection of both onto that footprint.

The distance rule is for one-photon data, where blurred neighbours overlap
(cosine 0.3 at centres two radii apart) and traces contaminated by each other
and by the background correlate at 0.85-0.9 although the cells' calcium does
not (0.19 for one such pair): on five simulated 1p movies, the three merges of
two different cells joined centres 1.31-1.59 radii apart and lost one cell or
both, while the 17 merges of a cell with a displaced copy or a piece of itself
joined centres 0.01-1.19 radii apart. In 2p, merges joined centres < 0.1 radii
apart.

A component is *dead* and retired when its footprint has collapsed (fewer
than retire_min_area_frac x pi r^2 pixels at >= 0.2 x its maximum) or when
its trace has stayed at or below SILENT_SD x its noise level for
retire_silent_s (a cell at rest crosses that level in about a third of its
frames; a cell that is gone, or whose fluorescence the model now explains by
another component, sits at 0). It is retired too when its refined footprint
has become elongated like a neurite (``rtcal.detect.soma``, soma_max_elongation;
a soma's area is checked only at birth: refined footprints of real cells
sharpen or spread between 0.3 and 3 x pi r^2). Resting cells that never fire are kept. Known
limit: the static baseline image is each pixel's median over the first frames,
calcium included, so a very active cell sits below it between bursts, its trace
clamped at 0, and looks gone too (a 3 s window retired 3 of 12 such cells in
tests/test_nmf_curation.py); hence the long default window (120 s).

Indices never change: a merged-away or retired component keeps its row, with
zero footprint and statistics, so it takes no part in the fit and reports 0.

:class:`Curator` holds what the decisions need (recent traces, last active
frame, who is retired) and examines ceil(K / merge_every) components per
frame, round robin, so that every component is checked once per
``merge_every`` frames and no frame pays for all of them; a new component is
also examined about a second after it is added (duplicates usually arrive as
newcomers). The online NMF applies the changes (``rtcal.nmf.online``).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from rtcal.detect.soma import SomaGate

SILENT_SD = 0.5  # a trace at or below this many noise sigmas counts as silent
DUPLICATE_OVERLAP = 0.9  # footprints this alike cannot be two somata
DUPLICATE_ENERGY = 0.01  # the newer twin's share of the older's recent energy
MIN_WINDOW_FRAMES = 10  # fewer common frames than this: no trace correlation yet
NEWCOMER_CHECK_FRAMES = 30  # a new component is examined this many frames after it is added


def pixel_noise(raw: np.ndarray, stride: int = 7) -> float:
    """Robust pixel noise sigma of residual frames raw (L, H, W): median absolute
    temporal difference over every ``stride``-th pixel / (0.6745 sqrt 2)."""
    flat = raw.reshape(raw.shape[0], -1)[:, ::stride]
    if flat.shape[0] < 2:
        return 1.0
    sigma = np.median(np.abs(np.diff(flat, axis=0))) / (0.6745 * math.sqrt(2.0))
    return float(sigma) if sigma > 0 else 1.0


def pair_corr(x: np.ndarray, y: np.ndarray) -> float:
    """Pearson r of two traces (T,); NaN when either is constant."""
    x = x - x.mean()
    y = y - y.mean()
    den = math.sqrt(float(x @ x) * float(y @ y))
    return float(x @ y) / den if den > 0 else float("nan")


def footprint_area(values: np.ndarray) -> int:
    """Pixels of one footprint's support values (p,) at >= 0.2 x its maximum (0 if all <= 0)."""
    peak = values.max() if values.size else 0.0
    return int(np.count_nonzero(values >= 0.2 * peak)) if peak > 0 else 0


def footprint_centre(pixels: np.ndarray, values: np.ndarray, width: int) -> tuple[float, float]:
    """(row, col) centroid of a footprint given by its flat pixel indices and values
    (negative values count as 0; an empty footprint: its pixels' plain mean, or
    (nan, nan) without pixels)."""
    w = np.maximum(np.asarray(values, np.float64), 0.0)
    rows, cols = np.divmod(np.asarray(pixels, np.int64), width)
    total = float(w.sum())
    if total <= 0:
        if rows.size == 0:
            return math.nan, math.nan
        return float(rows.mean()), float(cols.mean())
    return float(rows @ w) / total, float(cols @ w) / total


def merged_footprint(
    a_keep: np.ndarray, a_gone: np.ndarray, weight_keep: float, weight_gone: float
) -> tuple[np.ndarray, float, float]:
    """Combine two footprints on the kept one's support.

    a_keep, a_gone: float64 (p,) values on the kept component's support pixels
    (a_gone is 0 where its own support does not reach); weights: each
    component's activity (RMS trace). a = w_keep a_keep + w_gone a_gone,
    re-scaled to |a_keep|. Returns (a, alpha, beta): the merged trace is the
    projection of a_keep c_keep + a_gone c_gone onto a,
    c = alpha c_keep + beta c_gone, alpha = a.a_keep / |a|^2, beta = a.a_gone / |a|^2.
    """
    a = weight_keep * a_keep + weight_gone * a_gone
    norm2 = float(a @ a)
    if not norm2 > 0:
        return a_keep.copy(), 1.0, 0.0
    a *= math.sqrt(float(a_keep @ a_keep) / norm2)
    norm2 = float(a @ a)
    return a, float(a @ a_keep) / norm2, float(a @ a_gone) / norm2


@dataclass(frozen=True)
class Action:
    """One change: kind "merge" (gone into keep) or "retire" (keep = -1); reason in words."""

    kind: str
    gone: int
    keep: int
    reason: str


class Curator:
    """Decides merges and retirements; the online NMF applies them.

    config: the online NMF's settings (merge_* and retire_* fields); fps_hz:
    frame rate; recent: float (K, T0) traces the components already have
    (their last frames seed the history); noise_px: pixel noise sigma of the
    residual (:func:`pixel_noise`); t: the NMF's frame count now.
    """

    def __init__(
        self, config, fps_hz: float, recent: np.ndarray, noise_px: float, t: int,
        width: int = 0,
    ):
        self.config = config
        self.width = int(width)  # frame width, for the shape of a footprint (0: unchecked)
        # Only elongation retires a grown component: a real cell's refined footprint
        # can sharpen or spread (0.3-3 x pi r^2 at 0.2 x max) without being wrong.
        self.gate = SomaGate(config.radius_px, 0.0, math.inf, config.soma_max_elongation)
        self.noise_px = float(noise_px)
        self.length = max(MIN_WINDOW_FRAMES, int(round(config.merge_window_s * fps_hz)))
        self.silent_frames = int(round(config.retire_silent_s * fps_hz))
        self.min_area_px = config.retire_min_area_frac * math.pi * config.radius_px**2
        K = recent.shape[0]
        self._ring = np.zeros((self.length, max(K, 1)), np.float32)  # (L, K capacity)
        self._pos = 0
        self.start = np.zeros(0, np.int64)  # frame of each component's oldest history
        self.last_active = np.zeros(0, np.int64)
        self.retired = np.zeros(0, bool)
        self._next = 0
        self._newcomers: list[tuple[int, int]] = []  # (frame due, component)
        self.too_far = 0  # duplicate-like pairs not merged: centres too far apart
        self.add(recent, t)

    @property
    def n_components(self) -> int:
        return int(self.retired.size)

    # ------------------------------------------------------------- state
    def add(self, traces: np.ndarray, t: int) -> None:
        """New components with their traces (n, L') up to frame t (oldest first)."""
        n, n_hist = traces.shape[0], min(traces.shape[1], self.length)
        K0 = self.n_components
        if K0 + n > self._ring.shape[1]:
            grown = np.zeros((self.length, max(K0 + n, 2 * self._ring.shape[1])), np.float32)
            grown[:, :K0] = self._ring[:, :K0]
            self._ring = grown
        rows = (self._pos - n_hist + np.arange(n_hist)) % self.length
        self._ring[:, K0 : K0 + n] = 0.0
        if n_hist:
            self._ring[rows, K0 : K0 + n] = traces[:, -n_hist:].T
        self.start = np.r_[self.start, np.full(n, t - n_hist, np.int64)]
        self.last_active = np.r_[self.last_active, np.full(n, t, np.int64)]
        self.retired = np.r_[self.retired, np.zeros(n, bool)]
        if self.config.merge_every:  # duplicates usually arrive as newcomers: look soon
            self._newcomers += [(t + NEWCOMER_CHECK_FRAMES, k) for k in range(K0, K0 + n)]

    def observe(self, t: int, c: np.ndarray, floor: np.ndarray) -> None:
        """Frame t's traces c (K,) and silence levels floor (K,)."""
        K = c.shape[0]
        self._ring[self._pos, :K] = c
        self._pos = (self._pos + 1) % self.length
        self.last_active[c > floor] = t

    def history(self, k: int, n: int) -> np.ndarray:
        """The last n frames of component k's trace, oldest first."""
        rows = (self._pos - n + np.arange(n)) % self.length
        return self._ring[rows, k].astype(np.float64)

    def activity(self, keep: int, gone: int, t: int) -> tuple[float, float]:
        """RMS of both traces over the frames both have history for (at least one):
        the weights of their footprints in a merge. Over a common window, so that
        the older component's longer past does not outweigh what both show now."""
        n = max(1, min(self.length, t - max(self.start[keep], self.start[gone])))
        return tuple(float(np.sqrt(np.mean(self.history(k, n) ** 2))) for k in (keep, gone))

    def combine(self, keep: int, gone: int, alpha: float, beta: float) -> None:
        """History after a merge: c_keep <- alpha c_keep + beta c_gone; gone retired."""
        self._ring[:, keep] = alpha * self._ring[:, keep] + beta * self._ring[:, gone]
        self.start[keep] = max(self.start[keep], self.start[gone])
        self.retire(gone)

    def retire(self, k: int) -> None:
        self._ring[:, k] = 0.0
        self.retired[k] = True

    def due(self, t: int) -> np.ndarray:
        """Components to examine at frame t: ceil(K / merge_every), round robin, and
        the components added NEWCOMER_CHECK_FRAMES ago."""
        K, every = self.n_components, self.config.merge_every
        if every == 0 or K == 0:
            return np.zeros(0, np.int64)
        n = min(K, -(-K // every))
        order = (self._next + np.arange(n)) % K
        self._next = int((order[-1] + 1) % K)
        if self._newcomers and self._newcomers[0][0] <= t:
            ready = [k for when, k in self._newcomers if when <= t]
            self._newcomers = [(when, k) for when, k in self._newcomers if when > t]
            order = np.r_[order, np.asarray(ready, np.int64)]
        return order[~self.retired[order]]

    # ---------------------------------------------------------- decisions
    def twin_of(
        self, k: int, gram: np.ndarray, partners: np.ndarray, born: np.ndarray
    ) -> Action | None:
        """A just-added component k whose footprint is a near copy (overlap >=
        DUPLICATE_OVERLAP) of an older one: the same cell by shape alone. Checked at
        once, before the trace fit splits the signal between the two arbitrarily
        (an exact copy gets none of it, and its footprint is then refined from noise)."""
        for j in partners:
            if j == k or self.retired[j] or (born[j], j) > (born[k], k):
                continue
            den = math.sqrt(gram[k, k] * gram[j, j])
            overlap = gram[k, j] / den if den > 0 else 0.0
            if overlap >= DUPLICATE_OVERLAP:
                return Action("merge", k, int(j), f"overlap {overlap:.2f} on arrival")
        return None

    @staticmethod
    def _distance(i: int, j: int, centre: Callable[[int], tuple[float, float]] | None) -> float:
        if centre is None:
            return 0.0
        (yi, xi), (yj, xj) = centre(i), centre(j)
        d = math.hypot(yi - yj, xi - xj)
        return d if math.isfinite(d) else 0.0  # an empty footprint: no distance to hold

    def check(
        self,
        i: int,
        t: int,
        gram: np.ndarray,
        partners: np.ndarray,
        born: np.ndarray,
        values: np.ndarray,
        pixels: np.ndarray | None = None,
        centre: Callable[[int], tuple[float, float]] | None = None,
    ) -> Action | None:
        """What to do about component i at frame t, if anything.

        gram: float64 (K, K) footprint Gram matrix A A^T; partners: int64
        components whose supports overlap i's; born: int64 (K,) birth frames (the
        older of a pair is the one born first, then the lower index); values:
        float (p,) i's footprint on its support; pixels: int (p,) the support's
        flat pixel indices (with the curator's ``width``: the footprint's shape is
        checked by the soma gate; None: not checked); centre: (row, col) of a
        component's footprint centroid, for the distance rule (None: not
        applied). A pair refused only by distance is counted in ``too_far``.
        """
        c = self.config
        area = footprint_area(values)
        if area < max(self.min_area_px, 1):
            return Action("retire", i, -1, f"footprint collapsed to {area} px")
        if pixels is not None and self.width:
            why = self.gate.why_not_flat(pixels, values, self.width)
            if why is not None:
                return Action("retire", i, -1, f"not soma-shaped: {why}")
        if self.silent_frames and t - self.last_active[i] >= self.silent_frames:
            return Action("retire", i, -1, f"silent for {t - self.last_active[i]} frames")
        for j in partners:
            if j == i or self.retired[j]:
                continue
            den = math.sqrt(gram[i, i] * gram[j, j])
            overlap = gram[i, j] / den if den > 0 else 0.0
            if overlap < c.merge_min_overlap:
                continue
            keep, gone = (i, j) if (born[i], i) < (born[j], j) else (j, i)
            n = min(self.length, t - max(self.start[i], self.start[j]))
            if n < MIN_WINDOW_FRAMES:
                continue
            x_keep, x_gone = self.history(keep, n), self.history(gone, n)
            r = pair_corr(x_keep, x_gone)
            if r >= c.merge_min_corr:
                d = self._distance(keep, gone, centre)
                if d > c.merge_max_distance * c.radius_px:
                    self.too_far += 1
                    continue
                return Action("merge", gone, keep, f"overlap {overlap:.2f}, trace r {r:.2f}")
            if overlap >= DUPLICATE_OVERLAP and x_gone @ x_gone <= DUPLICATE_ENERGY * (
                x_keep @ x_keep
            ):
                return Action("merge", gone, keep, f"overlap {overlap:.2f}, newer twin silent")
        return None
