"""One TIFF per frame: natural order, which files count, glob patterns."""

from __future__ import annotations

import numpy as np
import tifffile

from rtcal.io import open_movie
from rtcal.io.frames import natural_sort_key


def test_natural_sort_key():
    names = ["image10.tif", "image2.tif", "Image1.tif", "image0002b.tif", "a.tif", "image2a.tif"]
    assert sorted(names, key=natural_sort_key) == [
        "a.tif",
        "Image1.tif",
        "image2.tif",
        "image2a.tif",
        "image0002b.tif",
        "image10.tif",
    ]


def test_directory_frames_in_natural_order(tmp_path):
    for t in (1, 2, 9, 10, 11, 100):
        tifffile.imwrite(tmp_path / f"image{t}.tif", np.full((3, 4), t, np.uint16))
    tifffile.imwrite(tmp_path / "._image5.tif", np.zeros((3, 4), np.uint16))  # macOS litter
    (tmp_path / "image3.json").write_text("{}")
    (tmp_path / "sub.tif").mkdir()
    with open_movie(tmp_path) as movie:
        assert [int(frame[0, 0]) for frame in movie] == [1, 2, 9, 10, 11, 100]
        assert [f.name for f in movie.files][:3] == ["image1.tif", "image2.tif", "image9.tif"]


def test_glob_pattern_selects_and_orders(tmp_path):
    for t in (3, 20, 100):
        tifffile.imwrite(tmp_path / f"ch1_{t}.tiff", np.full((3, 4), t, np.float32))
        tifffile.imwrite(tmp_path / f"ch2_{t}.tiff", np.full((3, 4), -t, np.float32))
    with open_movie(str(tmp_path / "ch1_*.tiff")) as movie:
        assert movie.shape == (3, 3, 4) and movie.dtype == np.float32
        np.testing.assert_array_equal(movie[:][:, 0, 0], [3, 20, 100])
        assert movie.fps_hz is None
