"""Anything that is not a readable movie raises MovieError naming the path and the problem."""

from __future__ import annotations

import pickle
from pathlib import Path

import h5py
import numpy as np
import pytest
import tifffile

from rtcal.errors import RtcalError
from rtcal.io import MovieError, open_movie

T, H, W = 20, 32, 32


def _movie() -> np.ndarray:
    return np.random.default_rng(0).integers(0, 4000, (T, H, W)).astype(np.uint16)


def _cut(path: Path, fraction: float) -> None:
    """Keep only the first ``fraction`` of the file's bytes, as an interrupted copy would."""
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * fraction)])


def _read_all(path: Path) -> None:
    with open_movie(path) as movie:
        for _ in movie:
            pass


def test_movie_error_is_an_rtcal_error_and_pickles():
    err = MovieError("/data/m.tif", "truncated")
    assert isinstance(err, RtcalError)
    assert str(err) == "/data/m.tif: truncated"
    again = pickle.loads(pickle.dumps(err))
    assert (again.path, again.problem, str(again)) == (err.path, err.problem, str(err))


def test_missing_file(tmp_path):
    with pytest.raises(MovieError, match="no such file") as info:
        open_movie(tmp_path / "absent.tif")
    assert "absent.tif" in str(info.value)


@pytest.mark.parametrize("name", ["movie.avi", "movie.npz", "movie"])
def test_unsupported_extension_lists_supported(tmp_path, name):
    (tmp_path / name).write_bytes(b"\x00" * 64)
    with pytest.raises(MovieError, match="unsupported") as info:
        open_movie(tmp_path / name)
    message = str(info.value)
    assert name in message and ".tif" in message and ".h5" in message and ".npy" in message


def test_dataset_given_for_a_tiff(tmp_path):
    tifffile.imwrite(tmp_path / "m.tif", _movie())
    with pytest.raises(MovieError, match="only to HDF5"):
        open_movie(tmp_path / "m.tif", dataset="/mov")


@pytest.mark.parametrize(
    "options",
    [{}, {"bigtiff": True}, {"compression": "zlib", "predictor": True}],
    ids=["plain", "bigtiff", "zlib-predictor"],
)
@pytest.mark.parametrize("fraction", [0.5, 0.9, 0.999, 0.01])
def test_truncated_tiff(tmp_path, options, fraction):
    path = tmp_path / "m.tif"
    tifffile.imwrite(path, _movie(), **options)
    _cut(path, fraction)
    with pytest.raises(MovieError, match="TIFF") as info:
        _read_all(path)  # some cuts show at open, some only when the last frame is decoded
    assert str(path) in str(info.value)


def test_truncated_single_header_tiff(tmp_path):
    path = tmp_path / "m.tif"
    tifffile.imwrite(path, _movie(), imagej=True, truncate=True)
    _cut(path, 0.5)
    with pytest.raises(MovieError, match="truncated"):
        open_movie(path)


@pytest.mark.parametrize("content", [b"", b"this is not a TIFF file at all"])
def test_not_a_tiff(tmp_path, content):
    (tmp_path / "m.tif").write_bytes(content)
    with pytest.raises(MovieError, match="m.tif"):
        open_movie(tmp_path / "m.tif")


@pytest.mark.parametrize("fraction", [0.5, 0.01])
def test_truncated_hdf5(tmp_path, fraction):
    path = tmp_path / "m.h5"
    with h5py.File(path, "w") as f:
        f["mov"] = _movie()
    _cut(path, fraction)
    with pytest.raises(MovieError, match="HDF5"):
        _read_all(path)


def test_corrupt_hdf5_chunk_raises_on_read(tmp_path):
    path = tmp_path / "m.h5"
    with h5py.File(path, "w") as f:
        dset = f.create_dataset("mov", data=_movie(), chunks=(1, H, W), compression="gzip")
        offset = dset.id.get_chunk_info(T - 1).byte_offset
    data = bytearray(path.read_bytes())
    data[offset : offset + 64] = b"\xff" * 64  # garble the last frame's compressed chunk
    path.write_bytes(bytes(data))
    with open_movie(path) as movie:
        movie[0]
        with pytest.raises(MovieError, match=r"m\.h5:/mov: cannot read frames 19"):
            movie[T - 1]


