"""NumPy ``.npy`` movies, memory-mapped so frames are read from disk on demand.

A Fortran-ordered file still reads correctly, but each frame is then gathered
from across the whole file; save movies C-ordered for streaming.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from rtcal.io.array import ArrayMovieReader
from rtcal.io.layout import movie_dtype, movie_layout
from rtcal.io.movie import MovieError


def open_npy(path: Path) -> ArrayMovieReader:
    """Open a .npy movie (see ``rtcal.io.layout`` for the accepted shapes and dtypes)."""
    try:
        array = np.load(path, mmap_mode="r", allow_pickle=False)
    except (ValueError, OSError, EOFError) as exc:  # truncated, not .npy, object dtype
        raise MovieError(path, f"not a readable .npy file ({exc})") from exc
    if not isinstance(array, np.ndarray):  # an .npz archive renamed .npy
        array.close()
        raise MovieError(path, "is an .npz archive, not a single .npy array")
    layout = movie_layout(path, array.shape)
    dtype = movie_dtype(path, array.dtype)
    return ArrayMovieReader(path, array, layout=layout, dtype=dtype)
