"""bench/new_neuron.py's analysis: which cells are late, when each appeared, and
which are too close to the end of the movie to judge."""

import importlib.util
from argparse import Namespace
from pathlib import Path

import numpy as np

from rtcal.store import Results, write_results

BENCH = Path(__file__).resolve().parents[1] / "bench" / "new_neuron.py"


def _bench():
    spec = importlib.util.spec_from_file_location("bench_new_neuron", BENCH)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _disc(r, c, radius=4, shape=(64, 64)):
    yy, xx = np.mgrid[: shape[0], : shape[1]]
    return (np.hypot(yy - r, xx - c) <= radius).astype(np.float32)


def test_late_cells_times_arrivals_and_leaves_the_end_unjudged(tmp_path):
    T, period = 100, 20
    cells = np.stack([_disc(12, 12), _disc(12, 48), _disc(48, 12), _disc(48, 48)])
    spikes = np.zeros((4, T), np.float32)
    spikes[0, 10] = spikes[1, [50, 60]] = spikes[2, 90] = spikes[3, 40] = 1
    calcium = np.cumsum(spikes, axis=1).astype(np.float32)
    # found: cell 0 at initialisation, cell 1 at frame 65, cell 2 at rest (born 0);
    # cell 3 never; a retired component on cell 3 does not count
    est = np.stack([cells[0], cells[1], cells[2], cells[3]])
    born = np.array([0, 65, 0, 30])
    retired = np.array([-1, -1, -1, 35])
    traces = np.where(np.arange(T)[None] >= born[:, None], calcium, np.nan).astype(np.float32)
    results = Results(
        height=64, width=64, fps_hz=30.0, footprints=est, traces=traces, spikes=traces.copy(),
        born_frame=born, frame_index=np.arange(T), shifts=np.zeros((T, 2), np.float32),
        t_received_ns=np.arange(T), t_done_ns=np.arange(T), retired_frame=retired,
    )
    out = tmp_path / "r.h5"
    write_results(out, results)
    truth = {"footprints": cells, "snr": np.array([5.0, 6.0, 7.0, 8.0])}
    args = Namespace(init_frames=20, detect_every=period)
    got = _bench().late_cells(args, truth, spikes, calcium, out)
    rows = {r["cell"]: r for r in got["rows"]}
    assert sorted(rows) == [1, 2, 3]  # cell 0 first fires during initialisation
    assert (rows[1]["born"], rows[1]["delay_frames"], rows[1]["delay_periods"]) == (65, 15, 0.75)
    assert rows[1]["spikes_by_then"] == 2
    assert rows[2]["delay_frames"] == -90 and not rows[2]["judged"]  # 90 + 2 x 20 > 99
    assert rows[3]["born"] is None and rows[3]["judged"]
    s = got["summary"]
    assert (s["late_cells"], s["judged"], s["judged_within_2_periods"], s["judged_never"]) == (
        3, 2, 1, 1)
    assert (s["found"], s["found_at_rest"], s["within_1_period"]) == (2, 1, 2)
