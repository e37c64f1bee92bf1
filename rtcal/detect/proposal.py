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
    """

    footprints: np.ndarray
    centers: np.ndarray
    score: np.ndarray

    def __len__(self) -> int:
        return int(self.footprints.shape[0])


class FootprintProposer(Protocol):
    def propose(self, window: np.ndarray) -> Proposal:
        """window: float32 (T, H, W) motion-corrected frames, oldest first."""
        ...
