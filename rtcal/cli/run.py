"""``rtcal run MOVIE --out RESULTS.h5``: extract a movie file frame by frame."""

from __future__ import annotations

import argparse

DESCRIPTION = """\
Feed a movie file (TIFF, a folder of TIFFs, HDF5 or .npy) through rtcal frame
by frame, in order, with no look-ahead, and write the results file. The current
pipeline is the first pass: seed detector on the first --init-frames frames,
rigid motion correction, warm-started trace solver, OASIS deconvolution.
"""


def add_parser(sub, name: str, help_text: str) -> argparse.ArgumentParser:
    p = sub.add_parser(name, help=help_text, description=DESCRIPTION)
    p.add_argument("movie", metavar="MOVIE", help="movie file, folder of TIFFs, or FILE.h5:DATASET")
    p.add_argument("--out", required=True, metavar="RESULTS.h5", help="results file to write")
    p.add_argument(
        "--fps",
        type=float,
        default=None,
        metavar="HZ",
        help="frame rate (default: from the file's metadata, else 30)",
    )
    p.add_argument(
        "--neuron-radius",
        type=float,
        default=6.0,
        metavar="PX",
        help="typical soma radius in px (default 6)",
    )
    p.add_argument(
        "--init-frames",
        type=int,
        default=300,
        metavar="N",
        help="frames the seed detector sees (default 300)",
    )
    p.add_argument(
        "--tau-decay",
        type=float,
        default=1.0,
        metavar="S",
        help="calcium decay time constant for deconvolution, s (default 1.0)",
    )
    return p


def run(args: argparse.Namespace) -> int:
    from rich.console import Console

    from rtcal.cli.demo import with_progress
    from rtcal.engine.firstpass import FirstPassConfig, run_first_pass, to_results
    from rtcal.io import open_movie
    from rtcal.report.timing import describe_ms, frame_times_ms
    from rtcal.store import write_results

    console = Console()
    with open_movie(args.movie) as movie:
        fps = args.fps or movie.fps_hz or 30.0
        config = FirstPassConfig(
            fps_hz=fps,
            radius_px=args.neuron_radius,
            init_frames=args.init_frames,
            tau_decay_s=args.tau_decay,
        )
        console.print(
            f"{args.movie}: {movie.n_frames} frames of {movie.height}x{movie.width} "
            f"{movie.dtype}, {fps:g} Hz"
        )
        result = run_first_pass(with_progress(movie, console), config)
    write_results(args.out, to_results(result, config, movie.height, movie.width))
    steady = frame_times_ms(result.t_received_ns, result.t_done_ns, config.init_frames)
    console.print(
        f"{len(result.footprints)} components; initialisation {result.init_seconds:.1f} s; "
        f"after it, per frame {describe_ms(steady)} -> {args.out}"
    )
    return 0
