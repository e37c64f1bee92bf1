"""TIFF specifics: frame-rate metadata, write_tiff, and the real Neurofinder movie."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import tifffile

from rtcal.io import MovieError, open_movie, write_tiff

REAL = Path("/work/shared/data/real/neurofinder_subset")
REAL_MOVIE = REAL / "movie_crop_r224_c64_256x256_600f.tif"  # read in place, never copied


@pytest.mark.skipif(not REAL_MOVIE.exists(), reason="real Neurofinder movie not available")
def test_real_neurofinder_movie():
    with open_movie(REAL_MOVIE) as movie:  # 600 zlib+predictor pages
        assert movie.shape == (600, 256, 256) and movie.dtype == np.uint16
        assert movie[3].mean() == tifffile.imread(REAL_MOVIE, key=3).mean()
        np.testing.assert_array_equal(movie[-1], tifffile.imread(REAL_MOVIE, key=599))
        assert movie.fps_hz is None  # the file does not record it


@pytest.mark.parametrize(
    ("metadata", "fps_hz"),
    [({"finterval": 0.125}, 8.0), ({"fps": 30.0}, 30.0), ({}, None)],
)
def test_imagej_frame_rate(tmp_path, metadata, fps_hz):
    Y = np.zeros((4, 5, 6), np.uint16)
    tifffile.imwrite(tmp_path / "m.tif", Y, imagej=True, metadata={"axes": "TYX", **metadata})
    with open_movie(tmp_path / "m.tif") as movie:
        assert movie.fps_hz == fps_hz


@pytest.mark.parametrize("dtype", [np.uint16, np.float32])
def test_write_tiff_round_trip_with_frame_rate(tmp_path, dtype):
    Y = np.random.default_rng(1).uniform(0, 1000, (6, 9, 11)).astype(dtype)
    n = write_tiff(tmp_path / "m.tif", (frame for frame in Y), fps_hz=12.5)
    assert n == 6
    with tifffile.TiffFile(tmp_path / "m.tif") as tif:  # one page per frame, one (T, H, W) series
        assert len(tif.pages) == 6 and tif.series[0].shape == (6, 9, 11)
        assert tif.is_bigtiff  # a generator has no length: BigTIFF in case it is long
    with open_movie(tmp_path / "m.tif") as movie:
        assert movie.fps_hz == 12.5 and movie.dtype == dtype
        np.testing.assert_array_equal(movie.read(0, 6), Y)


def test_write_tiff_bigtiff_choice(tmp_path):
    Y = np.zeros((3, 4, 5), np.uint16)
    write_tiff(tmp_path / "small.tif", list(Y))
    write_tiff(tmp_path / "forced.tif", list(Y), bigtiff=True)
    write_tiff(tmp_path / "classic.tif", iter(Y), bigtiff=False)
    for name, big in [("small", False), ("forced", True), ("classic", False)]:
        with tifffile.TiffFile(tmp_path / f"{name}.tif") as tif:
            assert tif.is_bigtiff == big, name


def test_write_tiff_refuses_bad_frames(tmp_path):
    with pytest.raises(MovieError, match="no frames"):
        write_tiff(tmp_path / "empty.tif", [])
    with pytest.raises(MovieError, match=r"frames must be \(H, W\)"):
        write_tiff(tmp_path / "3d.tif", [np.zeros((2, 3, 4), np.uint16)])
    with pytest.raises(MovieError, match="complex"):
        write_tiff(tmp_path / "c.tif", [np.zeros((3, 4), complex)])
    with pytest.raises(MovieError, match="fps_hz"):
        write_tiff(tmp_path / "f.tif", [np.zeros((3, 4), np.uint16)], fps_hz=0)
    frames = [np.zeros((3, 4), np.uint16), np.ones((3, 4), np.uint16), np.ones((3, 5), np.uint16)]
    with pytest.raises(MovieError, match=r"frame 2 is \(3, 5\) uint16.*holds frames 0..1"):
        write_tiff(tmp_path / "odd.tif", frames)
    with open_movie(tmp_path / "odd.tif") as movie:  # what was written before stays readable
        assert movie.shape == (2, 3, 4)


def test_write_tiff_converts_byte_order(tmp_path):
    Y = np.arange(24, dtype=">u2").reshape(2, 3, 4)
    write_tiff(tmp_path / "m.tif", Y)
    with open_movie(tmp_path / "m.tif") as movie:
        assert movie.dtype == np.dtype("=u2")
        np.testing.assert_array_equal(movie.read(0, 2), Y)
