"""New components from the residual: cells that fire after initialisation.

The online core keeps the last L residual frames r_t = y_t - A^T c_t - B^T f_t
(what the current model does not explain), smoothed to cell scale. Every few
frames it looks for cell-sized transients there (OnACID, Giovannucci et al.
2017: peak-to-noise of the spatially filtered residual buffer), extracts each
candidate by rank-1 non-negative factorisation of the buffer around its peak,
and accepts it only if the footprint has a soma's size and shape
(``rtcal.detect.soma``) and explains the residual where it fired (space
correlation test, as OnACID's ``rval``).
"""

from __future__ import annotations

from dataclasses import dataclass

import numba
import numpy as np
from scipy import ndimage

from rtcal.detect.seed import clean_footprint, rank1_footprint
from rtcal.detect.soma import SomaGate


@dataclass(frozen=True)
class Candidate:
    """A proposed new component: footprint float32 (H, W) (max 1), its trace over
    the buffer float32 (L,), oldest first, and its peak-to-noise score."""

    footprint: np.ndarray
    trace: np.ndarray
    score: float


@numba.njit(cache=True)
def bin_and_smooth(frame, tmp, out):  # pragma: no cover - compiled
    """2x2 block means of frame (H, W) into tmp (H//2, W//2), then a 3x3 box mean into out."""
    h, w = tmp.shape
    for i in range(h):
        for j in range(w):
            tmp[i, j] = 0.25 * (
                frame[2 * i, 2 * j]
                + frame[2 * i + 1, 2 * j]
                + frame[2 * i, 2 * j + 1]
                + frame[2 * i + 1, 2 * j + 1]
            )
    for i in range(h):
        i0, i1 = max(i - 1, 0), min(i + 2, h)
        for j in range(w):
            j0, j1 = max(j - 1, 0), min(j + 2, w)
            acc = 0.0
            for a in range(i0, i1):
                for b in range(j0, j1):
                    acc += tmp[a, b]
            out[i, j] = acc / ((i1 - i0) * (j1 - j0))
    return out


def bin_and_smooth_reference(frame: np.ndarray) -> np.ndarray:
    """Plain version of :func:`bin_and_smooth`. -> float32 (H//2, W//2)."""
    h, w = frame.shape[0] // 2, frame.shape[1] // 2
    binned = frame[: 2 * h, : 2 * w].reshape(h, 2, w, 2).mean(axis=(1, 3))
    return ndimage.uniform_filter(
        binned.astype(np.float64), 3, mode="constant"
    ) / ndimage.uniform_filter(np.ones((h, w)), 3, mode="constant")


def clear_border(residual, border: tuple[int, int, int, int]):
    """Zero ``border`` = (top, bottom, left, right) rows / columns of residual (H, W)
    in place (NumPy or CuPy): pixels the registration invented by replicating the
    frame's edge are no evidence of anything. Returns residual."""
    top, bottom, left, right = border
    H, W = residual.shape
    if top:
        residual[: min(top, H)] = 0
    if bottom:
        residual[max(H - bottom, 0) :] = 0
    if left:
        residual[:, : min(left, W)] = 0
    if right:
        residual[:, max(W - right, 0) :] = 0
    return residual


