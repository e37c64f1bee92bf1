"""``rtcal demo``: the live engine on loopback, fed by a simulated microscope.

Live (the default): simulate a 2-photon recording with known truth (rtcal.sim,
in memory); start the engine (``rtcal serve``, its own process, every socket on
tcp://127.0.0.1 on a free port, a coincidence and a threshold trigger rule from
its config file); send the frames at the frame rate as a microscope does (a
FrameSender that never waits: what the engine cannot take is dropped and
counted); subscribe to results and events, stamping each on arrival; show
progress; stop the engine over its control socket, which closes the results
file complete; score the file against the truth; write the report. The engine
process, the subscriber and the paced sender are those of ``rtcal bench
latency`` (``rtcal.engine.latency_bench``), so latency means the same in both:
sender's timestamp -> result received by the subscriber.

The movie is simulated before the engine starts: rendering it (about 7 ms per
256 x 256 frame on a loaded 2-core machine) would otherwise take CPU from the
engine, which a real microscope does not.

``--offline``: the file-based path with no sockets: simulate to disk, run the
pipeline on the file (``rtcal.engine.run``), evaluate, report.
"""

from __future__ import annotations

import argparse
import json
from contextlib import contextmanager
from pathlib import Path

DESCRIPTION = """\
Start the live engine on loopback (tcp://127.0.0.1, free ports), a simulated
2-photon microscope sending frames at --fps and a listener; show live progress
(frames, neurons found, latency, drops, detector re-runs, trigger events); then
score the results file against the simulated truth and write the report
(report.png, report.html, eval.json, live.json) to --out. No network needed.
--offline runs the same recording from a file instead, without sockets.
"""

POLL_S = 0.25  # progress refresh and control-status polling period


def add_parser(sub, name: str, help_text: str) -> argparse.ArgumentParser:
    from rtcal.detect.factory import DETECTORS

    p = sub.add_parser(name, help=help_text, description=DESCRIPTION)
    p.add_argument("--out", default="rtcal-demo", metavar="DIR", help="output folder")
    p.add_argument("--frames", type=int, default=1500, metavar="T", help="movie length")
    p.add_argument("--neurons", type=int, default=60, metavar="K", help="simulated neurons")
    p.add_argument("--size", type=int, nargs=2, default=(256, 256), metavar=("H", "W"))
    p.add_argument("--fps", type=float, default=30.0, metavar="HZ", help="frame rate sent")
    p.add_argument("--seed", type=int, default=7, metavar="S", help="simulation seed")
    p.add_argument(
        "--detector", choices=DETECTORS, default=None,
        help="footprint detector: learned (the shipped weights; default), seed (classical) "
        "or learned+seed",
    )
    p.add_argument(
        "--offline", action="store_true", help="run from a movie file, without the live engine"
    )
    return p


def run(args: argparse.Namespace) -> int:
    from rich.console import Console

    from rtcal.errors import RtcalError

    if args.frames < 100 or args.neurons < 1 or min(args.size) < 32 or args.fps <= 0:
        raise RtcalError(
            "rtcal demo needs --frames >= 100, --neurons >= 1, --size >= 32 32 and --fps > 0; "
            f"got {args.frames}, {args.neurons}, {args.size[0]} {args.size[1]}, {args.fps}"
        )
    console = Console()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    return _run_offline(args, out, console) if args.offline else _run_live(args, out, console)


# ---------------------------------------------------------------- settings
def _sim_config(args: argparse.Namespace):
    from rtcal.sim import make_config

    return make_config(
        "2p",
        height=args.size[0],
        width=args.size[1],
        n_frames=args.frames,
        n_neurons=args.neurons,
        fps_hz=args.fps,
        seed=args.seed,
    )


