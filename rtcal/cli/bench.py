"""``rtcal bench SUBCOMMAND``: measurements of a whole rtcal setup on this machine."""

from __future__ import annotations

import argparse

LATENCY = """\
End-to-end latency of the live engine on loopback: starts `rtcal serve` as its
own process, sends a simulated movie at --fps (each frame stamped as sent),
and receives its results and events; reports p50 / p99 / p99.9 / max latency
after warm-up, the per-stage breakdown and drops, and with --search the
highest frame rate sustained with no drops. Writes JSON (--json) and a
latency histogram (--plot).
"""


def add_parser(sub, name: str, help_text: str) -> argparse.ArgumentParser:
    from rtcal.detect.factory import DETECTORS

    p = sub.add_parser(name, help=help_text, description=help_text)
    benches = p.add_subparsers(dest="bench", metavar="BENCH", required=True)
    lat = benches.add_parser(
        "latency", help="end-to-end latency of the live engine", description=LATENCY
    )
    lat.add_argument("--size", nargs=2, type=int, default=(256, 256), metavar=("H", "W"))
    lat.add_argument("--neurons", type=int, default=60, metavar="K")
    lat.add_argument("--fps", type=float, default=30.0, metavar="HZ")
    lat.add_argument(
        "--duration",
        type=float,
        default=20.0,
        metavar="S",
        help="measured seconds after warm-up (default 20)",
    )
    lat.add_argument("--init-frames", type=int, default=300, metavar="N")
    lat.add_argument(
        "--detect-every",
        type=int,
        default=1000,
        metavar="N",
        help="frames between detector re-runs (0: none)",
    )
    lat.add_argument("--radius", type=float, default=6.0, metavar="PX")
    lat.add_argument(
        "--movie-frames",
        type=int,
        default=600,
        metavar="T",
        help="simulated frames, looped (default 600)",
    )
    lat.add_argument("--detector", choices=DETECTORS, default=None,
                     help="the engine's detector (initialisation and re-runs; default: the "
                     "engine's, learned for 2p)")
    lat.add_argument("--weights", metavar="PATH", help="learned detector weights")
    lat.add_argument("--search", action="store_true", help="search the highest sustained rate")
    lat.add_argument("--trial", type=float, default=3.0, metavar="S", help="seconds per rate")
    lat.add_argument("--max-hz", type=float, default=5000.0, help="upper end of the search")
    lat.add_argument("--realtime-priority", type=int, default=0, metavar="P",
                     help="SCHED_FIFO priority 1-98 for the engine's frame path and this "
                     "process's sender and subscriber (needs root or CAP_SYS_NICE; 0: off)")
    lat.add_argument("--stall-watch", action="store_true",
                     help="run a machine-stall watchdog (cyclictest-like, with steal time) "
                     "during the measurement and mark the late frames with what it saw")
    lat.add_argument("--config", metavar="FILE.toml", help="engine config (e.g. trigger rules)")
    lat.add_argument("--json", metavar="FILE.json", help="write the report")
    lat.add_argument("--plot", metavar="FILE.png", help="write the latency histogram")
    return p


def run(args: argparse.Namespace) -> int:
    import json

    from rtcal.engine.latency_bench import LatencyBenchConfig, plot_histogram, run_latency_bench

    cfg = LatencyBenchConfig(
        height=args.size[0],
        width=args.size[1],
        n_neurons=args.neurons,
        fps_hz=args.fps,
        duration_s=args.duration,
        init_frames=args.init_frames,
        detect_every_frames=args.detect_every,
        radius_px=args.radius,
        movie_frames=max(args.movie_frames, args.init_frames),
        search=args.search,
        trial_s=args.trial,
        search_max_hz=args.max_hz,
        config_path=args.config or "",
        detector=args.detector or "",
        weights=args.weights or "",
        realtime_priority=args.realtime_priority,
        stall_watch=args.stall_watch,
    )
    report = run_latency_bench(cfg)
    main_, warm = report["main"], report["warmup"]
    ev, wl = main_["events"], warm["latency"]
    print(
        f"events: {ev['n']}, latency p50 {ev['p50_ms']:.2f} ms, p99 {ev['p99_ms']:.2f} ms; "
        f"warm-up: initialisation {warm['init_seconds']:.1f} s, {wl['n']} frames held, "
        f"latency p50 {wl['p50_ms']:.0f} ms, max {wl['max_ms']:.0f} ms"
    )
    stages = main_["stages_ms"]
    print(
        "stages (p50 / p99 ms): "
        + ", ".join(f"{k} {v['p50_ms']:.3f} / {v['p99_ms']:.3f}" for k, v in stages.items())
    )
    gc_stats, stalls = report["engine"]["gc"], report["engine"]["stalls"]
    print(
        "engine pauses (n, max ms): "
        + ", ".join(
            f"gc {g} {gc_stats[g]['n']}, {gc_stats[g]['max_ms']:.1f}" for g in ("gen1", "gen2")
        )
        + "".join(f", {k} {v['n']}, {v['max_ms']:.1f}" for k, v in stalls.items())
        + f"; this process: gc gen2 {report['bench_gc']['gen2']['n']}, "
        f"{report['bench_gc']['gen2']['max_ms']:.1f}"
    )
    if cfg.realtime_priority:
        rt = {**report["engine"]["realtime"]["threads"], **{
            f"bench {k}": v for k, v in report["bench_realtime"]["threads"].items()}}
        print("real-time scheduling: " + ", ".join(f"{k} {v}" for k, v in rt.items()))
    if report["stall_watch"]:
        ms = main_["machine_stalls"]
        print(
            f"machine stalls (watchdog {ms['watchdog_policy']}, 1 ms sleeps): "
            f"{ms['n_late_wakeups']} wake-ups over 3 ms late, max {ms['max_late_ms']:.1f} ms; "
            f"steal time {ms['steal_total_ms']:.0f} ms; frames over {ms['over_ms']:g} ms: "
            f"{ms['n_over']}, {ms['n_with_machine_stall']} of them during a machine stall"
        )
    if report["search"]:
        print(f"highest sustained rate: {report['search']['max_sustained_hz']:.0f} Hz")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(report, f, indent=1)
        print(f"wrote {args.json}")
    if args.plot:
        plot_histogram(report, args.plot)
        print(f"wrote {args.plot}")
    return 0
