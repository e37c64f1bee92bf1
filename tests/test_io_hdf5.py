"""Choosing the dataset of an HDF5 movie, and its frame rate."""

from __future__ import annotations

import h5py
import numpy as np
import pytest

from rtcal.io import MovieError, open_movie


def _write(path, **datasets):
    with h5py.File(path, "w") as f:
        for name, data in datasets.items():
            f[name.replace("__", "/")] = data


def test_single_3d_dataset_is_picked(tmp_path):
    Y = np.arange(5 * 4 * 3, dtype=np.int16).reshape(5, 4, 3)
    _write(tmp_path / "m.h5", meta__mean=Y.mean(0), meta__t=np.arange(5.0), imaging__Y=Y)
    with open_movie(tmp_path / "m.h5") as movie:
        np.testing.assert_array_equal(movie.read(0, 5), Y)


def test_several_3d_datasets_are_listed(tmp_path):
    Y = np.zeros((5, 4, 3), np.uint16)
    _write(tmp_path / "m.h5", raw=Y, registered__mov=Y)
    with pytest.raises(MovieError, match="several 3-D datasets") as info:
        open_movie(tmp_path / "m.h5")
    message = str(info.value)
    assert "/raw (5, 4, 3)" in message and "/registered/mov (5, 4, 3)" in message
    assert "dataset=" in message


def test_no_3d_dataset_lists_what_there_is(tmp_path):
    _write(tmp_path / "m.h5", mean=np.zeros((4, 3)))
    with pytest.raises(MovieError, match=r"no 3-D dataset; datasets: /mean \(4, 3\)"):
        open_movie(tmp_path / "m.h5")


def test_dataset_named_by_keyword_or_path_syntax(tmp_path):
    A, B = np.zeros((5, 4, 3), np.uint16), np.ones((6, 4, 3), np.uint16)
    _write(tmp_path / "m.h5", raw=A, registered__mov=B)
    with open_movie(tmp_path / "m.h5", dataset="/registered/mov") as movie:
        assert movie.shape == (6, 4, 3)
    with open_movie(f"{tmp_path / 'm.h5'}:/raw") as movie:
        assert movie.shape == (5, 4, 3)
    with open_movie(f"{tmp_path / 'm.h5'}:registered/mov") as movie:
        assert movie.shape == (6, 4, 3)
    with pytest.raises(MovieError, match="but dataset="):
        open_movie(f"{tmp_path / 'm.h5'}:/raw", dataset="/registered/mov")


def test_named_dataset_missing_or_a_group(tmp_path):
    _write(tmp_path / "m.h5", raw=np.zeros((5, 4, 3)), group__mov=np.zeros((5, 4, 3)))
    with pytest.raises(MovieError, match=r"m\.h5:/nope: does not exist; datasets: /group/mov"):
        open_movie(tmp_path / "m.h5", dataset="/nope")
    with pytest.raises(MovieError, match="is a group"):
        open_movie(tmp_path / "m.h5", dataset="/group")


def test_two_dimensional_dataset_when_named(tmp_path):
    _write(tmp_path / "m.h5", mean=np.ones((4, 3), np.float32))
    with open_movie(tmp_path / "m.h5", dataset="mean") as movie:
        assert movie.shape == (1, 4, 3)


@pytest.mark.parametrize(
    ("where", "key", "value", "fps_hz"),
    [
        ("dataset", "fps_hz", 30.0, 30.0),
        ("file", "fps", np.float32(7.5), 7.5),
        ("dataset", "frame_rate", np.array([15]), 15.0),
        ("dataset", "fps_hz", "thirty", None),
        ("dataset", "fps_hz", -1.0, None),
        ("dataset", "unrelated", 30.0, None),
    ],
)
def test_frame_rate_from_attributes(tmp_path, where, key, value, fps_hz):
    with h5py.File(tmp_path / "m.h5", "w") as f:
        f["mov"] = np.zeros((5, 4, 3), np.uint16)
        (f["mov"] if where == "dataset" else f).attrs[key] = value
    with open_movie(tmp_path / "m.h5") as movie:
        assert movie.fps_hz == fps_hz


def test_chunked_dataset_is_iterated_a_chunk_at_a_time(tmp_path):
    Y = np.arange(10 * 4 * 3, dtype=np.float32).reshape(10, 4, 3)
    with h5py.File(tmp_path / "m.h5", "w") as f:
        f.create_dataset("mov", data=Y, chunks=(4, 4, 3), compression="gzip")
    with open_movie(tmp_path / "m.h5") as movie:
        assert movie._iter_block == 4
        np.testing.assert_array_equal(np.stack(list(movie.iter_frames(1, 10))), Y[1:])
