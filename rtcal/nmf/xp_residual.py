"""The residual buffer of the new-component search, kept on a backend.

Each frame's residual r_t = y_t - A^T c_t - B^T f_t and its binned, smoothed
copy (:func:`bin_and_smooth`, as :func:`rtcal.nmf.residual.bin_and_smooth`) go
into device ring buffers; nothing is downloaded per frame. Every
``search_every`` frames the search (:func:`rtcal.nmf.residual.find_candidates`,
on the host) reads the buffer through a :class:`SearchView`: the temporal
maximum of the smoothed buffer (H/2 x W/2 floats, downloaded once) and, only
for candidate peaks, small raw patches. So a search moves about a quarter of
a frame across the bus, not the buffer.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np

from rtcal.backend import Backend, array_module
from rtcal.nmf.residual import ResidualBuffer


@lru_cache(maxsize=8)
def _box_counts(xp, h: int, w: int):
    """float64 (h, w): pixels inside each 3x3 box (4 at corners, 6 on edges, 9 inside)."""
    i, j = xp.arange(h), xp.arange(w)
    rows = xp.minimum(i + 2, h) - xp.maximum(i - 1, 0)
    cols = xp.minimum(j + 2, w) - xp.maximum(j - 1, 0)
    return (rows[:, None] * cols[None, :]).astype(xp.float64)


def bin_and_smooth(frame, out=None):
    """2x2 block means of frame (H, W) float32, then a 3x3 box mean (edges: the mean of
    the pixels inside) -> float32 (H//2, W//2), written into ``out`` if given.

    The box sum is separable (3 rows, then 3 columns) in float64: the result differs
    from the Numba kernel's 9-term sum by float64 rounding only.
    """
    xp = array_module(frame)
    h, w = frame.shape[0] // 2, frame.shape[1] // 2
    f = frame[: 2 * h, : 2 * w]
    # same float32 order of additions as the Numba kernel
    binned = xp.float32(0.25) * (f[0::2, 0::2] + f[1::2, 0::2] + f[0::2, 1::2] + f[1::2, 1::2])
    padded = xp.zeros((h + 2, w + 2), xp.float64)
    padded[1:-1, 1:-1] = binned
    rows = padded[:h] + padded[1 : h + 1] + padded[2 : h + 2]  # (h, w + 2)
    total = rows[:, :w] + rows[:, 1 : w + 1] + rows[:, 2 : w + 2]
    mean = total / _box_counts(xp, h, w)
    if out is None:
        return mean.astype(xp.float32)
    out[...] = mean
    return out


class DeviceResidualBuffer:
    """Ring buffers of the last ``length`` residuals on a backend: raw float32
    (L, H, W) and binned + smoothed float32 (L, H//2, W//2), as
    :class:`rtcal.nmf.residual.ResidualBuffer`. ``n_seen`` is counted on the host."""

    def __init__(
        self, length: int, height: int, width: int, backend: Backend, decay: float = 0.0
    ) -> None:
        xp = backend.xp
        self.backend = backend
        self.decay = float(decay)
        self.raw = xp.zeros((length, height, width), xp.float32)
        self.small = xp.zeros((length, height // 2, width // 2), xp.float32)
        self.n_seen = 0

    @classmethod
    def from_host(cls, buffer: ResidualBuffer, backend: Backend) -> DeviceResidualBuffer:
        out = cls(buffer.length, *buffer.raw.shape[1:], backend, buffer.decay)
        out.raw[...] = backend.asarray(buffer.raw)
        out.small[...] = backend.asarray(buffer.small)
        out.n_seen = buffer.n_seen
        return out

    @property
    def length(self) -> int:
        return int(self.raw.shape[0])

    def push(self, residual, small) -> None:
        """residual: (H*W,) or (H, W); small: its bin_and_smooth (H//2, W//2), filtered
        in time here as by the host buffer (``decay``)."""
        slot = self.n_seen % self.length
        self.raw[slot] = residual.reshape(self.raw.shape[1:])
        self.small[slot] = small
        if self.decay and self.n_seen:
            self.small[slot] += self.backend.xp.float32(self.decay) * self.small[
                (self.n_seen - 1) % self.length
            ]
        self.n_seen += 1

    def order(self) -> np.ndarray:
        """Slots oldest first (host int64)."""
        n = min(self.n_seen, self.length)
        start = self.n_seen % self.length if self.n_seen >= self.length else 0
        return (start + np.arange(n)) % self.length

    def view(self) -> SearchView:
        """What find_candidates reads, with the temporal maximum downloaded now."""
        return SearchView(self, self.backend.to_host(self.small.max(axis=0)))

    def patch(self, box: tuple[slice, slice]) -> np.ndarray:
        """Raw residuals in a (row, col) box, oldest first: float32 (n, h, w) on the host."""
        order = self.backend.asarray(self.order())
        return self.backend.to_host(self.raw[:, box[0], box[1]][order])

    def pixels(self, index: np.ndarray) -> np.ndarray:
        """Raw residuals at flat pixel indices, oldest first: float32 (n, len(index)) on the
        host."""
        flat = self.raw.reshape(self.length, -1)
        order = self.backend.asarray(self.order())
        return self.backend.to_host(flat[:, self.backend.asarray(index)][order])


class SearchView:
    """What :func:`rtcal.nmf.residual.find_candidates` reads of a ResidualBuffer,
    served from a device buffer.

    ``small`` is (1, H//2, W//2): the buffer's temporal maximum, the only thing the
    search takes from the smoothed buffer (its ``small.max(axis=0)`` is then that
    image); ``patch`` downloads only the box it returns.
    """

    def __init__(self, buffer: DeviceResidualBuffer, small_max: np.ndarray) -> None:
        self.small = small_max[None]
        self.length = buffer.length
        self.patch = buffer.patch

    def small_max(self) -> np.ndarray:
        return self.small[0]
