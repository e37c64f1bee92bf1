"""How an array stored on disk maps onto a movie Y of shape (T, H, W).

The same rules hold for every format:

- (T, H, W) is read as is; the first axis is time.
- (H, W), a single image, is read as a movie of one frame.
- With more than three axes, length-1 axes are dropped, the last first, until
  three remain: (T, H, W, 1), (T, 1, H, W) and ImageJ's (T, Z=1, C=1, H, W) all
  read as (T, H, W). If more than one axis besides H and W is longer than 1
  (several channels, planes or RGB samples) the array is refused: which of them
  is time would be a guess.
- A movie needs at least one frame and H, W >= 1.
- dtype: any integer or floating-point type. bool, complex and non-numeric
  (string, object, structured) data are refused. Frames are returned in native
  byte order.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from os import PathLike

import numpy as np

from rtcal.io.movie import MovieError


@dataclass(frozen=True)
class Layout:
    """Where the movie's axes sit in a stored array.

    source_shape: the stored array's shape. shape: the movie's (T, H, W).
    frame_axis: the stored axis that indexes frames, or None for a 2-D image.
    """

    source_shape: tuple[int, ...]
    shape: tuple[int, int, int]
    frame_axis: int | None

    def key(self, start: int, stop: int) -> tuple[slice, ...]:
        """Index into the stored array for frames start..stop-1.

        The selection has the dropped length-1 axes still in it, in order, so a
        C-order reshape to (stop - start, H, W) finishes the job.
        """
        return tuple(
            slice(start, stop) if axis == self.frame_axis else slice(None)
            for axis in range(len(self.source_shape))
        )


def movie_layout(path: str | PathLike[str], source_shape: tuple[int, ...]) -> Layout:
    """Apply the module's shape rules to ``source_shape``; MovieError if it is not a movie."""
    source_shape = tuple(int(n) for n in source_shape)
    kept = list(range(len(source_shape)))
    if len(kept) < 2:
        raise MovieError(path, f"array of shape {source_shape} is not a movie: need (T, H, W)")
    while len(kept) > 3:
        singletons = [axis for axis in kept if source_shape[axis] == 1]
        if not singletons:
            raise MovieError(
                path,
                f"array of shape {source_shape} is not a movie: more than one axis besides "
                "height and width is longer than 1 (several channels or planes?); "
                "save one channel/plane as (T, H, W)",
            )
        kept.remove(singletons[-1])
    frame_axis = kept[0] if len(kept) == 3 else None
    dims = [source_shape[axis] for axis in kept]
    shape = (dims[0], dims[1], dims[2]) if frame_axis is not None else (1, dims[0], dims[1])
    if min(shape) < 1:
        raise MovieError(path, f"movie of shape {shape} (T, H, W) is empty")
    return Layout(source_shape=source_shape, shape=shape, frame_axis=frame_axis)


def movie_dtype(path: str | PathLike[str], dtype: np.dtype) -> np.dtype:
    """The native-byte-order dtype frames are returned in; MovieError unless real numeric."""
    dtype = np.dtype(dtype)
    if dtype.kind == "c":
        raise MovieError(path, f"complex dtype {dtype} is not supported: movies are real-valued")
    if dtype.kind not in "iuf":
        raise MovieError(
            path, f"dtype {dtype} is not a movie's: need integer or floating-point pixels"
        )
    return dtype.newbyteorder("=")


def fps_from_metadata(value: object) -> float | None:
    """A frame rate read from file metadata, or None unless it is one finite number > 0.

    Attributes come as Python or NumPy scalars, one-element arrays, or text;
    text is not parsed.
    """
    number = np.asarray(value)
    if number.size != 1 or number.dtype.kind not in "iuf":
        return None
    fps_hz = float(number.reshape(()))
    return fps_hz if math.isfinite(fps_hz) and fps_hz > 0 else None
