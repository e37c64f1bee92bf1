"""In-memory buffers of a ``ResultsWriter``: what has not reached the disk yet.

Frame columns are allocated up front (and widened by doubling when K grows), so
the per-frame path (``FrameBlock`` row writes) never allocates.
"""

from __future__ import annotations

import numpy as np


def grow_rows(a: np.ndarray, n_rows: int, fill: float) -> np.ndarray:
    """``a`` with at least ``n_rows`` rows (axis 0), capacity doubled, old rows kept."""
    if n_rows <= a.shape[0]:
        return a
    grown = np.full((max(n_rows, 2 * a.shape[0], 16),) + a.shape[1:], fill, a.dtype)
    grown[: a.shape[0]] = a
    return grown


class FrameBlock:
    """Preallocated per-frame columns for up to ``capacity`` frames not yet on disk.

    index, t_received_ns, t_done_ns: int64 (capacity,); shift: float32 (capacity, 2)
    traces, spikes: float32 (capacity, k_capacity), NaN wherever nothing was
    written, so a component that exists at flush time but not at a buffered
    frame reads NaN there.
    """

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self.n = 0
        self.index = np.zeros(capacity, np.int64)
        self.shift = np.zeros((capacity, 2), np.float32)
        self.t_received_ns = np.zeros(capacity, np.int64)
        self.t_done_ns = np.zeros(capacity, np.int64)
        self.traces = np.full((capacity, 0), np.nan, np.float32)
        self.spikes = np.full((capacity, 0), np.nan, np.float32)

    def reserve_components(self, k: int) -> None:
        """Make room for k components; buffered rows are kept."""
        if k > self.traces.shape[1]:
            self.traces = np.ascontiguousarray(grow_rows(self.traces.T, k, np.nan).T)
            self.spikes = np.ascontiguousarray(grow_rows(self.spikes.T, k, np.nan).T)

    def clear(self) -> None:
        self.traces[: self.n] = np.nan
        self.spikes[: self.n] = np.nan
        self.n = 0


class EventLog:
    """Events added since the last flush, as Python lists (events are rare)."""

    def __init__(self) -> None:
        self.frame: list[int] = []
        self.t_ns: list[int] = []
        self.rule: list[bytes] = []
        self.neurons: list[np.ndarray] = []

    def __len__(self) -> int:
        return len(self.frame)

    def clear(self) -> None:
        for column in (self.frame, self.t_ns, self.rule, self.neurons):
            column.clear()


class FootprintCopy:
    """The writer's own copy of the footprints, and which rows are not on disk yet.

    One float32 (H, W) array per component, so adding a component never copies
    the others (a (K, H, W) buffer would, or would double its memory).
    """

    def __init__(self) -> None:
        self._rows: list[np.ndarray] = []
        self._dirty: set[int] = set()

    def __len__(self) -> int:
        return len(self._rows)

    def changed_rows(self, footprints: np.ndarray) -> np.ndarray:
        """int64 indices of existing rows that differ in ``footprints`` (K' >= K rows)."""
        same = [np.array_equal(footprints[k], row) for k, row in enumerate(self._rows)]
        return np.flatnonzero(~np.array(same, bool)).astype(np.int64)

    def update(self, rows: np.ndarray, footprints: np.ndarray) -> None:
        """Copy ``footprints[rows]`` (rows sorted, new ones appended in order), mark dirty."""
        for k in rows.tolist():
            row = np.array(footprints[k], np.float32)
            if k < len(self._rows):
                self._rows[k] = row
            else:
                self._rows.append(row)
            self._dirty.add(k)

    def dirty(self) -> list[tuple[int, np.ndarray]]:
        """(row index, (H, W) values) of rows changed since ``mark_written``."""
        return [(k, self._rows[k]) for k in sorted(self._dirty)]

    def mark_written(self) -> None:
        self._dirty.clear()
