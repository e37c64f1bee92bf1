"""SIGKILL a process that is writing a results file; the file must stay readable.

The child (``store_crash_child.py``) appends frames, grows K, refines footprints
and adds events as fast as it can, flushing every few frames and reporting each
flush on stdout. The parent kills it at a random moment and checks that
``read_results`` opens the file, that it says ``complete=False``, that it holds
at least what the child reported flushed, and that every value is exactly what
was written.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import h5py
import numpy as np
import pytest
import store_crash_child as child

from rtcal.store import Results, read_results

CHILD = Path(__file__).with_name("store_crash_child.py")
N_TRIALS = 12


def kill_during_writes(path: Path, mode: str, delay_s: float) -> tuple[int, int, int]:
    """Start the child, SIGKILL it ``delay_s`` after its first flush.

    Returns (frames, events, footprint version) from its last "flushed" line.
    """
    proc = subprocess.Popen(
        [sys.executable, str(CHILD), str(path), mode],
        stdout=subprocess.PIPE,
        text=True,
        cwd=CHILD.parent,
    )
    try:
        first = proc.stdout.readline()
        assert first.startswith("flushed"), f"child did not start: {first!r}"
        time.sleep(delay_s)
        os.kill(proc.pid, signal.SIGKILL)
        rest = proc.stdout.read()
    finally:
        proc.kill()
        proc.wait()
        proc.stdout.close()
    assert proc.returncode == -signal.SIGKILL
    last = [line for line in (first + rest).splitlines() if line.startswith("flushed")][-1]
    n_frames, n_events, version = (int(x) for x in last.split()[1:])
    return n_frames, n_events, version


def check_against_child(r: Results, n_frames: int, n_events: int, version: int) -> None:
    """Exact check of a killed child's file against the child's formulas."""
    assert not r.complete
    t_n, k_n = r.n_frames, r.n_components
    assert t_n >= n_frames
    assert k_n >= child.n_born(n_frames - 1)
    assert len(r.events) >= n_events
    ts = np.arange(t_n)
    np.testing.assert_array_equal(r.frame_index, [child.expected_index(t) for t in ts])
    np.testing.assert_array_equal(r.shifts, [child.expected_shift(t) for t in ts])
    np.testing.assert_array_equal(r.t_received_ns, ts * 1000)
    np.testing.assert_array_equal(r.t_done_ns, ts * 1000 + 500)
    np.testing.assert_array_equal(r.born_frame, [child.born(k) for k in range(k_n)])
    ks = np.arange(k_n)
    expected = np.stack([child.expected_trace(t, ks) for t in ts], axis=1).reshape(k_n, t_n)
    expected[r.born_frame[:, None] > ts[None, :]] = np.nan
    np.testing.assert_array_equal(r.traces, expected)
    np.testing.assert_array_equal(r.spikes, -expected)
    for k in range(k_n):  # uniform rows, at least as refined as at the last flush
        row = r.footprints[k]
        assert (row == row.flat[0]).all()
        assert row.flat[0] >= child.footprint_value(k, version) or k >= child.n_born(n_frames - 1)
        assert (row.flat[0] - k * 1000) % 3 == k % 3 or row.flat[0] == k * 1000
    for i in range(len(r.events)):
        frame, t_ns, rule, neurons = child.expected_event(i)
        assert (r.events.frame[i], r.events.t_ns[i], r.events.rule[i]) == (frame, t_ns, rule)
        np.testing.assert_array_equal(r.events.neurons[i], neurons)


@pytest.mark.slow
def test_sigkill_leaves_readable_file_with_everything_flushed(tmp_path):
    rng = np.random.default_rng(0)
    for trial in range(N_TRIALS):
        path = tmp_path / f"killed_{trial}.h5"
        flushed = kill_during_writes(path, "swmr", float(rng.uniform(0.0, 0.5)))
        check_against_child(read_results(path), *flushed)
        with h5py.File(path, "r", swmr=True) as f:  # h5py alone, as documented
            assert not f.attrs["complete"] and f["frames/index"].shape[0] >= flushed[0]
