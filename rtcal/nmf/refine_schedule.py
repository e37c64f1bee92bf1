"""Which footprints the online core refines, and in what order.

Refining a footprint by HALS on the sufficient statistics (``rtcal.nmf.shapes``)
is a least-squares fit of the component's pixels to its trace. Its pixel noise
is sigma_px / sqrt(M_kk), M_kk = sum_t c_t^2 the trace's energy: while a cell
has only been seen at rest, its trace is noise, M_kk stays small, and every
refinement replaced the detector's clean footprint with speckle. Measured on
two simulated 256 x 256 movies (seeds 11, 12): cells the seed detector found at
rest had IoU 0.57-0.85 with the truth before refinement and 0.33-0.40 after,
and were all counted false positives.

So a component is refined only once its energy makes one refinement precise:
sigma_px / sqrt(E_k) <= max_noise x the footprint's RMS over its support,
i.e. E_k >= sigma_px^2 n_k / (max_noise^2 ||a_k||^2) for a support of n_k
pixels. E_k counts only what a trace holds above 3 x its own noise sigma
(sigma_px / ||a_k||): the whole M_kk also grew from noise and from neuropil
leaking into the traces of silent cells, which then qualified and lost their
shape (F1 0.68 / 0.62 with M_kk, 0.71 / 0.65 with the excess, on seeds 11 /
12; 2 and 5 sigma gave the same within 0.01). Until then a component keeps the
shape it was born with (its trace is still fitted every frame). Once
refinable it stays so. The refinable components are refined ``per_frame``
at a time, round robin.

The energy is accumulated here from the traces the stepper returns (host
arrays, one frame late: the order of frame t is decided before frame t is
fitted), so the CPU and the device steppers refine the same components.
"""

from __future__ import annotations

import numpy as np


class RefineSchedule:
    """noise_px: pixel noise sigma of the registered frames; max_noise: as above
    (inf: every component is refinable at once); per_frame: refinements per frame;
    floor_sd: only the part of a trace above floor_sd x its noise sigma
    (sigma_px / ||a_k||) counts as energy."""

    def __init__(self, noise_px: float, max_noise: float, per_frame: int,
                 floor_sd: float = 3.0) -> None:
        self.noise_px, self.max_noise, self.per_frame = float(noise_px), float(max_noise), per_frame
        self.floor_sd = float(floor_sd)
        self.energy = np.zeros(0)
        self.threshold = np.zeros(0)
        self.floor = np.zeros(0)
        self.refinable = np.zeros(0, bool)
        self._next = 0

    def _floor(self, gram_diag: np.ndarray) -> np.ndarray:
        return self.floor_sd * self.noise_px / np.sqrt(np.maximum(gram_diag, 1e-300))

    def _threshold(self, support_px: np.ndarray, gram_diag: np.ndarray) -> np.ndarray:
        if not np.isfinite(self.max_noise):
            return np.zeros(len(support_px))
        with np.errstate(divide="ignore"):
            return np.where(
                gram_diag > 0,
                self.noise_px**2 * support_px / (self.max_noise**2 * np.maximum(gram_diag, 1e-300)),
                np.inf,
            )

    def add(self, support_px: np.ndarray, gram_diag: np.ndarray, energy: np.ndarray) -> None:
        """Append components: support sizes (n,), ||a_k||^2 (n,), trace energy so far (n,)."""
        thr = self._threshold(np.asarray(support_px, float), np.asarray(gram_diag, float))
        energy = np.asarray(energy, float)
        self.energy = np.r_[self.energy, energy]
        self.threshold = np.r_[self.threshold, thr]
        self.floor = np.r_[self.floor, self._floor(np.asarray(gram_diag, float))]
        self.refinable = np.r_[self.refinable, energy >= thr]

    def reset(self, k: int, support_px: int, gram_kk: float, energy: float) -> None:
        """Component k has a new footprint (a merge): its threshold and energy anew."""
        self.threshold[k] = self._threshold(np.array([support_px], float), np.array([gram_kk]))[0]
        self.floor[k] = self._floor(np.array([gram_kk], float))[0]
        self.energy[k] = energy
        self.refinable[k] = energy >= self.threshold[k]

    def retire(self, k: int) -> None:
        self.energy[k] = 0.0
        self.threshold[k] = np.inf
        self.refinable[k] = False

    def observe(self, c: np.ndarray, beta: float = 1.0) -> None:
        """A frame's traces c (K,): energy <- beta energy + max(c - floor, 0)^2."""
        c = np.maximum(np.asarray(c, np.float64) - self.floor, 0.0)
        self.energy *= beta
        self.energy += c * c
        self.refinable |= self.energy >= self.threshold

    def next_order(self) -> np.ndarray:
        """int64 (<= per_frame,): the refinable components to refine at this frame,
        round robin over the component indices."""
        idx = np.flatnonzero(self.refinable)
        if idx.size == 0 or self.per_frame == 0:
            return np.zeros(0, np.int64)
        start = np.searchsorted(idx, self._next)
        order = idx[(start + np.arange(min(self.per_frame, idx.size))) % idx.size]
        self._next = int(order[-1]) + 1
        return order.astype(np.int64)
