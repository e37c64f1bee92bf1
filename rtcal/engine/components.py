"""The engine's view of the component set: version, birth of each component, and
the sparse footprint message built from the pipeline's footprints."""

from __future__ import annotations

import threading

import numpy as np
import scipy.sparse as sp

from rtcal.engine.pipeline import Pipeline
from rtcal.net.footprints import FootprintUpdate


def footprint_csr(pipeline: Pipeline) -> sp.csr_matrix:
    """The pipeline's footprints as sparse (K, H*W) float32, without a dense copy.

    Reads the online NMF's CSR matrix (a dense (K, H, W) copy is 300 MB at
    512 x 512 x 300 neurons; the frame loop cannot afford it)."""
    nmf = getattr(pipeline, "_nmf", None)
    if nmf is None:
        H, W = pipeline.shape or (0, 0)
        return sp.csr_matrix((0, H * W), dtype=np.float32)
    return nmf.A.csr


class ComponentSet:
    """Tracks the component set as the frame loop sees it through the outputs.

    version: +1 whenever components appear or retire (merged away or silent; a
    retired component keeps its index and reports 0);
    born: int64 (K,) sequence number of each component's first output frame.
    ``latest`` (the last FootprintUpdate) is read by the control thread.
    """

    def __init__(self) -> None:
        self.version = 0
        self.born = np.zeros(0, np.int64)
        self.n_retired = 0
        self._latest: FootprintUpdate | None = None
        self._lock = threading.Lock()

    @property
    def n_components(self) -> int:
        return int(self.born.shape[0])

    def changed(self, n_components: int, n_added: int, retired: np.ndarray | None) -> bool:
        n_retired = int(np.count_nonzero(retired)) if retired is not None else 0
        if n_retired != self.n_retired:
            self.n_retired = n_retired
            return True
        return n_components != self.n_components or n_added > 0

    def update(self, pipeline: Pipeline, sequence: int, *, new_set: bool) -> FootprintUpdate:
        """Snapshot the pipeline's footprints after frame ``sequence``; new_set: the set
        changed (version + 1, new components born at ``sequence``)."""
        csr = footprint_csr(pipeline)
        K = csr.shape[0]
        if new_set:
            self.version += 1
            if K > len(self.born):
                self.born = np.r_[self.born, np.full(K - len(self.born), sequence, np.int64)]
        H, W = pipeline.shape
        u = FootprintUpdate(
            self.version,
            int(sequence),
            int(H),
            int(W),
            csr.indptr.astype(np.int64),
            csr.indices.astype(np.int32),
            csr.data.astype(np.float32, copy=True),
            self.born[:K].copy(),
        )
        with self._lock:
            self._latest = u
        return u

    @property
    def latest(self) -> FootprintUpdate | None:
        with self._lock:
            return self._latest
