"""Multi-page TIFF movies (classic or BigTIFF, any compression tifffile decodes).

The movie is the file's first series (``tifffile.TiffFile.series[0]``): a
shaped (tifffile-written), ImageJ, OME or plain multi-page series, with the
shape rules of ``rtcal.io.layout``. Two layouts are read lazily:

- one page per frame (the usual case, compressed or not): frame i is page i,
  decoded on its own;
- one page header for a whole contiguous, uncompressed series (ImageJ's files
  over 4 GB, tifffile's ``truncate=True``): the data are memory-mapped.

tifffile does not raise on a file cut short or a broken page chain: it logs an
error and carries on with the pages it could read. rtcal turns those logged
errors, and any decoding error, into a MovieError naming the file, rather than
silently reading a shorter movie.

The frame rate comes from ImageJ metadata (``fps``, or 1 / ``finterval``) or
from tifffile's shaped metadata (``fps_hz``, as ``write_tiff`` stores it).
"""

from __future__ import annotations

import logging
import struct
import threading
import zlib
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from os import PathLike
from pathlib import Path

import numpy as np
import tifffile

from rtcal.io.array import ArrayMovieReader
from rtcal.io.layout import Layout, fps_from_metadata, movie_dtype, movie_layout
from rtcal.io.movie import FrameByFrameReader, MovieError, MovieReader

# What tifffile and its codecs raise on damaged data (TiffFileError is a ValueError).
_TIFF_READ_ERRORS = (ValueError, OSError, EOFError, RuntimeError, struct.error, zlib.error)


class _ErrorRecords(logging.Handler):
    """Collects the ERROR records tifffile logs from this thread."""

    def __init__(self) -> None:
        super().__init__(level=logging.ERROR)
        self.messages: list[str] = []
        self._thread = threading.get_ident()

    def emit(self, record: logging.LogRecord) -> None:
        if record.thread == self._thread:
            self.messages.append(record.getMessage())


@contextmanager
def tifffile_errors(path: str | PathLike[str]) -> Iterator[None]:
    """Raise MovieError(path) for what tifffile raises, or logs as an error, inside the block."""
    records = _ErrorRecords()
    logger = logging.getLogger("tifffile")
    logger.addHandler(records)
    try:
        yield
    except _TIFF_READ_ERRORS as exc:
        raise MovieError(path, f"corrupt or unreadable TIFF ({type(exc).__name__}: {exc})") from exc
    finally:
        logger.removeHandler(records)
    if records.messages:
        raise MovieError(path, f"corrupt or truncated TIFF ({records.messages[0]})")


def first_series(path: Path, tif: tifffile.TiffFile) -> tifffile.TiffPageSeries:
    """The file's first series with every page header read (so a broken chain shows now)."""
    with tifffile_errors(path):
        len(tif.pages)  # walks the whole page chain
        if not tif.series:
            raise MovieError(path, "TIFF file holds no images")
        series = tif.series[0]
        len(series.pages)
    return series


def open_tiff(path: Path) -> MovieReader:
    """Open a multi-page TIFF movie."""
    with ExitStack() as stack:
        with tifffile_errors(path):
            tif = stack.enter_context(tifffile.TiffFile(path))
        series = first_series(path, tif)
        layout = movie_layout(path, series.shape)
        dtype = movie_dtype(path, series.dtype)
        fps_hz = _fps_hz(tif)
        if len(series.pages) != layout.shape[0]:
            # The memory map needs no TiffFile: leaving the block closes it.
            return _memmapped(path, tif, series, layout, dtype, fps_hz)
        _check_page_shape(path, series, layout)
        _check_extent(path, series.pages[-1], tif.filehandle.size)
        reader = TiffPagesReader(path, tif, series, shape=layout.shape, dtype=dtype, fps_hz=fps_hz)
        stack.pop_all()  # the reader owns the file now
    return reader


class TiffPagesReader(FrameByFrameReader):
    """A TIFF movie with one page per frame; frame i is decoded from page i alone."""

    def __init__(
        self,
        path: Path,
        tif: tifffile.TiffFile,
        series: tifffile.TiffPageSeries,
        *,
        shape: tuple[int, int, int],
        dtype: np.dtype,
        fps_hz: float | None,
    ):
        super().__init__(path, shape=shape, dtype=dtype, fps_hz=fps_hz)
        self._tif = tif
        self._pages = series.pages

    def _read_frame(self, i: int) -> np.ndarray:
        page = self._pages[i]
        if page is None:  # ImageJ/OME series can name pages the file lacks
            raise MovieError(self.path, f"page of frame {i} is missing from the file")
        with tifffile_errors(self.path):
            frame = page.asarray()
        return frame.reshape(self.height, self.width).astype(self.dtype, copy=False)

    def _close(self) -> None:
        self._tif.close()


def _memmapped(
    path: Path,
    tif: tifffile.TiffFile,
    series: tifffile.TiffPageSeries,
    layout: Layout,
    dtype: np.dtype,
    fps_hz: float | None,
) -> ArrayMovieReader:
    """Frames of a contiguous uncompressed series stored behind a single page header."""
    offset = series.dataoffset
    if offset is None:
        raise MovieError(
            path,
            f"{layout.shape[0]} frames in {len(series.pages)} pages, neither one page per "
            "frame nor contiguous: this TIFF layout is not supported",
        )
    stored = series.dtype.newbyteorder(tif.byteorder)
    end = offset + stored.itemsize * int(np.prod(series.shape))
    if end > tif.filehandle.size:
        raise MovieError(
            path, f"truncated TIFF: data end at byte {end}, file has {tif.filehandle.size}"
        )
    try:
        array = np.memmap(path, dtype=stored, mode="r", offset=offset, shape=series.shape)
    except (OSError, ValueError) as exc:
        raise MovieError(path, f"cannot memory-map the TIFF's image data ({exc})") from exc
    return ArrayMovieReader(path, array, layout=layout, dtype=dtype, fps_hz=fps_hz)


def _check_page_shape(path: Path, series: tifffile.TiffPageSeries, layout: Layout) -> None:
    _, H, W = layout.shape
    if int(np.prod(series.keyframe.shape)) != H * W:
        raise MovieError(
            path, f"pages of shape {series.keyframe.shape} do not hold one ({H}, {W}) frame each"
        )


def _check_extent(path: Path, page: tifffile.TiffPage | tifffile.TiffFrame, size: int) -> None:
    """MovieError if the page's data run past the end of the file (a cut-short file)."""
    if page is None:
        raise MovieError(path, "the last frame's page is missing from the file")
    ends = [o + n for o, n in zip(page.dataoffsets, page.databytecounts, strict=False) if n]
    if ends and max(ends) > size:
        raise MovieError(
            path, f"truncated TIFF: last frame ends at byte {max(ends)}, file has {size}"
        )


def _fps_hz(tif: tifffile.TiffFile) -> float | None:
    imagej = tif.imagej_metadata or {}
    if "fps" in imagej:
        return fps_from_metadata(imagej["fps"])
    finterval = fps_from_metadata(imagej.get("finterval"))
    if finterval is not None:
        return 1.0 / finterval
    for shaped in tif.shaped_metadata or ():
        if "fps_hz" in shaped:
            return fps_from_metadata(shaped["fps_hz"])
    return None
