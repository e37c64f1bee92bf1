"""Two detectors as one: the first one's footprints, plus the second one's new ones.

The learned detector and the classical seed detector miss different cells. The
network finds active cells in a short window well; the seed detector also
proposes cells from their resting fluorescence (bright blobs of cell size in
the band-passed mean image) and cells whose few transients it refines into a
footprint. A ``CombinedDetector`` proposes with both on the same window and
keeps every footprint of the first, then each footprint of the second that is
new beside them, by the rule the live engine uses to tell a re-run's new cells
from its components (``rtcal.engine.novelty.find_new``: IoU < 0.5 with every
footprint of the first, and less than 30 % of its mask under theirs, so that a
fragment of a cell the first one found is not added).

Inside ``rtcal run`` on the six 2p development movies (seeds 11-14, 61, 62;
256x256, 60 neurons, 3000 frames), the learned detector at its pipeline
threshold 0.6 plus the seed detector's new footprints gave F1 0.833, 0.748,
0.819, 0.768, 0.821, 0.849 (mean 0.806) against 0.819, 0.738, 0.800, 0.742,
0.811, 0.846 (mean 0.793) for the learned detector alone: better on all six.
The seed detector added 6-11 footprints to the network's 14-29 at
initialisation. With the learned threshold at 0.5 the pair gave a mean of
0.795, at 0.65 0.802. Held out (``bench/accuracy.py``), the 2p 512x512 movies
gained 0.016-0.024 and the 256x256 ones moved by -0.008 to +0.012, but on the
real Neurofinder crop the seed detector's additions were mostly false:
precision 0.56 -> 0.39. So ``learned+seed`` is an option, not the default
(``rtcal.detect.factory``; README, "Learned detector"). The cost is the second
detector's time.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp

from rtcal.detect.proposal import FootprintProposer, Proposal


@dataclass(frozen=True)
class CombinedCounts:
    """What the last propose() did: footprints of the first detector, of the
    second, and of the second kept as new."""

    first: int
    second: int
    added: int


class CombinedDetector:
    """propose(window) -> the first detector's proposal plus the second's new
    footprints (module docstring). min_iou, max_covered: ``find_new``'s rule."""

    def __init__(self, first: FootprintProposer, second: FootprintProposer, *,
                 min_iou: float = 0.5, max_covered: float = 0.3) -> None:
        if not (0.0 < min_iou <= 1.0 and 0.0 <= max_covered <= 1.0):
            raise ValueError(f"CombinedDetector: min_iou {min_iou} must be in (0, 1] and "
                             f"max_covered {max_covered} in [0, 1]")
        self.first, self.second = first, second
        self.min_iou, self.max_covered = min_iou, max_covered
        self.last_counts: CombinedCounts | None = None

    def propose(self, window: np.ndarray) -> Proposal:
        from rtcal.engine.novelty import find_new

        a = self.first.propose(window)
        b = self.second.propose(window)
        if not len(a):
            self.last_counts = CombinedCounts(0, len(b), len(b))
            return b
        keep = np.arange(len(b))
        if len(b):
            existing = sp.csr_matrix(np.asarray(a.footprints).reshape(len(a), -1))
            novelty = find_new(np.asarray(b.footprints), existing, self.min_iou,
                               self.max_covered)
            keep = np.flatnonzero(novelty.new)
        self.last_counts = CombinedCounts(len(a), len(b), len(keep))
        if not len(keep):
            return a
        return Proposal(
            footprints=np.concatenate([a.footprints, b.footprints[keep]]).astype(np.float32),
            centers=np.concatenate([np.asarray(a.centers).reshape(-1, 2),
                                    np.asarray(b.centers).reshape(-1, 2)[keep]]).astype(
                np.float32),
            score=np.concatenate([a.score, b.score[keep]]).astype(np.float32),
            sure=np.concatenate([a.sure_mask, b.sure_mask[keep]]),
        )
