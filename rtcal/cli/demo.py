"""``rtcal demo``: simulate a recording, extract it frame by frame, evaluate, report.

Until the live engine exists this runs the online pipeline on the simulated
movie file (see ``rtcal.engine.run``); everything runs locally with no network.
"""

from __future__ import annotations

import argparse

DESCRIPTION = """\
Simulate a 2-photon recording with known ground truth, extract footprints and
traces from it frame by frame (seed detector on the first frames, then rigid
motion correction, online NMF and online OASIS per frame), write the results
file as it goes, score it
against the truth and draw a report figure. Outputs go to --out.
"""


def add_parser(sub, name: str, help_text: str) -> argparse.ArgumentParser:
    p = sub.add_parser(name, help=help_text, description=DESCRIPTION)
    p.add_argument("--out", default="rtcal-demo", metavar="DIR", help="output folder")
    p.add_argument("--frames", type=int, default=1500, metavar="T", help="movie length")
    p.add_argument("--neurons", type=int, default=60, metavar="K", help="simulated neurons")
    p.add_argument("--size", type=int, nargs=2, default=(256, 256), metavar=("H", "W"))
    p.add_argument("--fps", type=float, default=30.0, metavar="HZ")
    p.add_argument("--seed", type=int, default=7, metavar="S", help="simulation seed")
    return p


def run(args: argparse.Namespace) -> int:
    import json
    import time
    from pathlib import Path

    from rich.console import Console

    from rtcal.cli.evaluate import print_report
    from rtcal.cli.run import print_summary, with_progress
    from rtcal.engine.pipeline import pipeline_config
    from rtcal.engine.run import run_frames
    from rtcal.io import open_movie
    from rtcal.metrics import evaluate, load_truth, report_to_dict
    from rtcal.report.figure import save_demo_figure
    from rtcal.sim import make_config, write_simulation
    from rtcal.store import read_results

    console = Console()
    out = Path(args.out)
    cfg = make_config(
        "2p",
        height=args.size[0],
        width=args.size[1],
        n_frames=args.frames,
        n_neurons=args.neurons,
        fps_hz=args.fps,
        seed=args.seed,
    )
    t0 = time.perf_counter()
    with console.status("simulating"):
        paths = write_simulation(out / "sim", cfg)
    console.print(
        f"simulated {args.frames} frames, {args.neurons} neurons -> {paths.movie} "
        f"({time.perf_counter() - t0:.1f} s)"
    )

    radius = 0.5 * (cfg.radius_min_px + cfg.radius_max_px)
    config = pipeline_config(args.fps, radius)
    results_path = out / "results.h5"
    with open_movie(paths.movie) as movie:
        summary = run_frames(
            with_progress(movie, console), results_path, config, height=cfg.height, width=cfg.width
        )
    print_summary(console, summary, results_path)
    results = read_results(results_path)
    truth = load_truth(paths.truth, results.height, results.width)
    report = report_to_dict(evaluate(results, truth))
    print_report(report, console)
    (out / "eval.json").write_text(json.dumps(report, indent=2, allow_nan=False) + "\n")
    figure = save_demo_figure(
        out / "report.png",
        results,
        truth_footprints=truth.footprints.toarray().reshape(-1, results.height, results.width),
    )
    console.print(f"wrote {results_path}, {out / 'eval.json'}, {figure}")
    return 0
