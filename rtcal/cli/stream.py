"""``rtcal stream``: a microscope emulator sending a movie (or a simulation) at its frame rate."""

from __future__ import annotations

import argparse

DESCRIPTION = """\
Send frames to a running engine (rtcal serve) at a fixed rate, as a microscope
would: each frame is sent at t0 + i / fps (a late frame is sent at once, never
skipped). MOVIE is any movie rtcal reads (TIFF, folder of TIFFs, FILE.h5:DATASET,
.npy); --simulate generates one with rtcal.sim instead. --loop repeats the
movie (sequence numbers keep rising). Frames wait for the engine unless --lossy.
"""


def add_parser(sub, name: str, help_text: str) -> argparse.ArgumentParser:
    p = sub.add_parser(name, help=help_text, description=DESCRIPTION)
    p.add_argument("movie", nargs="?", metavar="MOVIE", help="movie file (or --simulate)")
    p.add_argument("--simulate", action="store_true", help="send a simulated movie")
    p.add_argument(
        "--to",
        default="tcp://127.0.0.1:5555",
        metavar="ENDPOINT",
        help="the engine's frames endpoint (default tcp://127.0.0.1:5555)",
    )
    p.add_argument("--fps", type=float, required=True, metavar="HZ", help="frames per second")
    p.add_argument("--loop", action="store_true", help="repeat the movie")
    p.add_argument("--count", type=int, metavar="N", help="stop after N frames")
    p.add_argument(
        "--lossy",
        action="store_true",
        help="never wait for the engine: drop (and count) frames it cannot take",
    )
    g = p.add_argument_group("--simulate")
    g.add_argument("--mode", choices=("2p", "1p"), default="2p")
    g.add_argument("--size", nargs=2, type=int, default=(256, 256), metavar=("H", "W"))
    g.add_argument("--neurons", type=int, default=60, metavar="K")
    g.add_argument(
        "--frames",
        type=int,
        default=1000,
        metavar="T",
        help="frames simulated (looped with --loop)",
    )
    g.add_argument("--seed", type=int, default=0)
    return p


def simulated_frames(mode: str, size, n_neurons: int, n_frames: int, fps_hz: float, seed: int):
    """The frames of a simulated movie, (T, H, W) uint16, in memory."""
    import numpy as np

    from rtcal.sim import Simulation, make_config

    cfg = make_config(
        mode,
        height=size[0],
        width=size[1],
        n_neurons=n_neurons,
        n_frames=n_frames,
        fps_hz=fps_hz,
        seed=seed,
    )
    return np.concatenate([c.images for c in Simulation(cfg).chunks()])


def paced(frames_once, fps_hz: float, loop: bool, count: int | None):
    """Yield frames at ``fps_hz`` (sleeping until each one's due time)."""
    import time

    period = 1.0 / fps_hz
    t0 = time.perf_counter()
    i = 0
    while True:
        for frame in frames_once():
            if count is not None and i >= count:
                return
            delay = t0 + i * period - time.perf_counter()
            if delay > 0:
                time.sleep(delay)
            yield frame
            i += 1
        if not loop:
            return


def run(args: argparse.Namespace) -> int:
    import time

    from rtcal.client import FrameSender
    from rtcal.errors import RtcalError

    if args.simulate == (args.movie is not None):
        raise RtcalError("give a MOVIE or --simulate (not both)")
    if args.fps <= 0:
        raise RtcalError(f"--fps must be positive, got {args.fps}")
    if args.simulate:
        movie = simulated_frames(
            args.mode, args.size, args.neurons, args.frames, args.fps, args.seed
        )

        def frames_once():
            return iter(movie)
    else:
        from rtcal.io import open_movie

        def frames_once():
            with open_movie(args.movie) as m:
                yield from m

    sender = FrameSender(args.to, timeout_ms=0 if args.lossy else -1)
    if not args.lossy and not sender.wait_ready(30.0):
        raise RtcalError(f"no engine at {args.to} after 30 s")
    t0 = time.perf_counter()
    try:
        for frame in paced(frames_once, args.fps, args.loop, args.count):
            sender.send(frame)
    except KeyboardInterrupt:
        pass
    finally:
        elapsed = time.perf_counter() - t0
        sender.close()
    rate = sender.n_sent / elapsed if elapsed > 0 else 0.0
    print(
        f"sent {sender.n_sent} frames in {elapsed:.1f} s ({rate:.1f} Hz), "
        f"dropped {sender.n_dropped} -> {args.to}"
    )
    return 0
