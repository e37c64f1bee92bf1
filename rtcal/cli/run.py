"""``rtcal run MOVIE --out RESULTS.h5``: extract a movie file frame by frame."""

from __future__ import annotations

import argparse

DESCRIPTION = """\
Feed a movie file (TIFF, a folder of TIFFs, HDF5 FILE.h5:DATASET or .npy)
through the online pipeline frame by frame, in order, with no look-ahead, as
the live engine does, and write the results file as it goes: seed detector on
the first --init-frames frames, then per frame rigid motion correction, online
NMF (traces, background, footprint refinement, new components from the
residual) and online deconvolution.
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
        help="prior calcium decay time constant, s (default 1.0)",
    )
    p.add_argument(
        "--mode",
        choices=("2p", "1p"),
        default="2p",
        help="2p: low-rank background; 1p (microendoscope): CNMF-E ring background",
    )
    return p


def run(args: argparse.Namespace) -> int:
    from rich.console import Console

    from rtcal.engine.pipeline import pipeline_config
    from rtcal.engine.run import run_frames
    from rtcal.io import open_movie

    console = Console()
    with open_movie(args.movie) as movie:
        fps = args.fps or movie.fps_hz or 30.0
        config = pipeline_config(
            fps,
            args.neuron_radius,
            args.mode,
            init_frames=args.init_frames,
            tau_decay_s=args.tau_decay,
        )
        console.print(
            f"{args.movie}: {movie.n_frames} frames of {movie.height}x{movie.width} "
            f"{movie.dtype}, {fps:g} Hz"
        )
        summary = run_frames(
            with_progress(movie, console), args.out, config, height=movie.height, width=movie.width
        )
    print_summary(console, summary, args.out)
    return 0


def with_progress(movie, console):
    """Yield the movie's frames while a progress bar counts them."""
    from rich.progress import Progress

    with Progress(console=console, transient=True) as progress:
        task = progress.add_task("extracting", total=len(movie))
        for frame in movie:
            yield frame
            progress.advance(task)


def print_summary(console, summary, out_path) -> None:
    from rtcal.report.timing import describe_ms

    skipped = ", ".join(f"{n} {why}" for why, n in summary.skipped.items()) or "none"
    console.print(
        f"{summary.n_components} components over {summary.n_frames} frames -> {out_path}\n"
        f"initialisation {summary.init_seconds:.1f} s; after it, per frame "
        f"{describe_ms(summary.frame_ms)}; frames skipped: {skipped}"
    )
