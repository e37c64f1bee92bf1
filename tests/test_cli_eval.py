"""``rtcal eval``: results file + truth file -> table on stdout, JSON on request."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import pytest

from rtcal.cli import evaluate as cli_eval
from rtcal.errors import RtcalError
from rtcal.store import read_results, write_results
from rtcal.store.results import Results

H, W, T = 64, 80, 60
REGIONS = Path("/work/shared/data/real/neurofinder_subset/regions_crop.json")


def parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="rtcal")
    sub = parser.add_subparsers(dest="command")
    cli_eval.add_parser(sub, "eval", "score a results file")
    return parser.parse_args(["eval", *argv])


def cells(centres, h: int = H, w: int = W) -> np.ndarray:
    yy, xx = np.mgrid[0:h, 0:w]
    out = np.zeros((len(centres), h, w), np.float32)
    for k, (cy, cx) in enumerate(centres):
        g = np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / (2 * 2.5**2))
        out[k] = np.where(g < 0.01, 0.0, g)
    return out


def results_of(footprints: np.ndarray, traces: np.ndarray, h: int = H, w: int = W) -> Results:
    k, n = traces.shape
    ns = np.arange(n, dtype=np.int64) * 33_000_000
    return Results(
        height=h, width=w, fps_hz=30.0, footprints=footprints, traces=traces,
        spikes=np.zeros_like(traces), born_frame=np.zeros(k, np.int64),
        frame_index=np.arange(n, dtype=np.int64), shifts=np.zeros((n, 2), np.float32),
        t_received_ns=ns, t_done_ns=ns + 5_000,
    )


@pytest.fixture
def files(tmp_path):
    """results.h5 with 10 of 12 cells (shifted by (2.0, -2.0) px) + 1 false positive;
    truth.npz with all 12 cells, calcium and snr."""
    rng = np.random.default_rng(0)
    k = np.arange(12)
    centres = np.column_stack([10 + 15 * (k // 4), 10 + 18 * (k % 4)]).astype(float)
    calcium = rng.random((12, T)).astype(np.float32)
    spikes = np.zeros_like(calcium)
    spikes[:3, 10] = 1.0  # cells 0-2 spike once, the rest never
    np.savez(tmp_path / "truth.npz", footprints=cells(centres), calcium=calcium,
             spikes=spikes, shifts=np.zeros((T, 2), np.float32),
             fps=np.float32(30.0), snr=np.linspace(0.5, 10, 12).astype(np.float32))
    est = np.concatenate([cells(centres[:10] + (2.0, -2.0)), cells([[58.0, 75.0]])])
    traces = np.concatenate([2 * calcium[:10] + 1, rng.random((1, T), np.float32)])
    traces[3, :20] = np.nan  # born late
    write_results(tmp_path / "results.h5", results_of(est, traces.astype(np.float32)))
    return tmp_path


def test_eval_prints_table_and_writes_json(files, capsys):
    out = files / "report.json"
    rc = cli_eval.run(parse([str(files / "results.h5"), "--truth", str(files / "truth.npz"),
                             "--json", str(out)]))
    assert rc == 0
    text = capsys.readouterr().out
    assert "precision" in text and "CaImAn" in text and "offset" in text
    d = json.loads(out.read_text())
    assert (d["n_true"], d["n_est"], d["n_tp"]) == (12, 11, 10)
    assert d["precision"] == 10 / 11 and d["recall"] == 10 / 12
    assert d["f1"] == pytest.approx(20 / 23)
    assert d["offset_px"] == pytest.approx([2.0, -2.0], abs=0.2)
    assert d["median_trace_corr"] == pytest.approx(1.0, abs=1e-6)
    assert d["unaligned"]["f1"] < d["f1"]
    assert d["unaligned"]["n_tp"] < 10 and d["unaligned"]["caiman"]["n_tp"] == 10
    assert sum(b["n_true"] for b in d["recall_by_snr"]) == 12
    assert sum(b["n_tp"] for b in d["recall_by_snr"]) == 10
    assert [b["n_true"] for b in d["recall_by_spikes"]] == [9, 3, 0, 0, 0]
    assert d["activity_ceiling"]["n_active"] == 3
    assert "recall by spikes" in text and "activity ceiling: F1 0.400" in text
    # the results report no spikes: of the three true ones (cells 0-2) none is found
    assert d["spike_inference"] == {
        "n_pairs": 3, "n_est": 0, "n_true": 3, "n_matched": 0, "precision": None,
        "recall": 0.0, "f1_median": 0.0, "tolerance_frames": 2}
    assert "spike inference (3 true-positive pairs, within 2 frames)" in " ".join(text.split())
    assert d["results_path"].endswith("results.h5") and "matches" not in d


def test_eval_details_adds_matches(files):
    out = files / "report.json"
    cli_eval.run(parse([str(files / "results.h5"), "--truth", str(files / "truth.npz"),
                        "--json", str(out), "--details"]))
    m = json.loads(out.read_text())["matches"]
    assert m["est_index"][:10] == list(range(10)) and m["true_index"][:10] == list(range(10))
    assert all(m["is_tp"][:10])


@pytest.mark.skipif(not REGIONS.is_file(), reason="real Neurofinder data not present")
def test_eval_against_real_regions(tmp_path, capsys):
    # estimates: the labelled ROIs themselves, minus the first 38 -> 100 TP of 138
    regions = json.loads(REGIONS.read_text())
    masks = np.zeros((len(regions), 256, 256), np.float32)
    for k, r in enumerate(regions):
        rc = np.asarray(r["coordinates"])
        masks[k, rc[:, 0], rc[:, 1]] = 1.0
    est = masks[38:]
    write_results(tmp_path / "r.h5", results_of(est, np.zeros((100, 5), np.float32), 256, 256))
    out = tmp_path / "rep.json"
    assert cli_eval.run(parse([str(tmp_path / "r.h5"), "--truth", str(REGIONS),
                               "--json", str(out)])) == 0
    d = json.loads(out.read_text())
    assert (d["n_true"], d["n_est"], d["n_tp"]) == (138, 100, 100)
    assert d["median_trace_corr"] is None and d["recall_by_snr"] is None
    assert d["truth"] == {"kind": "regions", "n_clipped_px": 0, "n_dropped_regions": 0}


def test_missing_results_file_is_a_clear_error(files):
    with pytest.raises(RtcalError, match="not found"):
        cli_eval.run(parse([str(files / "nope.h5"), "--truth", str(files / "truth.npz")]))


def test_missing_truth_file_is_a_clear_error(files):
    with pytest.raises(RtcalError, match="truth file not found"):
        cli_eval.run(parse([str(files / "results.h5"), "--truth", str(files / "nope.npz")]))


def test_truth_of_the_wrong_frame_size_is_a_clear_error(files):
    np.savez(files / "small.npz", footprints=np.ones((2, H, W - 8), np.float32))
    with pytest.raises(RtcalError, match="frame"):
        cli_eval.run(parse([str(files / "results.h5"), "--truth", str(files / "small.npz")]))


def test_empty_results_is_a_clear_error(files):
    write_results(files / "empty.h5",
                  results_of(np.zeros((0, H, W), np.float32), np.zeros((0, T), np.float32)))
    assert read_results(files / "empty.h5").n_components == 0
    with pytest.raises(RtcalError, match="no components"):
        cli_eval.run(parse([str(files / "empty.h5"), "--truth", str(files / "truth.npz")]))


def test_truth_is_required():
    with pytest.raises(SystemExit):
        parse(["results.h5"])


def _all_commands_importable() -> bool:
    import importlib.util

    from rtcal.cli import COMMANDS

    return all(importlib.util.find_spec(mod) is not None for mod, _ in COMMANDS.values())


@pytest.mark.skipif(not _all_commands_importable(), reason="other rtcal commands not written yet")
def test_through_rtcal_main(files, capsys):
    from rtcal.cli import main

    assert main(["eval", str(files / "results.h5"), "--truth", str(files / "truth.npz")]) == 0
    assert main(["eval", str(files / "nope.h5"), "--truth", str(files / "truth.npz")]) == 2
    assert "results file not found" in capsys.readouterr().err
