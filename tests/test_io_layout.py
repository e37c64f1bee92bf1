"""The shape rules shared by every format (rtcal.io.layout)."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rtcal.io import MovieError
from rtcal.io.array import ArrayMovieReader
from rtcal.io.layout import fps_from_metadata, movie_dtype, movie_layout


@settings(max_examples=60, deadline=None)
@given(
    dims=st.tuples(*[st.integers(2, 5)] * 3),
    singletons=st.lists(st.integers(0, 3), max_size=3),
    start=st.integers(0, 4),
)
def test_length_one_axes_anywhere_read_as_the_movie(dims, singletons, start):
    Y = np.arange(np.prod(dims), dtype=np.float32).reshape(dims)
    stored = Y
    for position in singletons:  # insert length-1 axes at arbitrary places
        stored = np.expand_dims(stored, min(position, stored.ndim))
    layout = movie_layout("m", stored.shape)
    assert layout.shape == dims
    movie = ArrayMovieReader("m", stored, layout=layout, dtype=stored.dtype)
    start = min(start, dims[0] - 1)
    np.testing.assert_array_equal(movie.read(start, dims[0]), Y[start:])
    np.testing.assert_array_equal(movie[-1], Y[-1])


@pytest.mark.parametrize(
    ("shape", "movie_shape"),
    [
        ((5, 4), (1, 5, 4)),
        ((1, 5, 4), (1, 5, 4)),
        ((1, 1, 5, 4), (1, 5, 4)),
        ((3, 5, 1), (3, 5, 1)),
    ],
)
def test_small_shapes(shape, movie_shape):
    assert movie_layout("m", shape).shape == movie_shape


def test_dtypes():
    assert movie_dtype("m", np.dtype(">f4")) == np.dtype("=f4")
    assert movie_dtype("m", np.dtype(np.int8)) == np.int8
    for bad in (np.complex128, np.bool_, np.object_, np.dtype("datetime64[s]"), np.dtype("U3")):
        with pytest.raises(MovieError):
            movie_dtype("m", np.dtype(bad))


def test_fps_from_metadata():
    assert fps_from_metadata(30) == 30.0
    assert fps_from_metadata(np.array([7.5])) == 7.5
    for bad in (None, "30", b"30", 0, -5.0, float("nan"), float("inf"), [1, 2], True):
        assert fps_from_metadata(bad) is None
