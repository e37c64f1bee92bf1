"""The movie reader interface every format implements, and the error it raises.

A movie Y has shape (T, H, W): T frames of H rows by W columns, in the file's own
numeric dtype (native byte order). Readers are lazy: opening one reads headers
only, and each frame is read from disk when it is asked for, so a movie of any
length streams through in the memory of a few frames.

A subclass supplies ``_read_block(start, stop)`` and ``_close()``; it may
override ``_read_frame(i)`` when one frame is cheaper to read on its own, and
set ``_iter_block`` (frames per read when iterating) when the storage is
chunked along time. Readers are not thread-safe: give each thread its own.
"""

from __future__ import annotations

import abc
import operator
from collections.abc import Iterator
from os import PathLike
from pathlib import Path

import numpy as np

from rtcal.errors import RtcalError


class MovieError(RtcalError):
    """A movie that cannot be opened or read; the message names the path and the problem.

    ``path`` is the file, directory or pattern (for HDF5, ``file:/dataset``);
    ``problem`` is the explanation without the path.
    """

    def __init__(self, path: str | PathLike[str], problem: str):
        self.path = str(path)
        self.problem = problem
        super().__init__(f"{self.path}: {problem}")

    def __reduce__(self):
        # Exceptions pickle as type(*args); ours takes two arguments, not the message.
        return (type(self), (self.path, self.problem))


class MovieReader(abc.ABC):
    """A lazily read movie Y of shape (T, H, W).

    Attributes: ``path`` (Path), ``shape`` (T, H, W), ``dtype`` (native byte
    order), ``fps_hz`` (frame rate from the file's metadata, or None).
    Frames come back as new, writeable arrays the caller owns.
    Use as a context manager, or call ``close()``.
    """

    _iter_block: int = 1  # frames read at once by iter_frames

    def __init__(
        self,
        path: str | PathLike[str],
        *,
        shape: tuple[int, int, int],
        dtype: np.dtype,
        fps_hz: float | None,
    ):
        self.path = Path(path)
        self.shape = tuple(int(n) for n in shape)
        self.dtype = np.dtype(dtype)
        self.fps_hz = fps_hz
        self._closed = False

    # -- what a format supplies ------------------------------------------------

    @abc.abstractmethod
    def _read_block(self, start: int, stop: int) -> np.ndarray:
        """Frames start..stop-1 (0 <= start < stop <= T) as a new (stop-start, H, W) array."""

    @abc.abstractmethod
    def _close(self) -> None:
        """Release the file handles; called once."""

    def _read_frame(self, i: int) -> np.ndarray:
        """Frame i (0 <= i < T) as a new (H, W) array."""
        return self._read_block(i, i + 1)[0]

    # -- sizes -------------------------------------------------------------------

    @property
    def n_frames(self) -> int:
        return self.shape[0]

    @property
    def height(self) -> int:
        return self.shape[1]

    @property
    def width(self) -> int:
        return self.shape[2]

    def __len__(self) -> int:
        return self.n_frames

    # -- reading -----------------------------------------------------------------

    def __getitem__(self, index: int | slice) -> np.ndarray:
        """``movie[i]`` -> frame (H, W); negative i counts from the end.
        ``movie[a:b:s]`` -> (n, H, W), clipped like a list slice.
        """
        if isinstance(index, slice):
            return self._read_slice(index)
        try:
            i = operator.index(index)
        except TypeError:
            raise TypeError(
                f"a movie is indexed by frame (int) or a slice of frames, not {index!r}; "
                "index the returned array for pixels"
            ) from None
        n = self.n_frames
        if not -n <= i < n:
            raise IndexError(f"{self.path}: frame {i} out of range for a movie of {n} frames")
        self._check_open()
        return self._read_frame(i % n)

    def read(self, start: int, stop: int) -> np.ndarray:
        """Frames start..stop-1 as (stop - start, H, W); needs 0 <= start <= stop <= T."""
        start, stop = self._check_range(start, stop)
        self._check_open()
        if start == stop:
            return np.empty((0, self.height, self.width), self.dtype)
        return self._read_block(start, stop)

    def __iter__(self) -> Iterator[np.ndarray]:
        return self.iter_frames()

    def iter_frames(self, start: int = 0, stop: int | None = None) -> Iterator[np.ndarray]:
        """Frames start..stop-1 (default: all), one (H, W) array at a time, read lazily.

        The range is checked now, not at the first ``next()``.
        """
        start, stop = self._check_range(start, self.n_frames if stop is None else stop)
        return self._iter(start, stop)

    def _iter(self, start: int, stop: int) -> Iterator[np.ndarray]:
        if self._iter_block == 1:
            for i in range(start, stop):
                self._check_open()
                yield self._read_frame(i)
            return
        for first in range(start, stop, self._iter_block):
            self._check_open()
            block = self._read_block(first, min(first + self._iter_block, stop))
            for frame in block:
                self._check_open()  # once closed, nothing more, not even what was read
                yield frame

    def _read_slice(self, index: slice) -> np.ndarray:
        start, stop, step = index.indices(self.n_frames)
        if step == 1:
            return self.read(start, max(start, stop))
        frames = range(start, stop, step)
        out = np.empty((len(frames), self.height, self.width), self.dtype)
        for k, i in enumerate(frames):
            out[k] = self[i]
        return out

    def _check_range(self, start: int, stop: int) -> tuple[int, int]:
        start, stop = operator.index(start), operator.index(stop)
        if not 0 <= start <= stop <= self.n_frames:
            raise IndexError(
                f"{self.path}: frame range [{start}, {stop}) is not within "
                f"[0, {self.n_frames}] with start <= stop"
            )
        return start, stop

    def _check_open(self) -> None:
        if self._closed:
            raise MovieError(self.path, "movie is closed")

    # -- lifetime ----------------------------------------------------------------

    @property
    def closed(self) -> bool:
        return self._closed

    def close(self) -> None:
        """Release the file; further reads raise MovieError. Safe to call twice."""
        if not self._closed:
            self._closed = True
            self._close()

    def __enter__(self) -> MovieReader:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def __repr__(self) -> str:
        T, H, W = self.shape
        state = " closed" if self._closed else ""
        return (
            f"<{type(self).__name__} {str(self.path)!r} {T}x{H}x{W} {self.dtype} "
            f"fps_hz={self.fps_hz}{state}>"
        )


class FrameByFrameReader(MovieReader):
    """A reader whose format decodes one frame at a time: supply ``_read_frame(i)``."""

    @abc.abstractmethod
    def _read_frame(self, i: int) -> np.ndarray:
        """Frame i as (H, W) of ``self.dtype``."""

    def _read_block(self, start: int, stop: int) -> np.ndarray:
        out = np.empty((stop - start, self.height, self.width), self.dtype)
        for k in range(stop - start):
            out[k] = self._read_frame(start + k)
        return out
