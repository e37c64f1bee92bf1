"""Every format rtcal.io reads gives back the movie that was written, however it is read."""

from __future__ import annotations

from pathlib import Path

import h5py
import numpy as np
import pytest
import tifffile

from rtcal.io import MovieError, MovieReader, open_movie, write_tiff
from rtcal.io.array import ArrayMovieReader
from rtcal.io.frames import FrameFilesReader
from rtcal.io.tiff import TiffPagesReader

T, H, W = 7, 12, 10


def _movie(dtype: str = "uint16") -> np.ndarray:
    """A (T, H, W) movie with every pixel distinct, so any mix-up of frames shows."""
    return (np.arange(T * H * W) % 4099).reshape(T, H, W).astype(dtype)


def _tiff_plain(tmp: Path, Y: np.ndarray) -> str:
    tifffile.imwrite(tmp / "m.tif", Y)
    return str(tmp / "m.tif")


def _tiff_zlib_bigtiff(tmp: Path, Y: np.ndarray) -> str:
    tifffile.imwrite(tmp / "m.tiff", Y, bigtiff=True, compression="zlib", predictor=True)
    return str(tmp / "m.tiff")


def _tiff_imagej(tmp: Path, Y: np.ndarray) -> str:
    # Hyperstack TZCYX with Z = C = 1: the length-1 axes are dropped.
    tifffile.imwrite(tmp / "m.tif", Y[:, None, None], imagej=True, metadata={"axes": "TZCYX"})
    return str(tmp / "m.tif")


def _tiff_imagej_one_header(tmp: Path, Y: np.ndarray) -> str:
    # One page header for the whole contiguous series, as ImageJ writes files over 4 GB.
    tifffile.imwrite(tmp / "m.tif", Y, imagej=True, truncate=True)
    return str(tmp / "m.tif")


def _tiff_big_endian(tmp: Path, Y: np.ndarray) -> str:
    tifffile.imwrite(tmp / "m.tif", Y, byteorder=">")
    return str(tmp / "m.tif")


def _tiff_written_by_rtcal(tmp: Path, Y: np.ndarray) -> str:
    write_tiff(tmp / "m.tif", (frame for frame in Y))
    return str(tmp / "m.tif")


def _frame_directory(tmp: Path, Y: np.ndarray) -> str:
    (tmp / "frames").mkdir()
    for t, frame in enumerate(Y):  # unpadded numbers: natural order is needed
        tifffile.imwrite(tmp / "frames" / f"image{t}.tif", frame)
    (tmp / "frames" / "notes.txt").write_text("not a frame")
    return str(tmp / "frames")


def _frame_glob(tmp: Path, Y: np.ndarray) -> str:
    _frame_directory(tmp, Y)
    return str(tmp / "frames" / "image*.tif")


def _hdf5_contiguous(tmp: Path, Y: np.ndarray) -> str:
    with h5py.File(tmp / "m.h5", "w") as f:
        f["scan/mov"] = Y
        f["scan/mean"] = Y.mean(axis=0)  # a 2-D dataset does not compete for auto-pick
    return str(tmp / "m.h5")


def _hdf5_chunked_gzip(tmp: Path, Y: np.ndarray) -> str:
    with h5py.File(tmp / "m.hdf5", "w") as f:
        f.create_dataset("mov", data=Y, chunks=(3, H, W), compression="gzip")
    return str(tmp / "m.hdf5")


def _hdf5_named_channel_last(tmp: Path, Y: np.ndarray) -> str:
    with h5py.File(tmp / "m.h5", "w") as f:
        f["a"] = Y
        f["b/data"] = Y[..., None]  # (T, H, W, 1)
    return str(tmp / "m.h5") + ":/b/data"


def _npy(tmp: Path, Y: np.ndarray) -> str:
    np.save(tmp / "m.npy", Y)
    return str(tmp / "m.npy")


def _npy_big_endian_channel_first(tmp: Path, Y: np.ndarray) -> str:
    np.save(tmp / "m.npy", Y[:, None].astype(Y.dtype.newbyteorder(">")))
    return str(tmp / "m.npy")


