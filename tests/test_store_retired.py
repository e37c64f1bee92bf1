"""The results file's retired_frame: written, read back, checked, absent in older files."""

import h5py
import numpy as np
import pytest

from rtcal.store import ResultsWriter, read_results, write_results
from rtcal.store.checks import ResultsWriteError

H, W = 6, 5


def _frame(w, i, k):
    z = np.zeros(k, np.float32)
    w.append_frame(index=i, traces=z, spikes=z, shift=(0, 0), t_received_ns=i, t_done_ns=i)


def test_retired_frame_round_trip_and_rules(tmp_path):
    path = tmp_path / "r.h5"
    with ResultsWriter(path, height=H, width=W, fps_hz=10.0, block_frames=4) as w:
        w.set_footprints(np.ones((2, H, W), np.float32), np.array([0, 0]))
        for i in range(5):
            _frame(w, i, 2)
        w.set_footprints(np.ones((3, H, W), np.float32), np.array([0, 0, 5]))
        w.set_retired(np.array([-1, 5]))  # component 1 from column 5
        with pytest.raises(ResultsWriteError, match="a retirement is final"):
            w.set_retired(np.array([-1, 4]))
        with pytest.raises(ResultsWriteError, match="component 2 retired at frame column 3"):
            w.set_retired(np.array([-1, 5, 3]))  # before its birth
        with pytest.raises(ResultsWriteError, match="outside"):
            w.set_retired(np.array([9, 5]))  # after the frames appended
        with pytest.raises(ResultsWriteError, match="only 3 components"):
            w.set_retired(np.array([-1, 5, -1, -1]))
        with pytest.raises(ResultsWriteError, match="1-D integer"):
            w.set_retired(np.array([-1.0, 5.0]))
        for i in range(5, 9):
            _frame(w, i, 3)
        w.set_retired(np.array([8, 5, -1]))
    r = read_results(path)
    np.testing.assert_array_equal(r.retired_frame, [8, 5, -1])
    # write_results carries it through the same writer
    write_results(tmp_path / "copy.h5", r)
    np.testing.assert_array_equal(read_results(tmp_path / "copy.h5").retired_frame, [8, 5, -1])


def test_files_without_retired_frame_read_as_all_alive(tmp_path):
    path = tmp_path / "old.h5"
    with ResultsWriter(path, height=H, width=W, fps_hz=10.0) as w:
        w.set_footprints(np.ones((2, H, W), np.float32), np.array([0, 0]))
        _frame(w, 0, 2)
    old = tmp_path / "older.h5"
    with h5py.File(path, "r") as src, h5py.File(old, "w") as dst:  # a format-1 file of before
        for key, value in src.attrs.items():
            dst.attrs[key] = value
        for name in src:
            if name != "retired_frame":
                src.copy(name, dst)
    r = read_results(old)
    np.testing.assert_array_equal(r.retired_frame, [-1, -1])
    assert r.n_components == 2 and r.complete
