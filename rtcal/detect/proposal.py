"""The interface every footprint detector implements.

A detector looks at a window of recent, motion-corrected frames and proposes
the set of neuron footprints it sees there. The online core initialises from a
proposal and, later, matches new proposals against its current components.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import numpy as np


@dataclass(frozen=True)
class Proposal:
    """Footprints proposed for one window.

    footprints: float32 (K, H, W), non-negative, each normalised to max 1
    centers: float32 (K, 2) (row, col) of each footprint's weighted centroid
    score: float32 (K,) detector confidence, larger is surer (detector-specific scale)
    sure: bool (K,) the footprints the detector vouches for on this window alone
        (None: none of them). The live engine adds a sure proposal at the first
        re-run that makes it, the others only once ``detect_confirm_runs``
        consecutive re-runs have proposed them (``rtcal.engine.redetect``).
    """

    footprints: np.ndarray
    centers: np.ndarray
    score: np.ndarray
    sure: np.ndarray | None = None

    def __len__(self) -> int:
        return int(self.footprints.shape[0])

    @property
    def sure_mask(self) -> np.ndarray:
        """bool (K,): ``sure``, all False where the detector gave none."""
        if self.sure is None:
            return np.zeros(len(self), bool)
        return np.asarray(self.sure, bool).reshape(len(self))


class FootprintProposer(Protocol):
    def propose(self, window: np.ndarray) -> Proposal:
        """window: float32 (T, H, W) motion-corrected frames, oldest first."""
        ...
