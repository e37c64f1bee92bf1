"""Movies stored one TIFF file per frame: a directory of TIFFs, or a glob pattern.

Files are put in natural order (``image2.tif`` before ``image10.tif``). Opening
reads only the first file's header: its frame shape and dtype become the
movie's. Every later file is opened when its frame is read, and one that holds
anything but a single frame of that shape and dtype raises MovieError naming it.
In a directory, files other than ``*.tif``/``*.tiff`` and hidden files (such
as macOS ``._name.tif``) are ignored. The frame rate is unknown (None).
"""

from __future__ import annotations

import glob
import re
from pathlib import Path

import numpy as np
import tifffile

from rtcal.io.layout import movie_dtype, movie_layout
from rtcal.io.movie import FrameByFrameReader, MovieError, MovieReader
from rtcal.io.tiff import first_series, tifffile_errors

_DIGITS = re.compile(r"(\d+)")
_FRAME_SUFFIXES = (".tif", ".tiff")


def natural_sort_key(name: str) -> tuple[tuple[int, int | str], ...]:
    """Sort key that orders digit runs by value: "image2" < "image10" < "Image11".

    Text compares case-insensitively; ties between names that differ only in
    case or leading zeros keep a fixed order through the exact name at the end.
    """
    parts = _DIGITS.split(name)
    # split() alternates text, digits, text, ...: tag each so int never meets str.
    key = tuple((1, int(p)) if i % 2 else (0, p.lower()) for i, p in enumerate(parts))
    return (*key, (0, name))


def open_frame_directory(path: Path) -> FrameFilesReader:
    """Every TIFF in directory ``path``, one frame each, in natural order."""
    files = [
        f
        for f in path.iterdir()
        if f.suffix.lower() in _FRAME_SUFFIXES and not f.name.startswith(".") and f.is_file()
    ]
    if not files:
        raise MovieError(path, "directory holds no frame files (*.tif, *.tiff)")
    return FrameFilesReader(path, sorted(files, key=lambda f: natural_sort_key(f.name)))


def open_frame_glob(pattern: str) -> FrameFilesReader:
    """The files matching glob ``pattern`` (``**`` recurses), one frame each, in natural order."""
    files = [Path(f) for f in glob.glob(pattern, recursive=True) if Path(f).is_file()]
    if not files:
        raise MovieError(pattern, "no files match this pattern")
    return FrameFilesReader(pattern, sorted(files, key=lambda f: natural_sort_key(str(f))))


class FrameFilesReader(FrameByFrameReader):
    """A movie whose frame i is the single image in ``files[i]``.

    path: the directory or glob pattern the files came from (for messages).
    """

    def __init__(self, path: str | Path, files: list[Path]):
        self.files = list(files)
        (height, width), dtype = _frame_header(self.files[0])
        super().__init__(path, shape=(len(self.files), height, width), dtype=dtype, fps_hz=None)

    def _read_frame(self, i: int) -> np.ndarray:
        file = self.files[i]
        with tifffile_errors(file), tifffile.TiffFile(file) as tif:
            series = first_series(file, tif)
            _check_same_frame(file, series, self)
            frame = series.asarray()
        return frame.reshape(self.height, self.width).astype(self.dtype, copy=False)

    def _close(self) -> None:
        pass  # each file is closed as soon as its frame is read


def _frame_header(file: Path) -> tuple[tuple[int, int], np.dtype]:
    """(H, W) and dtype of the single frame in ``file``, from its header alone."""
    with tifffile_errors(file), tifffile.TiffFile(file) as tif:
        series = first_series(file, tif)
        _, H, W = _single_frame_shape(file, series)
        return (H, W), movie_dtype(file, series.dtype)


def _single_frame_shape(file: Path, series: tifffile.TiffPageSeries) -> tuple[int, int, int]:
    shape = movie_layout(file, series.shape).shape
    if shape[0] != 1:
        raise MovieError(file, f"holds {shape[0]} frames; a frame directory needs one per file")
    return shape


def _check_same_frame(file: Path, series: tifffile.TiffPageSeries, movie: MovieReader) -> None:
    _, H, W = _single_frame_shape(file, series)
    dtype = movie_dtype(file, series.dtype)
    if (H, W) != (movie.height, movie.width) or dtype != movie.dtype:
        raise MovieError(
            file,
            f"frame is ({H}, {W}) {dtype}, but the movie's frames are "
            f"({movie.height}, {movie.width}) {movie.dtype} (from the first file)",
        )
