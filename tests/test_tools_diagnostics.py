"""Developer diagnostics in tools/: they run and report what they claim."""

import subprocess
import sys
from pathlib import Path

import numpy as np

from rtcal.sim import make_config, write_simulation
from rtcal.store import ResultsWriter

TOOLS = Path(__file__).resolve().parents[1] / "tools"


def _run(*args: str) -> str:
    done = subprocess.run([sys.executable, *args], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_missed_cells_lists_exactly_the_cells_left_out(tmp_path):
    cfg = make_config("2p", height=64, width=64, n_frames=30, n_neurons=6, seed=4,
                      radius_min_px=3.5, radius_max_px=5)
    paths = write_simulation(tmp_path / "sim", cfg)
    truth = np.load(paths.truth)
    kept = [0, 1, 3, 5]  # cells 2 and 4 are "missed"
    out = tmp_path / "r.h5"
    with ResultsWriter(out, height=64, width=64, fps_hz=cfg.fps_hz) as w:
        born = np.zeros(len(kept), np.int64)
        w.set_footprints(truth["footprints"][kept].astype(np.float32), born)
        for t in range(5):
            w.append_frame(index=t, traces=np.zeros(len(kept), np.float32),
                           spikes=np.zeros(len(kept), np.float32), shift=(0, 0),
                           t_received_ns=0, t_done_ns=0)
    text = _run(str(TOOLS / "missed_cells.py"), str(out), str(paths.truth))
    assert text.startswith("4 of 6 cells found")
    rows = [line.split("|")[1].strip() for line in text.splitlines() if line.startswith("| ")]
    assert rows[0] == "cell" and rows[2:] == ["2", "4"]
    assert "best IoU" in text and "resting contrast, missed" in text


def test_gc_pause_times_full_collections_before_and_after_the_freeze():
    text = _run(str(TOOLS / "gc_pause.py"), "--repeat", "2")
    lines = {line.split("|")[1].strip(): line for line in text.splitlines() if line.startswith("|")}
    before = float(lines["as imported"].split("|")[2])
    frozen = next(v for k, v in lines.items() if k.startswith("frozen"))
    assert before > float(frozen.split("|")[2])  # frozen: nothing left to walk
    assert int(text.split(":")[1].split()[0]) > 10_000  # objects tracked after the imports


def test_false_positives_names_each_kind(tmp_path):
    from scipy import ndimage

    cfg = make_config("2p", height=64, width=64, n_frames=30, n_neurons=6, seed=4,
                      radius_min_px=3.5, radius_max_px=5)
    paths = write_simulation(tmp_path / "sim", cfg)
    A = np.load(paths.truth)["footprints"].astype(np.float32)  # (6, 64, 64)
    masks = A >= 0.2 * A.max(axis=(1, 2), keepdims=True)
    duplicate = np.roll(A[0], 3, axis=1)  # cell 0 again, 3 px off; the exact copy wins it
    small = np.where(A[5] >= 0.8 * A[5].max(), A[5], 0)  # the core of cell 5 only
    large = ndimage.binary_dilation(masks[2], iterations=4).astype(np.float32)
    empty = np.unravel_index(np.argmin(ndimage.uniform_filter(A.sum(0), 15)), (64, 64))
    yy, xx = np.mgrid[:64, :64]
    blob = (np.hypot(yy - empty[0], xx - empty[1]) <= 3).astype(np.float32)
    footprints = np.stack([A[0], A[1], A[3], duplicate, small, large, blob])
    out = tmp_path / "r.h5"
    with ResultsWriter(out, height=64, width=64, fps_hz=cfg.fps_hz) as w:
        w.set_footprints(footprints, np.zeros(len(footprints), np.int64))
        w.append_frame(index=0, traces=np.zeros(len(footprints), np.float32),
                       spikes=np.zeros(len(footprints), np.float32), shift=(0, 0),
                       t_received_ns=0, t_done_ns=0)
    text = _run(str(TOOLS / "false_positives.py"), str(out), str(paths.truth))
    assert text.startswith("4 false positives of 7 components (6 true cells)")
    rows = [line.split("|") for line in text.splitlines() if line.startswith("| ")][2:]
    got = {int(r[1]): (int(r[4]), r[9].strip()) for r in rows}
    assert got == {3: (0, "duplicate"), 4: (5, "too small"), 5: (2, "too large"),
                   6: (got[6][0], "no cell")}
    assert "kinds: " in text


def test_extractions_reports_every_search_extraction_and_tallies_them(tmp_path):
    """tools/extractions.py on a small simulated movie: one row per extraction of
    the residual search, the verdicts as the search gave them (accepted at r >=
    0.875, refused below it, the soma gate's before r is computed), and the
    summary's counts recomputed from those rows."""
    cfg = make_config("2p", height=96, width=96, n_frames=500, n_neurons=12, seed=5)
    write_simulation(tmp_path / "sim", cfg)
    config = tmp_path / "c.toml"
    config.write_text("init_frames = 100\n")
    text = _run(str(TOOLS / "extractions.py"), str(tmp_path / "sim"), "--config",
                str(config), "--rows")
    n = int(text.splitlines()[0].split(":")[1].split()[0])
    rows = [line.split("|")[1:-1] for line in text.splitlines()
            if line.startswith("| sim |")]
    assert n == len(rows) >= 5
    verdict = [r[4].strip() for r in rows]
    corr = np.array([float(r[5]) for r in rows])
    iou = np.array([float(r[8]) for r in rows])
    assert ((iou >= 0) & (iou <= 1)).all() and (iou >= 0.5).any()
    for v, r in zip(verdict, corr, strict=True):
        if v == "accepted":
            assert r >= 0.875
        elif v == "space correlation":
            assert r < 0.875
        else:
            assert v.startswith(("area", "elongation", "nothing")) and np.isnan(r)
    table = {line.split("|")[1].strip(): line.split("|")[2:4] for line in text.splitlines()
             if line.startswith("| ") and line.count("|") == 4}
    kinds = [v.split(" ")[0] if v.startswith(("area", "elongation")) else v for v in verdict]
    for kind in set(kinds):
        of_kind = np.array([k == kind for k in kinds])
        assert int(table[kind][0]) == int((of_kind & (iou >= 0.5)).sum())
        assert int(table[kind][1]) == int((of_kind & (iou < 0.3)).sum())
    refused = (np.array(verdict) == "space correlation") & (iou >= 0.5)
    assert f"true extractions refused for r < 0.875: {refused.sum()} of" in text
