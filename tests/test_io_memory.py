"""Streaming stays in the memory of a few frames, however long the movie."""

from __future__ import annotations

import tracemalloc
from collections.abc import Callable

import h5py
import numpy as np
import pytest

from rtcal.io import open_movie, write_tiff

T, H, W = 200, 256, 256
MOVIE_BYTES = T * H * W * 2  # uint16: 26 MB
FRAME_BYTES = H * W * 2


def _frames():
    """The movie as a generator, so writing never holds it whole either."""
    rng = np.random.default_rng(0)
    base = rng.integers(0, 1000, (H, W), dtype=np.uint16)
    for t in range(T):
        yield base + np.uint16(t)


def _peak_bytes(work: Callable[[], object]) -> int:
    tracemalloc.start()
    try:
        work()
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def _iterate(path, **kwargs) -> Callable[[], None]:
    def work() -> None:
        with open_movie(path, **kwargs) as movie:
            offsets = [int(frame[0, 0]) for frame in movie]  # frame t is frame 0 + t
            assert offsets == list(range(offsets[0], offsets[0] + T))

    return work


@pytest.fixture(scope="module")
def tiff_path(tmp_path_factory):
    path = tmp_path_factory.mktemp("io_memory") / "long.tif"
    peak = _peak_bytes(lambda: write_tiff(path, _frames()))
    assert peak < MOVIE_BYTES / 10, f"write_tiff peaked at {peak} bytes"
    return path


def test_tiff_iteration_reads_frame_by_frame(tiff_path):
    assert tiff_path.stat().st_size > MOVIE_BYTES
    peak = _peak_bytes(_iterate(tiff_path))
    assert peak < MOVIE_BYTES / 10, f"iterating peaked at {peak} bytes"


def test_npy_iteration_reads_frame_by_frame(tmp_path):
    Y = np.lib.format.open_memmap(tmp_path / "long.npy", "w+", np.uint16, (T, H, W))
    for t, frame in enumerate(_frames()):
        Y[t] = frame
    Y.flush()
    del Y
    peak = _peak_bytes(_iterate(tmp_path / "long.npy"))
    assert peak < MOVIE_BYTES / 10, f"iterating peaked at {peak} bytes"


def test_hdf5_iteration_reads_a_chunk_at_a_time(tmp_path):
    with h5py.File(tmp_path / "long.h5", "w") as f:
        data = f.create_dataset("mov", (T, H, W), np.uint16, chunks=(8, H, W))
        for t, frame in enumerate(_frames()):
            data[t] = frame
    peak = _peak_bytes(_iterate(tmp_path / "long.h5"))
    assert peak < 3 * 8 * FRAME_BYTES, f"iterating peaked at {peak} bytes"
