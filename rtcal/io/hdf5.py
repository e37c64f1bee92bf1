"""HDF5 movies: one dataset of a file, read by hyperslab.

The dataset is named with ``dataset=`` (or ``movie.h5:/path`` in ``open_movie``).
Without a name, the file's single 3-D dataset is used; none or several is an
error that lists the candidates. The frame rate is taken from an ``fps_hz``,
``fps`` or ``frame_rate`` attribute (in Hz) of the dataset, else of the file.
"""

from __future__ import annotations

from contextlib import ExitStack
from pathlib import Path

import h5py

from rtcal.io.array import ArrayMovieReader
from rtcal.io.layout import Layout, fps_from_metadata, movie_dtype, movie_layout
from rtcal.io.movie import MovieError

FPS_ATTRIBUTES = ("fps_hz", "fps", "frame_rate")
_ITER_BLOCK_BYTES = 32 * 2**20  # most bytes iteration reads at once from a chunked dataset
_MAX_LISTED = 20  # datasets named in an error message


def open_hdf5(path: Path, dataset: str | None = None) -> ArrayMovieReader:
    """Open one dataset of an HDF5 file as a movie; the file stays open until close()."""
    with ExitStack() as stack:
        try:
            file = stack.enter_context(h5py.File(path, "r"))
        except OSError as exc:  # not HDF5, truncated, unreadable
            raise MovieError(path, f"not a readable HDF5 file ({exc})") from exc
        data = _pick_dataset(path, file, dataset)
        location = f"{path}:{data.name}"
        layout = movie_layout(location, data.shape)
        reader = ArrayMovieReader(
            path,
            data,
            layout=layout,
            dtype=movie_dtype(location, data.dtype),
            fps_hz=_fps_hz(data) or _fps_hz(file),
            location=location,
            on_close=file.close,
            iter_block=_iter_block(data, layout),
        )
        stack.pop_all()  # the reader owns the file now
    return reader


def _pick_dataset(path: Path, file: h5py.File, name: str | None) -> h5py.Dataset:
    """The dataset called ``name``, or the file's only 3-D dataset when name is None."""
    if name is not None:
        return _named_dataset(path, file, name)
    datasets = _all_datasets(file)
    movies = [d for d in datasets if d.ndim == 3]
    if len(movies) == 1:
        return movies[0]
    hint = "name one with FILE.h5:/path/to/dataset or dataset="
    if not movies:
        raise MovieError(path, f"no 3-D dataset; datasets: {_describe(datasets)}; {hint}")
    raise MovieError(path, f"several 3-D datasets: {_describe(movies)}; {hint}")


def _named_dataset(path: Path, file: h5py.File, name: str) -> h5py.Dataset:
    found = file.get(name)
    if isinstance(found, h5py.Dataset):
        return found
    problem = "is a group, not a dataset" if found is not None else "does not exist"
    raise MovieError(f"{path}:{name}", f"{problem}; datasets: {_describe(_all_datasets(file))}")


def _all_datasets(file: h5py.File) -> list[h5py.Dataset]:
    found: list[h5py.Dataset] = []

    def visit(_name: str, obj: object) -> None:
        if isinstance(obj, h5py.Dataset):
            found.append(obj)

    file.visititems(visit)
    return found


def _describe(datasets: list[h5py.Dataset]) -> str:
    if not datasets:
        return "(none)"
    listed = [f"{d.name} {d.shape} {d.dtype}" for d in datasets[:_MAX_LISTED]]
    more = len(datasets) - len(listed)
    return ", ".join(listed) + (f" and {more} more" if more else "")


def _fps_hz(obj: h5py.HLObject) -> float | None:
    for key in FPS_ATTRIBUTES:
        if key in obj.attrs:
            return fps_from_metadata(obj.attrs[key])
    return None


def _iter_block(data: h5py.Dataset, layout: Layout) -> int:
    """Frames per read when iterating: one chunk's length in time, within a memory cap."""
    if data.chunks is None or layout.frame_axis is None:
        return 1
    _, H, W = layout.shape
    most = max(1, _ITER_BLOCK_BYTES // (H * W * data.dtype.itemsize))
    return min(data.chunks[layout.frame_axis], most)