def trigger_rules(n_neurons: int, fps_hz: float) -> list[dict]:
    """Two rules on the first components found: k of a small ensemble spiking within
    ~0.2 s, and component 0's dF/F crossing 0.5. A rule naming a component that does
    not exist yet waits for it (docs/triggers.md)."""
    n_set = min(10, max(3, n_neurons // 6))
    return [
        {
            "name": "ensemble",
            "kind": "coincidence",
            "neurons": list(range(n_set)),
            "k": max(2, n_set // 3),
            "window_frames": max(2, round(0.2 * fps_hz)),
            "refractory_s": 0.5,
        },
        {"name": "cell0_up", "kind": "threshold", "neurons": [0], "threshold": 0.5},
    ]


def engine_toml(results_path: Path, rules: list[dict]) -> str:
    """The engine's config file: the results file and the trigger rules (the bench
    passes frame rate, radius, initialisation and detector period as flags)."""
    lines = ["[engine]", f"results_path = {json.dumps(str(results_path))}", ""]
    for rule in rules:  # JSON strings, numbers and lists of numbers are valid TOML
        lines.append("[[triggers]]")
        lines += [f"{key} = {json.dumps(value)}" for key, value in rule.items()]
        lines.append("")
    return "\n".join(lines)


def _bench_config(args: argparse.Namespace, sim_cfg, config_path: Path):
    """The engine's settings, as ``rtcal bench latency`` takes them: initialisation
    on the first quarter (at most 300 frames, as ``rtcal run``), then about five
    detector re-runs over the rest."""
    from rtcal.engine.latency_bench import LatencyBenchConfig

    init_frames = min(300, max(40, args.frames // 4))
    return LatencyBenchConfig(
        height=args.size[0],
        width=args.size[1],
        n_neurons=args.neurons,
        fps_hz=args.fps,
        init_frames=init_frames,
        detect_every_frames=max(50, (args.frames - init_frames) // 5),
        radius_px=0.5 * (sim_cfg.radius_min_px + sim_cfg.radius_max_px),
        movie_frames=args.frames,
        seed=args.seed,
        config_path=str(config_path),
        detector=args.detector or "",
    )


# ---------------------------------------------------------------- live run
def _run_live(args: argparse.Namespace, out: Path, console) -> int:
    import time

    from rtcal.client import ControlError
    from rtcal.engine.latency_bench import BenchError

    t0 = time.perf_counter()
    sim_cfg = _sim_config(args)
    with console.status("simulating the recording"):
        movie, mean_image = simulate(sim_cfg, out / "truth.npz")
    console.print(
        f"simulated {len(movie)} frames of {sim_cfg.height}x{sim_cfg.width}, "
        f"{sim_cfg.n_neurons} neurons, in {time.perf_counter() - t0:.1f} s -> {out / 'truth.npz'}"
    )
    results_path = (out / "results.h5").resolve()
    results_path.unlink(missing_ok=True)
    config_path = out / "engine.toml"
    config_path.write_text(engine_toml(results_path, trigger_rules(args.neurons, args.fps)))
    cfg = _bench_config(args, sim_cfg, config_path)
    with _engine_process(cfg, console) as (proc, endpoints, stderr):
        console.print(
            "engine: "
            + ", ".join(f"{k} {v}" for k, v in endpoints.items())
            + f"; init {cfg.init_frames} frames, detector every {cfg.detect_every_frames}"
        )
        try:
            live = _stream(cfg, movie, proc, endpoints, console)
        except (ControlError, BenchError) as e:
            raise BenchError(f"{e}\nthe engine's last words:\n{''.join(stderr)}") from e
    (out / "live.json").write_text(json.dumps(live.to_dict(), indent=2, allow_nan=False) + "\n")
    _report(out, results_path, live, mean_image, console)
    console.print(f"demo done in {time.perf_counter() - t0:.1f} s")
    return 0


@contextmanager
def _engine_process(cfg, console):
    """``rtcal serve`` as its own process, started as ``rtcal bench latency`` starts it;
    yields (process, endpoints, last stderr lines). Its stderr is read on a thread
    (a full pipe would stall the engine). Ctrl-C stops it cleanly, so that the
    results file is complete; any other failure kills it."""
    import collections
    import signal
    import threading

    from rtcal.engine.latency_bench import start_engine_process

    with console.status("starting the engine"):
        proc, endpoints = start_engine_process(cfg)
    stderr: collections.deque[str] = collections.deque(maxlen=20)
    threading.Thread(target=stderr.extend, args=(proc.stderr,), daemon=True).start()
    try:
        yield proc, endpoints, stderr
    except KeyboardInterrupt:
        proc.send_signal(signal.SIGINT)
        proc.wait(60)
        raise
    finally:
        if proc.poll() is None:  # _stream stops the engine itself when all goes well
            proc.kill()
            proc.wait()


def simulate(sim_cfg, truth_path: Path):
    """Render the whole recording into memory and write its truth file (the
    ``truth.npz`` of ``rtcal simulate``, without the movie). Returns the movie
    (T, H, W) uint16 and its mean image (H, W) float32."""
    import numpy as np

    from rtcal.sim import Simulation, static_truth

    sim = Simulation(sim_cfg)
    T, K = sim_cfg.n_frames, sim_cfg.n_neurons
    movie = np.empty((T, sim_cfg.height, sim_cfg.width), np.uint16)
    calcium, spikes = np.zeros((K, T), np.float32), np.zeros((K, T), np.float32)
    shifts = np.zeros((T, 2), np.float32)
    for chunk in sim.chunks():
        sl = slice(chunk.start, chunk.start + len(chunk.images))
        movie[sl], calcium[:, sl], spikes[:, sl] = chunk.images, chunk.calcium.T, chunk.spikes.T
        shifts[sl] = chunk.shifts
    np.savez_compressed(
        truth_path, **static_truth(sim), calcium=calcium, spikes=spikes, shifts=shifts
    )
    return movie, movie.mean(axis=0, dtype=np.float64).astype(np.float32)


def _stream(cfg, movie, proc, endpoints: dict, console):
    """Send the movie at the frame rate while showing progress; then stop the engine
    (the results file is closed complete) and return the ``LiveRun``."""
    import threading
    import time

    from rich.live import Live

    from rtcal.client import ControlClient, FrameSender
    from rtcal.engine.latency_bench import BenchError, Collector, send_paced
    from rtcal.report.progress import progress_table

    control = ControlClient(endpoints["control"], timeout_ms=10_000)
    listener = Collector(endpoints["results"], endpoints["events"])
    listener.start()
    time.sleep(0.3)  # subscriptions reach the engine before the first result
    sender = FrameSender(endpoints["frames"], timeout_ms=0)  # a microscope never waits
    microscope = threading.Thread(
        target=send_paced, args=(sender, movie, 0, len(movie), cfg.fps_hz), daemon=True
    )
    try:
        if not sender.wait_ready(10):
            raise BenchError("the engine does not take frames")
        t_start = time.time_ns()
        microscope.start()
        tracker = _Tracker(len(movie), t_start)
        deadline = time.monotonic() + len(movie) / cfg.fps_hz + 120
        with Live(console=console, refresh_per_second=4) as view:
            while True:
                status = control.status()
                view.update(progress_table(tracker.snapshot(status, sender, listener)))
                if not microscope.is_alive() and _drained(status, sender):
                    break
                if time.monotonic() > deadline:
                    console.print("[red]the engine did not finish in time; stopping it[/red]")
                    break
                time.sleep(POLL_S)
        if not console.is_terminal:
            console.line()  # rich leaves the final table's last line open there
        time.sleep(0.5)  # the last results reach the listener
        status = control.status()
        control.stop()
        if proc.wait(120) != 0:
            raise BenchError(f"rtcal serve exited with {proc.returncode}")
    finally:
        listener.stop.set()
        listener.join(2)
        if not microscope.is_alive():  # a ZeroMQ socket must not close under its user
            sender.close(linger_ms=0)
        control.close()
    return tracker.live_run(cfg, status, sender, listener)


def _drained(status: dict, sender) -> bool:
    """Every frame sent has arrived and been processed (or dropped by the engine)."""
    c = status["counters"]
    done = c["processed"] + c["dropped"] + c["skipped_bad_frames"]
    return status["state"] == "running" and c["received"] >= sender.n_sent and done >= c["received"]


class _Tracker:
    """Progress snapshots, and the frame at which each detector re-run was seen."""

    def __init__(self, n_total: int, t_start_ns: int) -> None:
        self.n_total = n_total
        self.t_start_ns = t_start_ns
        self.redetect_frames: list[int] = []
        self._runs = 0

    def snapshot(self, status: dict, sender, listener):
        import time

        import numpy as np

        from rtcal.report.progress import LiveProgress

        got = list(listener.frames.values())
        lat = np.array([a.t_arrived_ns - a.t_sent_ns for a in got if not a.warmup],
                       np.float64) / 1e6
        self.see_redetect(status, max((a.sequence for a in got), default=0))
        c = status["counters"]
        p50, p99 = np.percentile(lat, [50, 99]) if lat.size else (np.nan, np.nan)
        return LiveProgress(
            elapsed_s=(time.time_ns() - self.t_start_ns) / 1e9,
            state=status["state"],
            n_total=self.n_total,
            n_sent=sender.n_sent,
            n_sender_dropped=sender.n_dropped,
            n_processed=c["processed"],
            n_results=len(got),
            n_components=status["n_components"],
            p50_ms=float(p50),
            p99_ms=float(p99),
            n_dropped=c["dropped"],
            n_gap_frames=c["gap_frames"],
            n_malformed=c["malformed_total"],
            redetect_runs=self._runs,
            redetect_added=status["redetect"]["added"],
            n_events=len(listener.events),
        )

    def see_redetect(self, status: dict, newest: int) -> None:
        """Note re-runs finished since the last status at ``newest``, the newest frame
        result at the listener."""
        runs = status["redetect"]["runs"]
        self.redetect_frames += [newest] * (runs - self._runs)
        self._runs = max(runs, self._runs)

    def live_run(self, cfg, status: dict, sender, listener):
        from collections import Counter

        import numpy as np

        from rtcal.engine.latency import percentiles_ms
        from rtcal.engine.latency_bench import phase_summary
        from rtcal.report.live_run import LiveRun

        phase = phase_summary(listener, range(self.n_total), status["counters"]["dropped"])
        self.see_redetect(status, max(listener.frames, default=0))
        arrivals = [a.t_arrived_ns for a in listener.frames.values()]
        warm = {s for s, a in listener.frames.items() if a.warmup}
        events = [e for e in listener.events if e.sequence not in warm]
        event_ns = np.array([e.t_arrived_ns - e.t_sent_ns for e in events], np.int64)
        return LiveRun(
            fps_hz=cfg.fps_hz,
            init_frames=cfg.init_frames,
            detect_every_frames=cfg.detect_every_frames,
            n_sent=sender.n_sent,
            n_sender_dropped=sender.n_dropped,
            n_results=phase["n_results"],
            n_warmup=phase["n_warmup"],
            latency_ms=np.array(phase["latency_ms_values"], np.float64),
            latency=phase["latency"],
            warmup_latency=phase["warmup_latency"],
            event_latency=percentiles_ms(event_ns),
            stages_ms=phase["stages_ms"],
            counters=status["counters"],
            events_by_rule=dict(Counter(e.rule for e in listener.events)),
            n_warmup_events=len(listener.events) - len(events),
            redetect={k: v for k, v in status["redetect"].items() if k != "seconds"},
            redetect_frames=np.array(self.redetect_frames, np.int64),
            init_seconds=float(status["init_seconds"] or 0.0),
            stream_s=(max(arrivals, default=self.t_start_ns) - self.t_start_ns) / 1e9,
            poll_s=POLL_S,
        )


def _report(out: Path, results_path: Path, live, mean_image, console) -> None:
    """Score the results file against the truth (eval.json; a run that found no
    component cannot be scored, and says so); write report.png and report.html."""
    from rtcal.cli.evaluate import print_report
    from rtcal.metrics import EvaluationError, evaluate, load_truth, report_to_dict
    from rtcal.report.html import write_html_report
    from rtcal.report.live_figure import save_live_figure
    from rtcal.report.live_run import eval_table
    from rtcal.report.progress import print_tables
    from rtcal.store import read_results

    results = read_results(results_path)
    truth = load_truth(out / "truth.npz", results.height, results.width)
    (out / "eval.json").unlink(missing_ok=True)  # an earlier run's score is not this one's
    try:
        report = report_to_dict(evaluate(results, truth))
    except EvaluationError as e:
        console.print(f"[red]not scored: {e}[/red]")
        scored = [("scored against the simulated truth", [("not scored", str(e))])]
    else:
        print_report(report, console)
        (out / "eval.json").write_text(json.dumps(report, indent=2, allow_nan=False) + "\n")
        scored = [eval_table(report)]
    print_tables(console, live.tables())
    figure = save_live_figure(
        out / "report.png",
        results,
        live,
        mean_image=mean_image,
        truth_footprints=truth.footprints.toarray().reshape(-1, results.height, results.width),
        extra_tables=scored,
    )
    html = write_html_report(
        out / "report.html",
        title="rtcal demo: live run",
        figure_png=figure,
        tables=[*live.tables(), *scored],
        notes=_notes(results, truth.n_neurons, live, results_path.name),
    )
    written = [results_path, *(p for p in (out / "eval.json",) if p.is_file()),
               out / "live.json", figure, html]
    console.print("wrote " + ", ".join(map(str, written)))


def _notes(results, n_true: int, live, results_name: str) -> list[str]:
    state = "complete" if results.complete else "INCOMPLETE"
    return [
        f"{results.width}x{results.height} px, {n_true} simulated neurons, {live.fps_hz:g} Hz: "
        f"{live.n_sent} frames sent over tcp://127.0.0.1 to the live engine (rtcal serve); "
        f"results file {results_name} {state}, {results.n_frames} frames, "
        f"{results.n_components} components.",
        "Footprints: found in red, truth in green, on the mean image of the frames sent. "
        "Raster: denoised traces; the initialisation window shaded; detector re-runs dashed "
        f"(when the listener saw them finish, within {live.poll_s * live.fps_hz:.0f} frames); "
        "components added after initialisation marked at their first frame. Latency: "
        "sender's timestamp to the result's arrival at the listener, after warm-up.",
    ]


# ------------------------------------------------------------- offline run
def _run_offline(args: argparse.Namespace, out: Path, console) -> int:
    import time

    from rtcal.cli.evaluate import print_report
    from rtcal.cli.run import print_summary, with_progress
    from rtcal.detect.factory import describe_detector, detector_from_section
    from rtcal.engine.pipeline import pipeline_config
    from rtcal.engine.run import run_frames
    from rtcal.io import open_movie
    from rtcal.metrics import evaluate, load_truth, report_to_dict
    from rtcal.report.figure import save_demo_figure
    from rtcal.report.html import write_html_report
    from rtcal.report.live_run import eval_table
    from rtcal.sim import write_simulation
    from rtcal.store import read_results

    cfg = _sim_config(args)
    t0 = time.perf_counter()
    with console.status("simulating"):
        paths = write_simulation(out / "sim", cfg)
    console.print(
        f"simulated {args.frames} frames, {args.neurons} neurons -> {paths.movie} "
        f"({time.perf_counter() - t0:.1f} s)"
    )
    radius = 0.5 * (cfg.radius_min_px + cfg.radius_max_px)
    results_path = out / "results.h5"
    config = pipeline_config(args.fps, radius)
    detector = detector_from_section(None, config, name=args.detector)
    with open_movie(paths.movie) as movie:
        summary = run_frames(
            with_progress(movie, console),
            results_path,
            config,
            height=cfg.height,
            width=cfg.width,
            detector=detector,
            attrs={"detector": describe_detector(detector)},
            # about five re-runs over the rest, as the live demo
            detect_every=max(50, (args.frames - config.init_frames) // 5),
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
    html = write_html_report(
        out / "report.html",
        title="rtcal demo: offline run",
        figure_png=figure,
        tables=[eval_table(report)],
        notes=[f"{paths.movie} run frame by frame with rtcal.engine.run (no sockets)."],
    )
    console.print(f"wrote {results_path}, {out / 'eval.json'}, {figure}, {html}")
    return 0
