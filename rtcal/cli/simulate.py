"""``rtcal simulate OUT_DIR``: write a simulated movie (movie.tif) and its truth (truth.npz)."""

from __future__ import annotations

import argparse


def add_parser(
    sub: argparse._SubParsersAction, name: str, help_text: str
) -> argparse.ArgumentParser:
    p = sub.add_parser(
        name,
        help=help_text,
        description="Simulate a calcium-imaging recording with ground truth: OUT_DIR/movie.tif "
        "(uint16, T x H x W) and OUT_DIR/truth.npz (footprints, calcium, spikes, shifts, snr, "
        "...). See docs/simulator.md.",
    )
    p.add_argument("out_dir", metavar="OUT_DIR", help="output directory (created if missing)")
    p.add_argument(
        "--mode",
        choices=("2p", "1p"),
        default="2p",
        help="two-photon (default) or one-photon microendoscope",
    )
    p.add_argument(
        "--size",
        nargs=2,
        type=int,
        metavar=("H", "W"),
        default=(256, 256),
        help="frame height and width in px (default 256 256)",
    )
    p.add_argument("--frames", type=int, default=1000, metavar="T", help="frames (default 1000)")
    p.add_argument("--neurons", type=int, default=100, metavar="K", help="neurons (default 100)")
    p.add_argument(
        "--fps",
        type=float,
        default=None,
        metavar="F",
        help="frame rate in Hz (default 30 for 2p, 20 for 1p)",
    )
    p.add_argument("--seed", type=int, default=0, metavar="S", help="random seed (default 0)")
    p.add_argument(
        "--motion",
        type=float,
        default=1.0,
        metavar="PX",
        help="RMS rigid motion per axis in px, plus rare twitches (default 1; 0 = none)",
    )
    p.add_argument(
        "--noise",
        type=float,
        default=1.0,
        metavar="LEVEL",
        help="noise level: 1 realistic, 0 noiseless, 2 = a quarter of the photons",
    )
    p.add_argument(
        "--radius",
        nargs="+",
        type=float,
        default=None,
        metavar="PX",
        help="soma radius in px: R (drawn in 0.75R..1.25R) or MIN MAX "
        "(default 4.5 7.5 for 2p, 7 11 for 1p)",
    )
    p.add_argument(
        "--rate",
        type=float,
        default=None,
        metavar="HZ",
        help="median spike rate in Hz (log-normal across cells; default 0.1 for 2p)",
    )
    return p


def _overrides(args: argparse.Namespace) -> dict[str, object]:
    from rtcal.sim import ActivityParams, SimConfigError, make_config

    kw: dict[str, object] = {
        "height": args.size[0],
        "width": args.size[1],
        "n_frames": args.frames,
        "n_neurons": args.neurons,
        "seed": args.seed,
        "motion_px": args.motion,
        "noise_level": args.noise,
    }
    if args.fps is not None:
        kw["fps_hz"] = args.fps
    if args.radius is not None:
        if len(args.radius) == 1:
            kw["radius_min_px"], kw["radius_max_px"] = 0.75 * args.radius[0], 1.25 * args.radius[0]
        elif len(args.radius) == 2:
            kw["radius_min_px"], kw["radius_max_px"] = args.radius
        else:
            raise SimConfigError(f"--radius takes 1 or 2 values, got {args.radius}")
    if args.rate is not None:
        base = make_config(args.mode).activity
        kw["activity"] = ActivityParams(**{**base.__dict__, "rate_median_hz": args.rate})
    return kw


def run(args: argparse.Namespace) -> int:
    import time

    import numpy as np

    from rtcal.sim import make_config, write_simulation

    cfg = make_config(args.mode, **_overrides(args))
    start = time.perf_counter()
    paths = write_simulation(args.out_dir, cfg)
    elapsed = time.perf_counter() - start
    with np.load(paths.truth) as truth:
        snr = np.median(truth["snr"]) if cfg.n_neurons else float("nan")
        n_spikes = int(truth["spikes"].sum())
    print(
        f"simulated {cfg.mode}: K={cfg.n_neurons} neurons, T={cfg.n_frames} frames of "
        f"{cfg.height}x{cfg.width} at {cfg.fps_hz:g} Hz (seed {cfg.seed}) in {elapsed:.1f} s "
        f"({cfg.n_frames / elapsed:.0f} frames/s); {n_spikes} spikes, median snr {snr:.2f}"
    )
    print(f"wrote {paths.movie}")
    print(f"wrote {paths.truth}")
    return 0
