"""Child process for the results-file crash test (``test_store_crash.py``).

Run as ``python store_crash_child.py PATH [swmr|plain]``: writes frames to PATH
as fast as it can, forever, with components being born and refined and events
added, flushing every few frames. After each flush that reached the disk it
prints ``flushed N_FRAMES N_EVENTS FOOTPRINT_VERSION`` (stdout flushed), so the
parent knows a lower bound of what a SIGKILL must leave in the file.

Every value is a pure function of the frame column t (``expected_*`` below), so
the parent checks the file exactly without talking to the child. Mode ``plain``
(no SWMR, HDF5's default file format) exists only to measure the alternative
described in ``docs/results-format.md``.
"""

from __future__ import annotations

import sys

import numpy as np

HEIGHT, WIDTH = 16, 12
N_INITIAL = 3  # components born at column 0
BIRTH_EVERY = 10  # then one more every 10 frames
MAX_COMPONENTS = 1000
REFINE_EVERY = 20  # footprint version increases every 20 frames
EVENT_EVERY = 5


def born(k: int) -> int:
    """Frame column at which component k is born."""
    return 0 if k < N_INITIAL else BIRTH_EVERY * (k - N_INITIAL + 1)


def n_born(t: int) -> int:
    """K_t: components born at or before column t."""
    return min(MAX_COMPONENTS, N_INITIAL + t // BIRTH_EVERY)


def expected_index(t: int) -> int:
    return 2 * t + t // 7  # strictly increasing, with gaps


def expected_trace(t: int, k: np.ndarray) -> np.ndarray:
    """Exact in float32: below 2**24."""
    return ((t % 8192) * 1024 + k).astype(np.float32)


def expected_shift(t: int) -> np.ndarray:
    return np.array([(t * 0.25) % 7, -((t * 0.125) % 5)], np.float32)


def footprint_value(k: int, version: int) -> float:
    """Row k after refinement ``version``: rows with k % 3 == version % 3 change."""
    last = max((u for u in range(version + 1) if u % 3 == k % 3), default=0)
    return float(k * 1000 + last)


def expected_event(i: int) -> tuple[int, int, str, np.ndarray]:
    """(frame, t_ns, rule, neurons) of event i, fired at column EVENT_EVERY * i."""
    t = EVENT_EVERY * i
    return expected_index(t), 3 * t + 1, f"rule{t % 4}", np.arange(t % 4, dtype=np.int64)


def _footprints(k: int, version: int) -> np.ndarray:
    values = np.array([footprint_value(j, version) for j in range(k)], np.float32)
    return np.broadcast_to(values[:, None, None], (k, HEIGHT, WIDTH)).copy()


def _use_plain_hdf5() -> None:
    import h5py

    from rtcal.store import writer

    writer._create_h5 = lambda path: h5py.File(path, "w")
    writer._start_swmr = lambda f: None


def main(path: str, mode: str) -> None:
    from rtcal.store import ResultsWriter

    if mode == "plain":
        _use_plain_hdf5()
    w = ResultsWriter(
        path, height=HEIGHT, width=WIDTH, fps_hz=100.0, flush_interval_s=0.002, block_frames=8
    )
    version, k, reported = 0, 0, 0
    ks = np.arange(MAX_COMPONENTS)
    for t in range(10**9):
        if t and t % REFINE_EVERY == 0:
            version += 1
        if n_born(t) != k or t % REFINE_EVERY == 0:
            k = n_born(t)
            w.set_footprints(_footprints(k, version), np.array([born(j) for j in range(k)]))
        values = expected_trace(t, ks[:k])
        w.append_frame(
            index=expected_index(t),
            traces=values,
            spikes=-values,
            shift=expected_shift(t),
            t_received_ns=t * 1000,
            t_done_ns=t * 1000 + 500,
        )
        if t % EVENT_EVERY == 0:
            frame, t_ns, rule, neurons = expected_event(t // EVENT_EVERY)
            w.add_event(frame=frame, t_ns=t_ns, rule=rule, neurons=neurons)
        if w.n_frames_written != reported:
            reported = w.n_frames_written
            print(f"flushed {reported} {w.n_events_written} {version}", flush=True)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2] if len(sys.argv) > 2 else "swmr")
