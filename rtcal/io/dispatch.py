"""``open_movie``: pick the reader for a path by what it is and its extension.

Format modules are imported when a file of theirs is opened, so a broken h5py
install, say, only affects HDF5 movies.
"""

from __future__ import annotations

import os
import re
from os import PathLike
from pathlib import Path

from rtcal.io.movie import MovieError, MovieReader

TIFF_SUFFIXES = (".tif", ".tiff", ".btf", ".tf8", ".tf2")
HDF5_SUFFIXES = (".h5", ".hdf5", ".hdf", ".he5")
NPY_SUFFIXES = (".npy",)
SUPPORTED = (
    f"multi-page TIFF ({', '.join(TIFF_SUFFIXES)}), "
    "a directory or glob pattern of one-frame TIFFs, "
    f"HDF5 ({', '.join(HDF5_SUFFIXES)}; FILE.h5:/dataset or dataset= names the dataset), "
    "NumPy (.npy)"
)
_GLOB_CHARS = re.compile(r"[*?\[]")
_HDF5_ENDING = "|".join(re.escape(suffix) for suffix in HDF5_SUFFIXES)
_HDF5_LOCATION = re.compile(  # "movie.h5:/path/to/dataset"
    rf"^(?P<file>.+(?:{_HDF5_ENDING})):(?P<dataset>.+)$", re.IGNORECASE
)


def open_movie(path: str | PathLike[str], *, dataset: str | None = None) -> MovieReader:
    """Open a calcium-imaging movie Y (T, H, W) for lazy, frame-by-frame reading.

    path: a multi-page TIFF; a directory of one-frame TIFFs; a glob pattern
    (``frames/*.tif``); an HDF5 file, optionally ``movie.h5:/path/to/dataset``;
    or a ``.npy`` file. dataset: the HDF5 dataset (default: the file's only 3-D
    one). See ``rtcal.io.layout`` for the accepted shapes (2-D images are one
    frame; extra length-1 axes are dropped) and dtypes.
    Raises MovieError, naming the path, for anything it cannot read as a movie.
    """
    text = os.fspath(path)
    file, dataset = _split_hdf5_location(text, dataset)
    if not file.exists() and _GLOB_CHARS.search(text):
        _refuse_dataset(text, dataset)
        from rtcal.io.frames import open_frame_glob

        return open_frame_glob(text)
    if not file.exists():
        raise MovieError(file, "no such file or directory")
    if file.is_dir():
        _refuse_dataset(file, dataset)
        from rtcal.io.frames import open_frame_directory

        return open_frame_directory(file)
    return _open_file(file, dataset)


def _open_file(file: Path, dataset: str | None) -> MovieReader:
    suffix = file.suffix.lower()
    if suffix in HDF5_SUFFIXES:
        from rtcal.io.hdf5 import open_hdf5

        return open_hdf5(file, dataset)
    _refuse_dataset(file, dataset)
    if suffix in TIFF_SUFFIXES:
        from rtcal.io.tiff import open_tiff

        return open_tiff(file)
    if suffix in NPY_SUFFIXES:
        from rtcal.io.npy import open_npy

        return open_npy(file)
    kind = suffix or "(no extension)"
    raise MovieError(file, f"unsupported movie file type {kind!r}; supported: {SUPPORTED}")


def _split_hdf5_location(text: str, dataset: str | None) -> tuple[Path, str | None]:
    """Split ``movie.h5:/a/b`` into (Path("movie.h5"), "/a/b"), unless a file has that name."""
    match = _HDF5_LOCATION.match(text)
    if match is None or Path(text).exists():
        return Path(text), dataset
    if dataset is not None and dataset != match["dataset"]:
        raise MovieError(text, f"names dataset {match['dataset']!r} but dataset={dataset!r}")
    return Path(match["file"]), match["dataset"]


def _refuse_dataset(path: str | Path, dataset: str | None) -> None:
    if dataset is not None:
        raise MovieError(path, f"dataset={dataset!r} applies only to HDF5 files")