class ResidualBuffer:
    """Ring buffer of the last ``length`` residual frames: raw (L, H, W) float32 for
    footprint extraction, and binned 2x2 + 3x3 box-smoothed (L, H//2, W//2) for detection."""

    def __init__(self, length: int, height: int, width: int) -> None:
        self.raw = np.zeros((length, height, width), np.float32)
        self.small = np.zeros((length, height // 2, width // 2), np.float32)
        self._tmp = np.zeros((height // 2, width // 2), np.float32)
        self.n_seen = 0

    @property
    def length(self) -> int:
        return int(self.raw.shape[0])

    def push(self, residual: np.ndarray) -> None:
        """residual: (H, W) or flat (H*W,) unsmoothed residual of the newest frame."""
        slot = self.n_seen % self.length
        self.raw[slot] = residual.reshape(self.raw.shape[1:])
        bin_and_smooth(self.raw[slot], self._tmp, self.small[slot])
        self.n_seen += 1

    def _order(self) -> np.ndarray:
        n = min(self.n_seen, self.length)
        start = self.n_seen % self.length if self.n_seen >= self.length else 0
        return (start + np.arange(n)) % self.length

    def patch(self, box: tuple[slice, slice]) -> np.ndarray:
        """Raw residuals in a (row, col) box, oldest first: (n, h, w), a small copy."""
        return self.raw[:, box[0], box[1]][self._order()]

    def pixels(self, index: np.ndarray) -> np.ndarray:
        """Raw residuals at flat pixel indices, oldest first: (n, len(index)), a small copy."""
        flat = self.raw.reshape(self.length, -1)
        return flat[:, index][self._order()]


def find_candidates(
    buffer: ResidualBuffer,
    noise_small: np.ndarray,
    covered: np.ndarray,
    *,
    radius_px: float,
    min_pnr: float,
    min_space_corr: float,
    max_new: int,
    gate: SomaGate | None = None,
) -> list[Candidate]:
    """Cell-sized transients in the residual buffer that no component covers.

    noise_small: float32 (H//2, W//2) noise sigma of the binned, smoothed
    residual; covered: bool (H, W), pixels already inside a footprint's core;
    gate: the shape a candidate's footprint must have (default: a SomaGate of
    radius_px). Returns at most max_new candidates, strongest first.
    """
    gate = gate if gate is not None else SomaGate(radius_px)
    # The max over time needs no ordering: read the ring in place (slots not yet
    # written hold zeros, which only floor the max at 0).
    pnr = buffer.small.max(axis=0) / noise_small
    size = max(3, int(round(radius_px / 2)) | 1)
    covered_small = covered[: 2 * pnr.shape[0] : 2, : 2 * pnr.shape[1] : 2]
    peaks = (pnr == ndimage.maximum_filter(pnr, size=size)) & (pnr > min_pnr) & ~covered_small
    ys, xs = np.nonzero(peaks)
    order = np.argsort(-pnr[ys, xs])[: 4 * max_new]
    H, W = covered.shape
    half = int(np.ceil(2.5 * radius_px))
    taken = covered.copy()
    out: list[Candidate] = []
    for i in order:
        if len(out) >= max_new:
            break
        y, x = 2 * int(ys[i]) + 1, 2 * int(xs[i]) + 1
        if taken[min(y, H - 1), min(x, W - 1)]:
            continue
        box = (
            slice(max(y - half, 0), min(y + half + 1, H)),
            slice(max(x - half, 0), min(x + half + 1, W)),
        )
        candidate = _extract(
            buffer.patch(box), (y - box[0].start, x - box[1].start), radius_px, min_space_corr,
            gate,
        )
        if candidate is None:
            continue
        patch, trace = candidate
        footprint = np.zeros((H, W), np.float32)
        footprint[box] = patch
        taken[box] |= patch >= 0.2
        out.append(Candidate(footprint, trace, float(pnr[ys[i], xs[i]])))
    return out


def _extract(
    local: np.ndarray, centre: tuple[int, int], radius_px: float, min_space_corr: float,
    gate: SomaGate,
) -> tuple[np.ndarray, np.ndarray] | None:
    """Footprint (h, w) and trace (L,) of one candidate from its raw residual patch, or None."""
    smooth = ndimage.gaussian_filter(local, (0, 0.25 * radius_px, 0.25 * radius_px))
    patch = clean_footprint(rank1_footprint(smooth, centre), centre)
    if patch is None:
        return None
    if gate.why_not_patch(patch) is not None:
        return None
    flat = smooth.reshape(smooth.shape[0], -1)
    a = patch.reshape(-1)
    trace = np.maximum(flat @ a, 0.0) / float(a @ a)
    r = np.corrcoef(flat[int(np.argmax(trace))], a)[0, 1]
    if not np.isfinite(r) or r < min_space_corr:
        return None
    return patch, trace.astype(np.float32)


def covered_core(csr, shape: tuple[int, int]) -> np.ndarray:
    """bool (H, W): pixels where some footprint (rows of ``csr``, K x P) is >= 0.3 x its
    maximum and non-zero (retired components have zero weight): a new component may
    not start there."""
    core = np.zeros(csr.shape[1], bool)
    rows = np.repeat(np.arange(csr.shape[0]), np.diff(csr.indptr))
    peak = np.zeros(csr.shape[0], np.float32)
    np.maximum.at(peak, rows, csr.data)
    core[csr.indices[(csr.data >= 0.3 * peak[rows]) & (csr.data > 0)]] = True
    return core.reshape(shape)
