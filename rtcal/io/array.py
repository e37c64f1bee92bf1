"""A movie stored as one array that slices lazily: an HDF5 dataset or a memory map.

Slicing an h5py Dataset or a ``numpy.memmap`` reads only the selected frames,
so one reader serves HDF5, .npy and uncompressed contiguous TIFF data.
"""

from __future__ import annotations

from collections.abc import Callable
from os import PathLike

import numpy as np

from rtcal.io.layout import Layout
from rtcal.io.movie import MovieError, MovieReader


class ArrayMovieReader(MovieReader):
    """Movie frames sliced out of a stored array (h5py.Dataset or numpy.memmap).

    array: the stored array, any shape ``layout`` accepts.
    location: how errors name it (e.g. ``movie.h5:/imaging/data``); default ``path``.
    on_close: releases the file (e.g. ``h5py.File.close``); a memmap needs none.
    iter_block: frames read at once when iterating (an HDF5 chunk's length in
    time, so each compressed chunk is decoded once rather than once per frame).
    """

    def __init__(
        self,
        path: str | PathLike[str],
        array: object,
        *,
        layout: Layout,
        dtype: np.dtype,
        fps_hz: float | None = None,
        location: str | None = None,
        on_close: Callable[[], None] | None = None,
        iter_block: int = 1,
    ):
        super().__init__(path, shape=layout.shape, dtype=dtype, fps_hz=fps_hz)
        self._array = array
        self._layout = layout
        self._location = location or str(path)
        self._on_close = on_close
        self._iter_block = max(1, int(iter_block))

    def _read_block(self, start: int, stop: int) -> np.ndarray:
        try:
            block = self._array[self._layout.key(start, stop)]
        except (OSError, RuntimeError) as exc:  # h5py: corrupt chunk, missing filter
            raise MovieError(
                self._location, f"cannot read frames {start}..{stop - 1} ({exc})"
            ) from exc
        if isinstance(block, np.memmap):  # a view of the file: copy it out
            frames = np.array(block, dtype=self.dtype, order="C")
        else:  # h5py hands back a new array already
            frames = np.ascontiguousarray(block, dtype=self.dtype)
        return frames.reshape(stop - start, self.height, self.width)

    def _close(self) -> None:
        self._array = None
        if self._on_close is not None:
            self._on_close()
