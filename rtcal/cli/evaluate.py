"""``rtcal eval RESULTS.h5 --truth truth.npz|regions.json [--json OUT] [--details]``."""

from __future__ import annotations

import argparse

DESCRIPTION = """\
Score a results file against ground truth: simulated truth.npz (footprints,
optional calcium and snr) or Neurofinder regions.json. Footprints are binarised
at 0.2 x their maximum and matched by the Hungarian algorithm on IoU; a true
positive needs IoU >= 0.5 (CaImAn convention too: IoU > 0.3, centroids < 10 px
apart). A global sub-pixel offset (at most --max-offset px per axis) between the
results' frame and the truth frame is estimated and removed first; scores
without it are shown as well. Trace correlation is the median Pearson r of the
true positives' traces with the true calcium.
"""


def add_parser(sub, name: str, help_text: str) -> argparse.ArgumentParser:
    p = sub.add_parser(name, help=help_text, description=DESCRIPTION)
    p.add_argument("results", metavar="RESULTS.h5", help="results file written by rtcal")
    p.add_argument(
        "--truth",
        required=True,
        metavar="TRUTH",
        help="truth.npz (simulated) or regions.json (Neurofinder)",
    )
    p.add_argument("--json", dest="json_out", metavar="OUT", help="also write the report as JSON")
    p.add_argument(
        "--details",
        action="store_true",
        help="include per-pair matches (indices, IoU, trace r) in the JSON",
    )
    p.add_argument(
        "--max-offset",
        type=float,
        default=3.0,
        metavar="PX",
        help="bound on the global offset per axis, px (default 3)",
    )
    return p


def _fmt(value, digits: int = 3) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return str(value)


def _scores_row(label: str, s: dict) -> list[str]:
    return [
        label,
        _fmt(s["precision"]),
        _fmt(s["recall"]),
        _fmt(s["f1"]),
        str(s["n_tp"]),
        str(s["n_fp"]),
        str(s["n_fn"]),
        _fmt(s["median_iou"]),
    ]


def print_report(d: dict, console) -> None:
    """Human-readable tables of a report dict (the JSON form)."""
    from rich.table import Table

    table = Table(
        title=f"rtcal eval: {d['n_est']} estimated vs {d['n_true']} true neurons",
        caption="main: IoU >= 0.5; CaImAn: IoU > 0.3 and centroids < 10 px apart",
    )
    for col in ("convention", "precision", "recall", "F1", "TP", "FP", "FN", "median IoU"):
        table.add_column(col, justify="left" if col == "convention" else "right")
    table.add_row(*_scores_row("main, aligned", d))
    table.add_row(*_scores_row("CaImAn, aligned", d["caiman"]))
    table.add_row(*_scores_row("main, unaligned", d["unaligned"]))
    table.add_row(*_scores_row("CaImAn, unaligned", d["unaligned"]["caiman"]))
    console.print(table)
    dy, dx = d["offset_px"]
    clamp = "  (CLAMPED at bound)" if d["offset_clamped"] else ""
    console.print(
        f"global offset (dy, dx): ({dy:+.2f}, {dx:+.2f}) px{clamp}, "
        f"refined from {d['offset_n_pairs']} cell pairs"
    )
    console.print(
        f"median trace correlation (TP): {_fmt(d['median_trace_corr'])}"
        f"  over {d['n_trace_corr']} pairs"
    )
    if d["recall_by_snr"] is not None:
        snr = Table(title="recall by single-spike SNR")
        for col in ("SNR", "true", "TP", "recall"):
            snr.add_column(col, justify="right")
        for b in d["recall_by_snr"]:
            lo = "-inf" if b["snr_lo"] is None else f"{b['snr_lo']:g}"
            hi = "inf" if b["snr_hi"] is None else f"{b['snr_hi']:g}"
            snr.add_row(f"[{lo}, {hi})", str(b["n_true"]), str(b["n_tp"]), _fmt(b["recall"]))
        console.print(snr)
    if d.get("recall_by_spikes") is not None:
        by = Table(title="recall by spikes in the evaluated frames")
        for col in ("spikes", "true", "TP", "recall"):
            by.add_column(col, justify="right")
        for b in d["recall_by_spikes"]:
            lo, hi = b["spikes_lo"], b["spikes_hi"]
            label = (f"{lo}+" if hi is None else str(lo) if hi == lo + 1
                     else f"{lo}-{hi - 1}")
            by.add_row(label, str(b["n_true"]), str(b["n_tp"]), _fmt(b["recall"]))
        console.print(by)
        c = d["activity_ceiling"]
        console.print(
            f"activity ceiling: F1 {_fmt(c['f1'])} for finding exactly the {c['n_active']} of "
            f"{c['n_true']} neurons that spike in these frames (a silent neuron shows only "
            "at rest)"
        )
    sp = d.get("spike_inference")
    if sp is not None and sp["n_pairs"]:
        console.print(
            f"spike inference ({sp['n_pairs']} true-positive pairs, within "
            f"{sp['tolerance_frames']} frames): {sp['n_est']} spikes reported against "
            f"{sp['n_true']} true, precision {_fmt(sp['precision'])}, recall "
            f"{_fmt(sp['recall'])}, median F1 per pair {_fmt(sp['f1_median'])}"
        )
    if d["alignment_worse"]:
        console.print("[bold red]alignment made the scores worse than unaligned[/]")
    for note in d["warnings"]:
        console.print(f"[yellow]warning:[/] {note}")


def run(args: argparse.Namespace) -> int:
    import json
    from pathlib import Path

    from rich.console import Console

    from rtcal.metrics import evaluate, load_truth, report_to_dict
    from rtcal.metrics.evaluate import EvaluationError
    from rtcal.store import read_results

    results_path = Path(args.results)
    if not results_path.is_file():
        raise EvaluationError(f"results file not found: {results_path}")
    results = read_results(results_path)
    truth = load_truth(args.truth, results.height, results.width)
    report = evaluate(results, truth, max_offset_px=args.max_offset)
    d = report_to_dict(report, details=args.details)
    d |= {"results_path": str(results_path), "truth_path": str(args.truth)}
    print_report(d, Console())
    if args.json_out:
        Path(args.json_out).write_text(json.dumps(d, indent=2, allow_nan=False) + "\n")
    return 0
