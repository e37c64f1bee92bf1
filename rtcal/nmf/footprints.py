"""The set of footprints A held by the online core, with a fixed support per component.

Each footprint a_k lives on a fixed set of pixels (its *support*: the initial
footprint dilated by a margin, so that refinement can move its edge but not
wander across the field). All K footprints are one CSR matrix (K, P): the
per-frame kernels then read ``indptr``/``indices``/``data`` directly, and the
sufficient statistics W = sum_t y_t c_t^T are stored on the same pattern
(OnACID, Giovannucci et al. 2017, restricts them to a neighbourhood likewise).
Rows are never reordered or removed: row k is component k for the whole run.
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp
from scipy import ndimage


def support_of(footprint: np.ndarray, margin_px: int) -> np.ndarray:
    """Pixels a footprint may occupy: where it is > 0, dilated by margin_px. bool (H, W).

    Dilated within the footprint's bounding box grown by the margin (the same
    pixels as dilating the whole frame, whose outside counts as 0 either way): a
    whole 512 x 512 frame took 2 ms per component added."""
    inside = footprint > 0
    if margin_px <= 0:
        return inside
    rows, cols = np.flatnonzero(inside.any(axis=1)), np.flatnonzero(inside.any(axis=0))
    if not rows.size:
        return inside
    m = int(margin_px)
    box = (slice(max(rows[0] - m, 0), rows[-1] + m + 1),
           slice(max(cols[0] - m, 0), cols[-1] + m + 1))
    out = np.zeros_like(inside)
    out[box] = ndimage.binary_dilation(inside[box], iterations=m)
    return out


def support_of_reference(footprint: np.ndarray, margin_px: int) -> np.ndarray:
    """Plain version of :func:`support_of`: the whole frame dilated."""
    inside = footprint > 0
    if margin_px <= 0:
        return inside
    return ndimage.binary_dilation(inside, iterations=int(margin_px))


class FootprintSet:
    """Footprints (K, H*W) as CSR with fixed supports; grows by ``add``.

    height, width: frame size. After ``add`` or a change of ``data`` values,
    call ``gram()`` for the (K, K) Gram matrix A A^T.
    """

    def __init__(self, height: int, width: int) -> None:
        self.height, self.width = int(height), int(width)
        self.csr = sp.csr_matrix((0, self.height * self.width), dtype=np.float32)
        self.born_frame = np.zeros(0, np.int64)

    @property
    def n_components(self) -> int:
        return int(self.csr.shape[0])

    def add(self, footprints: np.ndarray, born_frame: int, margin_px: int) -> np.ndarray:
        """Append footprints (n, H, W); returns the new rows' indices (n,).

        The CSR arrays are extended directly (``sp.vstack`` re-validated and
        copied the whole matrix, ~1 ms per addition at 512 x 512 / 300 neurons);
        every support pixel is a stored entry, zeros included."""
        csr = self.csr
        idx_parts, val_parts, ends = [csr.indices], [csr.data], []
        end = int(csr.indptr[-1])
        for fp in footprints:
            idx = np.flatnonzero(support_of(fp, margin_px).reshape(-1))
            idx_parts.append(idx.astype(np.int32))
            val_parts.append(fp.reshape(-1)[idx].astype(np.float32))
            end += idx.size
            ends.append(end)
        first = self.n_components
        if ends:
            indptr = np.r_[csr.indptr.astype(np.int64), np.asarray(ends, np.int64)]
            if end >= np.iinfo(np.int32).max:
                raise OverflowError("footprint supports exceed 2^31 stored pixels")
            out = sp.csr_matrix(
                (np.concatenate(val_parts).astype(np.float32, copy=False),
                 np.concatenate(idx_parts).astype(np.int32, copy=False),
                 indptr.astype(np.int32)),
                shape=(first + len(ends), self.height * self.width),
            )
            out.has_sorted_indices = True
            self.csr = out
        self.born_frame = np.r_[self.born_frame, np.full(len(ends), born_frame, np.int64)]
        return np.arange(first, self.n_components)

    def dense(self) -> np.ndarray:
        """float32 (K, H, W) copy of all footprints."""
        return self.csr.toarray().reshape(-1, self.height, self.width)

    def gram(self) -> np.ndarray:
        """A A^T as float64 (K, K)."""
        return (self.csr @ self.csr.T).toarray().astype(np.float64)

    def project(self, y: np.ndarray) -> np.ndarray:
        """A y for a flat frame y (P,) -> float64 (K,)."""
        return (self.csr @ y).astype(np.float64)