WRITERS = {
    "tiff": (_tiff_plain, TiffPagesReader),
    "tiff-zlib-bigtiff": (_tiff_zlib_bigtiff, TiffPagesReader),
    "tiff-imagej-hyperstack": (_tiff_imagej, TiffPagesReader),
    "tiff-imagej-one-header": (_tiff_imagej_one_header, ArrayMovieReader),
    "tiff-big-endian": (_tiff_big_endian, TiffPagesReader),
    "tiff-write_tiff": (_tiff_written_by_rtcal, TiffPagesReader),
    "frame-directory": (_frame_directory, FrameFilesReader),
    "frame-glob": (_frame_glob, FrameFilesReader),
    "hdf5": (_hdf5_contiguous, ArrayMovieReader),
    "hdf5-chunked-gzip": (_hdf5_chunked_gzip, ArrayMovieReader),
    "hdf5-named-4d": (_hdf5_named_channel_last, ArrayMovieReader),
    "npy": (_npy, ArrayMovieReader),
    "npy-big-endian-4d": (_npy_big_endian_channel_first, ArrayMovieReader),
}


@pytest.fixture(params=sorted(WRITERS))
def written(request, tmp_path) -> tuple[str, np.ndarray, type]:
    """(path to open, the movie written there, the reader class expected)."""
    write, reader_type = WRITERS[request.param]
    dtype = "float32" if "hdf5" in request.param else "uint16"
    Y = _movie(dtype)
    return write(tmp_path, Y), Y, reader_type


def test_shape_dtype_and_reader(written):
    path, Y, reader_type = written
    with open_movie(path) as movie:
        assert isinstance(movie, reader_type)
        assert movie.shape == (T, H, W) and len(movie) == movie.n_frames == T
        assert (movie.height, movie.width) == (H, W)
        assert movie.dtype == Y.dtype and movie.dtype.isnative


def test_frames_by_index_slice_read_and_iteration(written):
    path, Y, _ = written
    with open_movie(path) as movie:
        for t in (0, 3, T - 1, -1, -T):
            frame = movie[t]
            assert frame.shape == (H, W) and frame.dtype == Y.dtype
            np.testing.assert_array_equal(frame, Y[t])
        np.testing.assert_array_equal(movie.read(2, 6), Y[2:6])
        np.testing.assert_array_equal(movie[1:5], Y[1:5])
        np.testing.assert_array_equal(movie[::-2], Y[::-2])
        np.testing.assert_array_equal(np.stack(list(movie)), Y)
        np.testing.assert_array_equal(np.stack(list(movie.iter_frames(2, 5))), Y[2:5])
        assert movie.read(4, 4).shape == (0, H, W)


def test_frames_are_writeable_copies(written):
    path, Y, _ = written
    with open_movie(path) as movie:
        frame = movie[0]
        frame += 1
        np.testing.assert_array_equal(movie[0], Y[0])


def test_out_of_range(written):
    path, _, _ = written
    with open_movie(path) as movie:
        with pytest.raises(IndexError, match="out of range"):
            movie[T]
        with pytest.raises(IndexError):
            movie[-T - 1]
        with pytest.raises(IndexError):
            movie.read(5, T + 1)
        with pytest.raises(IndexError):
            movie.read(4, 3)
        with pytest.raises(IndexError):
            movie.iter_frames(-1)  # checked at the call, not at the first next()
        with pytest.raises(TypeError):
            movie[1.5]


def test_context_manager_closes(written):
    path, _, _ = written
    with open_movie(path) as movie:
        frames = iter(movie)
        next(frames)
    assert movie.closed
    with pytest.raises(MovieError, match="closed"):
        movie[0]
    with pytest.raises(MovieError, match="closed"):
        next(frames)
    movie.close()  # twice is fine


def test_tiff_file_handle_released_on_close(tmp_path):
    with open_movie(_tiff_plain(tmp_path, _movie())) as movie:
        handle = movie._tif.filehandle
        assert not handle.closed
    assert handle.closed


def test_hdf5_file_released_on_close(tmp_path):
    path = _hdf5_contiguous(tmp_path, _movie())
    with open_movie(path):
        pass
    with h5py.File(path, "a") as f:  # would fail while another handle holds it read-only
        f["extra"] = 1


def test_two_dimensional_image_is_one_frame(tmp_path):
    image = _movie()[2]
    np.save(tmp_path / "img.npy", image)
    tifffile.imwrite(tmp_path / "img.tif", image)
    for name in ("img.npy", "img.tif"):
        with open_movie(tmp_path / name) as movie:
            assert movie.shape == (1, H, W)
            np.testing.assert_array_equal(movie[0], image)
            np.testing.assert_array_equal(movie[-1], image)


def test_reader_is_a_movie_reader(tmp_path):
    with open_movie(_npy(tmp_path, _movie())) as movie:
        assert isinstance(movie, MovieReader)
        assert "ArrayMovieReader" in repr(movie) and f"{T}x{H}x{W}" in repr(movie)
        assert movie.fps_hz is None
