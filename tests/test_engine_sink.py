"""The engine's results writer thread records components the NMF retires."""

import numpy as np

from rtcal.engine.pipeline import FrameOutput
from rtcal.engine.sink import ResultsSink
from rtcal.metrics import truth_from_arrays
from rtcal.metrics.evaluate import evaluate
from rtcal.net.footprints import FootprintUpdate
from rtcal.store import read_results

H = W = 16


def update(footprints: np.ndarray, version: int, sequence: int) -> FootprintUpdate:
    flat = footprints.reshape(len(footprints), -1)
    rows, cols = np.nonzero(flat)
    indptr = np.r_[0, np.cumsum(np.bincount(rows, minlength=len(flat)))].astype(np.int64)
    return FootprintUpdate(version, sequence, H, W, indptr, cols.astype(np.int32),
                           flat[rows, cols].astype(np.float32),
                           np.zeros(len(flat), np.int64))


def frame(i: int, K: int, retired: np.ndarray | None) -> FrameOutput:
    c = np.full(K, 1.0 + i, np.float32)
    if retired is not None:
        c[retired] = 0
    return FrameOutput(i, c, c, np.zeros(K, np.float32), c, (0.0, 0.0), np.zeros(0, np.int64),
                       0, 1, retired=retired)


def test_retirements_reach_the_file_and_are_not_scored(tmp_path):
    path = tmp_path / "r.h5"
    sink = ResultsSink(path, height=H, width=W, fps_hz=30.0, flush_interval_s=0.2, attrs={})
    sink.start()
    fp = np.zeros((3, H, W), np.float32)
    fp[0, 2:5, 2:5] = fp[1, 8:11, 8:11] = fp[2, 2:5, 10:13] = 1.0
    sink.put_footprints(update(fp, 1, 0), refresh=False)
    for i in range(5):
        sink.put_frame(frame(i, 3, None), [])
    gone = np.array([False, True, False])
    for i in range(5, 8):
        sink.put_frame(frame(i, 3, gone), [])
    fp[1] = 0.0  # its footprint is zero from now on; the final refresh writes that
    sink.put_footprints(update(fp, 2, 7), refresh=True)
    sink.finish({})
    assert sink.n_errors == 0, sink.last_error
    r = read_results(path)
    np.testing.assert_array_equal(r.retired_frame, [-1, 5, -1])
    # scored against the two cells that are alive, the retired row is no false positive
    truth = truth_from_arrays(fp[[0, 2]], np.ones((2, r.n_frames), np.float32))
    scores = evaluate(r, truth).main
    assert (scores.n_est, scores.n_fp) == (2, 0)