def test_truncated_npy(tmp_path):
    np.save(tmp_path / "m.npy", _movie())
    _cut(tmp_path / "m.npy", 0.5)
    with pytest.raises(MovieError, match="npy"):
        open_movie(tmp_path / "m.npy")


def test_npz_named_npy(tmp_path):
    np.savez(tmp_path / "m.npz", mov=_movie())
    (tmp_path / "m.npz").rename(tmp_path / "m.npy")
    with pytest.raises(MovieError, match="npz"):
        open_movie(tmp_path / "m.npy")


@pytest.mark.parametrize(
    ("array", "problem"),
    [
        (np.zeros((4, 8, 8), np.complex64), "complex"),
        (np.zeros((4, 8, 8), bool), "integer or floating"),
        (np.full((4, 8, 8), "a"), "integer or floating"),
        (np.zeros((4, 2, 8, 8), np.uint16), "more than one axis"),
        (np.zeros((4, 8, 8, 3), np.uint8), "more than one axis"),
        (np.zeros(8, np.uint16), "not a movie"),
        (np.zeros((0, 8, 8), np.uint16), "empty"),
    ],
    ids=["complex", "bool", "text", "two-channels", "rgb", "1-d", "no-frames"],
)
def test_not_a_movie(tmp_path, array, problem):
    np.save(tmp_path / "m.npy", array)
    with pytest.raises(MovieError, match=problem):
        open_movie(tmp_path / "m.npy")


def test_rgb_tiff_refused(tmp_path):
    tifffile.imwrite(tmp_path / "m.tif", np.zeros((4, 8, 8, 3), np.uint8), photometric="rgb")
    with pytest.raises(MovieError, match="more than one axis"):
        open_movie(tmp_path / "m.tif")


def test_empty_directory(tmp_path):
    (tmp_path / "notes.txt").write_text("no frames here")
    with pytest.raises(MovieError, match="no frame files"):
        open_movie(tmp_path)


def test_glob_without_matches(tmp_path):
    with pytest.raises(MovieError, match="no files match"):
        open_movie(str(tmp_path / "frame*.tif"))


@pytest.mark.parametrize(
    ("odd_frame", "problem"),
    [
        (np.zeros((8, 9), np.uint16), r"\(8, 9\) uint16, but the movie's frames are \(8, 8\)"),
        (np.zeros((8, 8), np.float32), r"float32, but the movie's frames are \(8, 8\) uint16"),
        (np.zeros((2, 8, 8), np.uint16), "holds 2 frames"),
    ],
    ids=["shape", "dtype", "two-frames"],
)
def test_mismatched_frame_in_directory_names_that_file(tmp_path, odd_frame, problem):
    for t in range(5):
        tifffile.imwrite(tmp_path / f"f{t}.tif", np.full((8, 8), t, np.uint16))
    tifffile.imwrite(tmp_path / "f3.tif", odd_frame)
    with open_movie(tmp_path) as movie:  # only the first file is looked at when opening
        assert movie.shape == (5, 8, 8)
        np.testing.assert_array_equal(movie[2], np.full((8, 8), 2))
        with pytest.raises(MovieError, match=problem) as info:
            list(movie)
    assert info.value.path == str(tmp_path / "f3.tif")


def test_truncated_frame_file_names_that_file(tmp_path):
    for t in range(3):
        tifffile.imwrite(tmp_path / f"f{t}.tif", np.full((64, 64), t, np.uint16))
    _cut(tmp_path / "f1.tif", 0.5)
    with open_movie(tmp_path) as movie, pytest.raises(MovieError, match="f1.tif"):
        movie[1]


def test_corrupt_compressed_page_raises_on_read(tmp_path):
    path = tmp_path / "m.tif"
    tifffile.imwrite(path, _movie(), compression="zlib")
    with tifffile.TiffFile(path) as tif:
        offset = tif.pages[5].dataoffsets[0]
    data = bytearray(path.read_bytes())
    data[offset : offset + 16] = b"\x00" * 16  # garble frame 5's deflate stream
    path.write_bytes(bytes(data))
    with open_movie(path) as movie:
        movie[4]
        with pytest.raises(MovieError, match="corrupt or unreadable TIFF"):
            movie[5]
