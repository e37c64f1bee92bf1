"""``rtcal detect MOVIE --frames A:B --out RESULTS.h5``: a detector alone on one window."""

from __future__ import annotations

import argparse

DESCRIPTION = """\
Run a footprint detector alone on frames A..B-1 of a movie: the window is
registered rigidly (as the pipeline registers its initialisation frames), the
detector proposes footprints, and their traces over the window are extracted
(non-negative least squares with the mode's background model, then OASIS
denoising) and written in the results format, so that `rtcal eval` scores
them. Prints which network runtime ran and how long the detector took.
"""


# rtcal.detect.runtime.RUNTIME_NAMES, spelled out so that `rtcal --help` need not import torch
RUNTIME_CHOICES = ("auto", "tensorrt", "compile", "onnx", "eager")


def add_parser(sub, name: str, help_text: str) -> argparse.ArgumentParser:
    from rtcal.detect.factory import DETECTORS

    p = sub.add_parser(name, help=help_text, description=DESCRIPTION)
    p.add_argument("movie", metavar="MOVIE", help="movie file, folder of TIFFs, or FILE.h5:DATASET")
    p.add_argument("--frames", default="0:500", metavar="A:B",
                   help="window: frames A to B-1 (default 0:500; 'A:' runs to the end)")
    p.add_argument("--out", required=True, metavar="RESULTS.h5", help="results file to write")
    p.add_argument("--fps", type=float, default=None, metavar="HZ",
                   help="frame rate (default: from the file's metadata, else 30)")
    p.add_argument("--neuron-radius", type=float, default=6.0, metavar="PX",
                   help="typical soma radius in px (default 6)")
    p.add_argument("--mode", choices=("2p", "1p"), default="2p",
                   help="background model of the trace extraction: 2p low-rank, 1p ring")
    p.add_argument("--detector", choices=DETECTORS, default="learned",
                   help="learned network (default), the classical seed detector, or learned+seed "
                   "(the network's footprints and the seed detector's new ones)")
    p.add_argument("--weights", default=None, metavar="PATH",
                   help="learned detector checkpoint (default: the weights shipped in rtcal for "
                   "the mode: detector_2p.pt or detector_default.pt)")
    p.add_argument("--runtime", choices=RUNTIME_CHOICES, default="auto",
                   help="network runtime (default auto: the best available)")
    p.add_argument("--device", default="cpu", metavar="DEV", help="cpu or cuda (default cpu)")
    p.add_argument("--threads", type=int, default=None, metavar="N",
                   help="CPU threads of the network runtime (default: all cores)")
    return p


def parse_frames(text: str, n_frames: int) -> tuple[int, int]:
    """(A, B) from "A:B" or "A:" within a movie of n_frames; RtcalError if invalid."""
    from rtcal.errors import RtcalError

    head, sep, tail = text.partition(":")
    try:
        start = int(head) if head else 0
        stop = int(tail) if tail else n_frames
    except ValueError:
        raise RtcalError(f"--frames {text!r}: expected A:B with integers A < B") from None
    if not sep or not 0 <= start < stop or stop > n_frames:
        raise RtcalError(f"--frames {text!r}: need 0 <= A < B <= {n_frames} (the movie's "
                         "frame count)")
    if stop - start < 20:
        raise RtcalError(f"--frames {text!r}: a window needs at least 20 frames")
    return start, stop


def run(args: argparse.Namespace) -> int:
    import numpy as np

    from rtcal.detect.factory import make_detector
    from rtcal.detect.standalone import detect_window, to_results
    from rtcal.engine.pipeline import pipeline_config
    from rtcal.io import open_movie
    from rtcal.store import write_results

    with open_movie(args.movie) as movie:
        start, stop = parse_frames(args.frames, movie.n_frames)
        fps = args.fps or movie.fps_hz or 30.0
        frames = movie.read(start, stop)
        print(f"{args.movie}: frames {start}:{stop} of {movie.n_frames}, "
              f"{movie.height}x{movie.width}, {fps:g} Hz")
    config = pipeline_config(fps, args.neuron_radius, args.mode)
    runtime = None if args.runtime == "auto" else args.runtime
    detector = make_detector(args.detector, config, weights=args.weights, runtime=runtime,
                             device=args.device, threads=args.threads)
    det = detect_window(frames, detector, config)
    attrs = {"pipeline": "detect", "detector": args.detector, "frames": f"{start}:{stop}",
             "radius_px": args.neuron_radius, "mode": args.mode}
    choice = getattr(detector, "runtime_choice", None)  # set once the network has run
    if choice is not None:
        print(choice.describe())
        attrs["runtime"] = choice.runtime.name
    write_results(args.out, to_results(det, np.arange(start, stop), fps, attrs))
    print(f"{len(det.proposal)} footprints over {stop - start} frames -> {args.out}")
    print(f"detector {args.detector}: {det.detector_s:.2f} s{_breakdown(detector)}; "
          f"registration {det.register_s:.2f} s, traces {det.traces_s:.2f} s")
    return 0


def _breakdown(detector) -> str:
    timing = getattr(detector, "last_timing", None)
    if timing is None:
        return ""
    return (f" (input channels {timing.channels_s:.2f}, network {timing.network_s:.2f} on "
            f"{timing.n_tiles} tiles, footprints {timing.footprints_s:.2f})")
