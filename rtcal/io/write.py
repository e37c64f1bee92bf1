"""Stream frames into a multi-page TIFF, one uncompressed page per frame.

Frames are written as they arrive, so a movie of any length is written in the
memory of one frame. The file is a tifffile "shaped" series of shape (T, H, W)
that ``open_movie`` (and ImageJ/Fiji, through Bio-Formats for BigTIFF) reads
back; the frame rate, when given, is stored in its metadata as ``fps_hz``.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Sized
from os import PathLike

import numpy as np
import tifffile

from rtcal.io.layout import fps_from_metadata, movie_dtype
from rtcal.io.movie import MovieError

# Classic TIFF addresses 4 GiB; keep room for one page header (IFD) per frame.
_CLASSIC_TIFF_BYTES = 2**32 - 2**24
_IFD_BYTES = 512


def write_tiff(
    path: str | PathLike[str],
    frames: Iterable[np.ndarray],
    *,
    bigtiff: bool | None = None,
    fps_hz: float | None = None,
) -> int:
    """Write frames, each (H, W) of one integer or float dtype (uint16, float32, ...).

    bigtiff: None decides from ``len(frames) * frame bytes`` when ``frames`` has a
    length, and writes BigTIFF when it has none (a generator may run past 4 GiB).
    fps_hz: frame rate to record in the file, or None.
    Returns the number of frames written. A frame whose shape or dtype differs
    from the first raises MovieError; the file then holds the frames before it.
    """
    if fps_hz is not None and fps_from_metadata(fps_hz) is None:
        raise MovieError(path, f"fps_hz must be a finite number > 0, got {fps_hz!r}")
    frames_iter = iter(frames)
    first = next(frames_iter, None)
    if first is None:
        raise MovieError(path, "no frames to write: a TIFF needs at least one")
    first = _checked_frame(path, 0, np.asarray(first), None)
    if bigtiff is None:
        bigtiff = _needs_bigtiff(frames, first)
    metadata = {} if fps_hz is None else {"fps_hz": float(fps_hz)}
    n_frames = 0
    with tifffile.TiffWriter(path, bigtiff=bigtiff) as tiff:
        for frame in itertools.chain([first], frames_iter):
            frame = _checked_frame(path, n_frames, np.asarray(frame), first)
            # contiguous=True appends each page to one (T, H, W) series.
            tiff.write(frame, contiguous=True, metadata=metadata)
            n_frames += 1
    return n_frames


def _checked_frame(
    path: str | PathLike[str], index: int, frame: np.ndarray, first: np.ndarray | None
) -> np.ndarray:
    """``frame`` as a C-contiguous native-byte-order (H, W) array matching ``first``."""
    if frame.ndim != 2:
        raise MovieError(path, f"frame {index} has shape {frame.shape}; frames must be (H, W)")
    frame = np.ascontiguousarray(frame, dtype=movie_dtype(path, frame.dtype))
    if first is not None and (frame.shape, frame.dtype) != (first.shape, first.dtype):
        raise MovieError(
            path,
            f"frame {index} is {frame.shape} {frame.dtype}, but frame 0 was "
            f"{first.shape} {first.dtype}; the file holds frames 0..{index - 1}",
        )
    return frame


def _needs_bigtiff(frames: Iterable[np.ndarray], first: np.ndarray) -> bool:
    if not isinstance(frames, Sized):
        return True
    return len(frames) * (first.nbytes + _IFD_BYTES) > _CLASSIC_TIFF_BYTES
