"""``rtcal run MOVIE --out RESULTS.h5``: extract a movie file frame by frame."""

from __future__ import annotations

import argparse

DESCRIPTION = """\
Feed a movie file (TIFF, a folder of TIFFs, HDF5 FILE.h5:DATASET or .npy)
through the online pipeline frame by frame, in order, with no look-ahead, as
the live engine does, and write the results file as it goes: a footprint
detector (--detector) on the first --init-frames frames, then per frame rigid
motion correction, online NMF (traces, background, footprint refinement, new
components from the residual) and online deconvolution. Every --detect-every
frames the detector re-runs on the recent frames and the cells it proposes in
two consecutive re-runs are added, as in the live engine (which runs it in
another process while frames go on; here the run waits for it).
"""


def add_parser(sub, name: str, help_text: str) -> argparse.ArgumentParser:
    from rtcal.detect.factory import DETECTORS

    p = sub.add_parser(name, help=help_text, description=DESCRIPTION)
    p.add_argument("movie", metavar="MOVIE", help="movie file, folder of TIFFs, or FILE.h5:DATASET")
    p.add_argument("--out", metavar="RESULTS.h5", help="results file to write (required)")
    p.add_argument(
        "--config",
        metavar="FILE.toml",
        help="settings file (see `rtcal config`); the flags below override it",
    )
    p.add_argument(
        "--print-config",
        action="store_true",
        help="print the full effective configuration as TOML and exit",
    )
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
        default=None,
        metavar="PX",
        help="typical soma radius in px (default 6)",
    )
    p.add_argument(
        "--init-frames",
        type=int,
        default=None,
        metavar="N",
        help="frames the detector sees (default 300)",
    )
    p.add_argument(
        "--tau-decay",
        type=float,
        default=None,
        metavar="S",
        help="prior calcium decay time constant, s (default 1.0)",
    )
    p.add_argument(
        "--mode",
        choices=("2p", "1p"),
        default=None,
        help="2p: low-rank background; 1p (microendoscope): CNMF-E ring background",
    )
    p.add_argument(
        "--backend",
        choices=("cpu", "cuda"),
        default=None,
        help="cpu: NumPy + Numba; cuda: per-frame motion and NMF on the GPU (needs CuPy, 2p)",
    )
    p.add_argument(
        "--detector",
        choices=DETECTORS,
        default=None,
        help="footprint detector on the initial frames: learned (the shipped network; default "
        "for 2p), seed (classical; default for 1p) or learned+seed (the network's footprints "
        "and the classical detector's new ones); also [detector] name in --config",
    )
    p.add_argument(
        "--weights", default=None, metavar="PATH", help="learned detector weights (default shipped)"
    )
    p.add_argument(
        "--detect-every",
        type=int,
        default=None,
        metavar="N",
        help="re-run the detector every N frames on the last keyframe_frames frames, as the "
        "live engine does (default: [engine] detect_every_frames, 1000; 0: never)",
    )
    return p


def redetect_settings(sections: dict, detect_every: int | None = None) -> dict:
    """The live engine's re-run settings from a config's ``[engine]`` table (the
    other keys there are the engine's own and are ignored here), as keyword
    arguments of ``run_frames``; ``detect_every`` overrides ``detect_every_frames``."""
    from rtcal.engine.config import EngineConfig, EngineConfigError

    engine = EngineConfig.from_section(sections.get("engine") or {})
    every = engine.detect_every_frames if detect_every is None else detect_every
    if every < 0:
        raise EngineConfigError(f"--detect-every must be >= 0 (0: never), got {every}")
    return {
        "detect_every": every,
        "confirm_runs": engine.detect_confirm_runs,
        "keyframe_frames": engine.keyframe_frames,
        "keyframe_n_key": engine.keyframe_n_key,
    }


def run(args: argparse.Namespace) -> int:
    from rich.console import Console

    from rtcal.config import dump_config, load_config
    from rtcal.detect.factory import describe_detector, detector_from_section
    from rtcal.engine.run import run_frames
    from rtcal.errors import RtcalError
    from rtcal.io import open_movie

    console = Console()
    if not (args.out or args.print_config):
        raise RtcalError("--out RESULTS.h5 is required (or --print-config)")
    with open_movie(args.movie) as movie:
        flags = {
            "init_frames": args.init_frames,
            "tau_decay_s": args.tau_decay,
            "backend": args.backend,
        }
        loaded = load_config(
            args.config,
            fps_hz=args.fps,
            radius_px=args.neuron_radius,
            mode=args.mode,
            overrides={k: v for k, v in flags.items() if v is not None},
            fallback_fps_hz=movie.fps_hz or 30.0,
        )
        if args.print_config:
            print(dump_config(loaded), end="")
            return 0
        config, fps = loaded.pipeline, loaded.pipeline.fps_hz
        console.print(
            f"{args.movie}: {movie.n_frames} frames of {movie.height}x{movie.width} "
            f"{movie.dtype}, {fps:g} Hz"
        )
        section = loaded.sections.get("detector") or {}
        detector = detector_from_section(section, config, name=args.detector,
                                         weights=args.weights)
        redetect = redetect_settings(loaded.sections, args.detect_every)
        every = redetect["detect_every"]
        console.print(f"detector: {describe_detector(detector)}, on the first "
                      f"{config.init_frames} frames"
                      + (f", then every {every} frames" if every else ""))
        summary = run_frames(
            with_progress(movie, console),
            args.out,
            config,
            height=movie.height,
            width=movie.width,
            attrs={"detector": describe_detector(detector), "detect_every_frames": every},
            detector=detector,
            **redetect,
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
    r = summary.redetect
    if r is not None and r["runs"] + r["failed"]:
        seconds = r["seconds"]
        took = f", {min(seconds):.2f}-{max(seconds):.2f} s each" if seconds else ""
        console.print(
            f"detector re-runs: {r['runs']}{took}, {r['failed']} failed; components added "
            f"{r['added']}, refused {r['add_failed']}"
        )
