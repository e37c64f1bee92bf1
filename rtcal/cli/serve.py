"""``rtcal serve``: run the live engine until stopped (SIGINT, SIGTERM or control "stop")."""

from __future__ import annotations

import argparse

DESCRIPTION = """\
Run the live engine: receive frames over ZeroMQ (the acquisition program
connects a PUSH socket to --frames, e.g. with rtcal.client.FrameSender),
publish per-frame traces, spikes and dF/F and footprint updates on --results,
trigger events on --events, answer control requests on --control, and write
the results file --out as it goes. Settings come from --config FILE.toml
([pipeline], [engine], [triggers] sections) and the flags below, which
override it. Ctrl-C or SIGTERM stops it cleanly, with the results file
complete. See docs/protocol.md.
"""


def add_parser(sub, name: str, help_text: str) -> argparse.ArgumentParser:
    from rtcal.detect.factory import DETECTORS

    p = sub.add_parser(name, help=help_text, description=DESCRIPTION)
    p.add_argument("--config", metavar="FILE.toml", help="config file")
    p.add_argument("--frames", metavar="ENDPOINT", help="frames in (PULL), tcp://127.0.0.1:5555")
    p.add_argument("--results", metavar="ENDPOINT", help="results out (PUB), ...:5556")
    p.add_argument("--events", metavar="ENDPOINT", help="trigger events out (PUB), ...:5557")
    p.add_argument("--control", metavar="ENDPOINT", help="control (REP), ...:5558")
    p.add_argument("--out", metavar="RESULTS.h5", help="results file to write")
    p.add_argument("--fps", type=float, metavar="HZ", help="frame rate (default 30)")
    p.add_argument("--radius", type=float, metavar="PX", help="soma radius in px (default 6)")
    p.add_argument("--mode", choices=("2p", "1p"), help="2p (default) or 1p (ring background)")
    p.add_argument("--init-frames", type=int, metavar="N", help="initialisation frames (300)")
    p.add_argument("--drop-policy", choices=("oldest", "newest", "block"), help="when behind")
    p.add_argument("--ring-slots", type=int, metavar="N", help="frame slots in the ring")
    p.add_argument("--detect-every", type=int, metavar="N", help="frames between detector re-runs")
    p.add_argument("--detector", choices=DETECTORS,
                   help="detector at initialisation and re-runs: learned (default for 2p), "
                   "seed (default for 1p) or learned+seed")
    p.add_argument("--weights", metavar="PATH", help="learned detector weights (default shipped)")
    p.add_argument("--realtime-priority", type=int, metavar="P",
                   help="SCHED_FIFO priority 1-98 for the receiver and frame loop (0: off)")
    p.add_argument("--quiet", action="store_true", help="no progress lines")
    return p


def build_configs(args: argparse.Namespace):
    """(EngineConfig, PipelineConfig, trigger rules) from --config and the flags
    (a flag given replaces the file's value)."""
    from rtcal.config import ConfigError, load_config
    from rtcal.engine.config import EngineConfig

    overrides = {"init_frames": args.init_frames} if args.init_frames is not None else {}
    loaded = load_config(
        args.config, fps_hz=args.fps, radius_px=args.radius, mode=args.mode, overrides=overrides
    )
    engine_section = loaded.sections.get("engine", {})
    if not isinstance(engine_section, dict):
        raise ConfigError(f"{args.config}: [engine] must be a table")
    flags = {
        "frames_endpoint": args.frames,
        "results_endpoint": args.results,
        "events_endpoint": args.events,
        "control_endpoint": args.control,
        "results_path": args.out,
        "drop_policy": args.drop_policy,
        "ring_slots": args.ring_slots,
        "detect_every_frames": args.detect_every,
        "realtime_priority": args.realtime_priority,
    }
    engine = EngineConfig.from_section(
        {**engine_section, **{k: v for k, v in flags.items() if v is not None}}
    )
    rules = loaded.sections.get("triggers", [])
    if isinstance(rules, dict):  # a single [triggers] table instead of [[triggers]]
        rules = [rules]
    return engine, loaded.pipeline, list(rules), loaded.sections.get("detector")


def run(args: argparse.Namespace) -> int:
    import signal
    import sys

    from rtcal.detect.factory import describe_detector, detector_from_section
    from rtcal.engine.live import Engine

    engine_config, pipeline_config, rules, detector_section = build_configs(args)
    detector = detector_from_section(detector_section, pipeline_config, name=args.detector,
                                     weights=args.weights)
    # stderr: the first line on stdout is the "listening:" line clients parse
    print(f"rtcal serve: detector {describe_detector(detector)}", file=sys.stderr, flush=True)
    if engine_config.warm_kernels:
        print("rtcal serve: compiling kernels (about 20 s on a fresh machine, 1 s after)",
              file=sys.stderr, flush=True)
    engine = Engine(engine_config, pipeline_config, rules, detector=detector).start()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: engine.stop())
    names = ", ".join(f"{k} {v}" for k, v in engine.endpoints.items())
    print(f"rtcal serve: listening: {names}", flush=True)
    while not engine.stop_event.wait(5.0 if not args.quiet else 3600):
        if not args.quiet:
            print(progress_line(engine.status()), flush=True)
    summary = engine.close()
    print(progress_line(summary), flush=True)
    if engine_config.results_path:
        print(f"wrote {engine_config.results_path}", file=sys.stdout)
    return 0


def progress_line(status: dict) -> str:
    c, lat = status["counters"], status["latency_ms"]["steady"]
    return (
        f"[{status['state']}] frames {c['processed']} processed, {c['received']} received, "
        f"{c['dropped']} dropped, {c['gap_frames']} lost before the engine, "
        f"{c['malformed_total']} malformed; {status['n_components']} components; "
        f"latency p50 {lat['p50_ms']:.2f} ms, p99 {lat['p99_ms']:.2f} ms; {c['events']} events"
    )
