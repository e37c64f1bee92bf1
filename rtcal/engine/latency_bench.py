"""End-to-end latency of the live engine on loopback: ``rtcal bench latency``.

The engine runs as its own process (``rtcal serve``), as on a rig. This process
plays the microscope (a simulated movie sent at the frame rate, each frame
stamped with ``time.time_ns()`` as it is sent) and the subscriber (a thread that
stamps each result and event as it arrives). Latency = arrival - sent, per
frame, after the engine's warm-up (initialisation and its backlog). Per-stage
times come from each result's header: transport in (engine arrival - sent),
queue (waiting in the ring), motion, nmf, deconv, trigger, publish (result
ready -> published) and transport out (published -> arrival).

The rate search sends ``trial_s`` seconds at each rate (x1.5 up from the start
rate until one fails, then bisection); a rate is sustained when the engine
drops nothing, every result arrives, and latency does not build up (the worst
latency in the trial's second half stays under 10 frame periods + 5 ms).
"""

from __future__ import annotations

import gc
import os
import subprocess
import sys
import threading
import time
from collections import deque
from dataclasses import asdict, dataclass
from typing import NamedTuple

import numpy as np

from rtcal.client import ControlClient, FrameSender, ResultsSubscriber
from rtcal.engine.gc_pauses import GcPauses
from rtcal.engine.latency import percentiles_ms
from rtcal.engine.realtime import (
    MAX_PRIORITY,
    RealtimeReport,
    can_use_fifo,
    configure_zmq_context,
    restore_default_policy,
)
from rtcal.engine.stall_watch import StallWatch, machine_stalls_near
from rtcal.errors import RtcalError
from rtcal.net import Event, FrameResult
from rtcal.net.results import STAGES


class BenchError(RtcalError):
    pass


@dataclass(frozen=True)
class LatencyBenchConfig:
    """height, width, n_neurons: the simulated movie; fps_hz: send rate of the main
    measurement; duration_s: its length after warm-up; init_frames,
    detect_every_frames, radius_px: the engine's settings; search: also search the
    highest sustained rate (trials of trial_s from fps_hz up to search_max_hz);
    rules: trigger rules given to the engine (an event per frame that fires);
    detector, weights: the engine's detector (a name of
    ``rtcal.detect.factory.DETECTORS``; "": the
    engine's default, ``rtcal.detect.factory.DEFAULT_DETECTOR``) and weights;
    realtime_priority: 0, or SCHED_FIFO at this priority for the engine's
    receiver, frame loop and ZeroMQ threads and for this process's sender and
    subscriber (as a rig runs its acquisition and stimulation programs;
    ``rtcal.engine.realtime``); stall_watch: run the machine-stall watchdog
    (``rtcal.engine.stall_watch``) during the measurement and mark the late
    frames with what it saw."""

    height: int = 256
    width: int = 256
    n_neurons: int = 60
    fps_hz: float = 30.0
    duration_s: float = 20.0
    init_frames: int = 300
    detect_every_frames: int = 1000
    radius_px: float = 6.0
    movie_frames: int = 600
    search: bool = False
    trial_s: float = 3.0
    search_max_hz: float = 5000.0
    seed: int = 0
    config_path: str = ""
    detector: str = ""
    weights: str = ""
    realtime_priority: int = 0
    stall_watch: bool = False

    def __post_init__(self) -> None:
        if self.fps_hz <= 0 or self.duration_s <= 0 or self.trial_s <= 0:
            raise BenchError("fps_hz, duration_s and trial_s must be positive")
        if self.movie_frames < self.init_frames:
            raise BenchError("movie_frames must cover init_frames")
        p = self.realtime_priority
        if not isinstance(p, int) or isinstance(p, bool) or not 0 <= p <= MAX_PRIORITY:
            raise BenchError(f"realtime_priority must be 0 (off) or 1-{MAX_PRIORITY}")


class Arrival(NamedTuple):
    """What the bench keeps of one frame's result: its header's clocks (ns) and the
    subscriber's arrival stamp, not the result itself."""

    sequence: int
    t_sent_ns: int
    t_received_ns: int
    t_done_ns: int
    t_published_ns: int
    stage_ns: tuple[int, ...]
    warmup: bool
    t_arrived_ns: int


class EventArrival(NamedTuple):
    """What the bench keeps of one trigger event."""

    sequence: int
    t_sent_ns: int
    rule: str
    t_arrived_ns: int


class Collector(threading.Thread):
    """Receives results and events, stamping each with its arrival time.

    It keeps only the clocks (:class:`Arrival`, a tuple of numbers that the garbage
    collector stops tracking), not the decoded results: a 10-minute run kept
    18,000 results with their arrays and dataclass objects in this process, which
    also sends the frames, and the collector's growing heap is what Python's
    full collections walk."""

    def __init__(self, results: str, events: str, realtime: RealtimeReport | None = None) -> None:
        super().__init__(name="bench-subscriber", daemon=True)
        self.realtime = realtime
        self.sub = ResultsSubscriber(results, events)
        self.frames: dict[int, Arrival] = {}
        self.events: list[EventArrival] = []
        self.stop = threading.Event()

    def run(self) -> None:
        if self.realtime is not None:
            self.realtime.apply("subscriber")
        while not self.stop.is_set():
            msg = self.sub.recv(timeout_ms=100)
            t = time.time_ns()
            if isinstance(msg, FrameResult):
                self.frames[msg.sequence] = Arrival(
                    msg.sequence, msg.t_sent_ns, msg.t_received_ns, msg.t_done_ns,
                    msg.t_published_ns,
                    tuple(int(v) for v in msg.stage_ns), bool(msg.warmup), t,
                )
            elif isinstance(msg, Event):
                self.events.append(EventArrival(msg.sequence, msg.t_sent_ns, msg.rule, t))
        self.sub.close()


def start_engine_process(cfg: LatencyBenchConfig) -> tuple[subprocess.Popen, dict]:
    any_port = "tcp://127.0.0.1:*"
    cmd = [
        sys.executable,
        "-m",
        "rtcal",
        "serve",
        "--quiet",
        "--fps",
        str(cfg.fps_hz),
        "--radius",
        str(cfg.radius_px),
        "--init-frames",
        str(cfg.init_frames),
        "--detect-every",
        str(cfg.detect_every_frames),
        "--drop-policy",
        "oldest",
    ]
    cmd += [a for n in ("frames", "results", "events", "control") for a in (f"--{n}", any_port)]
    cmd += (["--detector", cfg.detector] if cfg.detector else []) + (
        ["--weights", cfg.weights] if cfg.weights else [])
    if cfg.realtime_priority:
        cmd += ["--realtime-priority", str(cfg.realtime_priority)]
    config_path = cfg.config_path or _default_config()
    cmd += ["--config", config_path]
    env = {**os.environ, "OPENBLAS_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    line = proc.stdout.readline()
    if not cfg.config_path:
        os.unlink(config_path)  # read by now
    if "listening:" not in line:
        proc.kill()
        raise BenchError(f"rtcal serve did not start: {line}{proc.stderr.read()}")
    return proc, dict(p.split() for p in line.split("listening:")[1].split(","))


# With no config given, one rule that fires now and then, so that event latency
# is measured too (components 0-2 exist after any initialisation worth timing).
BENCH_RULE = """[[triggers]]
name = "bench"
kind = "threshold"
neurons = [0, 1, 2]
threshold = 0.2
"""


def _default_config() -> str:
    import tempfile

    with tempfile.NamedTemporaryFile("w", suffix=".toml", delete=False) as f:
        f.write(BENCH_RULE)
    return f.name


def send_paced(sender: FrameSender, movie: np.ndarray, start: int, n: int, fps_hz: float,
               check=None) -> range:
    """Send n frames at fps_hz, sequence numbers from ``start``; returns them.
    check: called about once a second and whenever a send times out (it raises
    if the engine is gone)."""
    period = 1.0 / fps_hz
    t0 = t_check = time.perf_counter()
    for i in range(n):
        now = time.perf_counter()
        delay = t0 + i * period - now
        if delay > 0:
            time.sleep(delay)
        sender.sequence = start + i
        sent = sender.send(movie[(start + i) % len(movie)])
        if check is not None and (not sent or now - t_check > 1.0):
            t_check = now
            check()
    return range(start, start + n)


def _wait(pred, timeout_s: float) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if pred():
            return True
        time.sleep(0.05)
    return False


def phase_summary(col: Collector, seqs: range, dropped: int) -> dict:
    """Latency and stage figures of the frames ``seqs`` (ms)."""
    got = [col.frames[s] for s in seqs if s in col.frames]
    steady = [a for a in got if not a.warmup]
    lat = np.array([a.t_arrived_ns - a.t_sent_ns for a in steady], np.int64)
    warm = np.array([a.t_arrived_ns - a.t_sent_ns for a in got if a.warmup], np.int64)
    stages = {"transport_in": [a.t_received_ns - a.t_sent_ns for a in steady]}
    for i, name in enumerate(STAGES):
        stages[name] = [a.stage_ns[i] for a in steady]
    stages["publish"] = [a.t_published_ns - a.t_done_ns for a in steady]
    stages["transport_out"] = [a.t_arrived_ns - a.t_published_ns for a in steady]
    ev = [e.t_arrived_ns - e.t_sent_ns for e in col.events if e.sequence in seqs]
    first, last = seqs[0], seqs[-1]
    return {
        "n_sent": len(seqs),
        "n_results": len(got),
        "n_warmup": len(got) - len(steady),
        "lost": len(seqs) - len(got),
        "dropped": dropped,
        "latency": percentiles_ms(lat),
        "warmup_latency": percentiles_ms(warm),
        "events": percentiles_ms(np.array(ev, np.int64)),
        "stages_ms": {k: percentiles_ms(np.array(v, np.int64)) for k, v in stages.items()},
        "frames": [first, last],
        "worst_frames": _worst_frames(steady, lat, stages),
        "latency_ms_values": (lat / 1e6).tolist(),
    }


def _worst_frames(steady: list[Arrival], lat: np.ndarray, stages: dict, n: int = 10) -> list:
    """The n latest frames, each with its sender's wall-clock time (s, to line
    up with system logs) and its stages (ms): which part of the path made it
    late (the engine's stages, or a transport: a process off the CPU)."""
    worst = np.argsort(lat)[::-1][:n]
    return [
        {"sequence": steady[i].sequence, "t_sent_s": steady[i].t_sent_ns / 1e9,
         "latency_ms": round(float(lat[i]) / 1e6, 3),
         **{k: round(v[i] / 1e6, 3) for k, v in stages.items()}}
        for i in worst
    ]


def _sustained(phase: dict, fps_hz: float) -> bool:
    if phase["dropped"] or phase["lost"] or phase["n_warmup"]:
        return False
    lat = np.array(phase["latency_ms_values"])
    half = lat[len(lat) // 2 :]
    return bool(half.size and half.max() <= 10_000.0 / fps_hz + 5.0)


class _Session:
    """One engine process, its control client, a sender and a collector."""

    def __init__(self, cfg: LatencyBenchConfig, movie: np.ndarray) -> None:
        self.cfg, self.movie = cfg, movie
        self.proc, self.endpoints = start_engine_process(cfg)
        # the engine's output is read all along: a full pipe would block the engine
        self.engine_log: deque[str] = deque(maxlen=200)
        for stream in (self.proc.stdout, self.proc.stderr):
            threading.Thread(target=self._drain, args=(stream,), daemon=True).start()
        self.realtime = None
        if cfg.realtime_priority:  # before this process's first socket starts its I/O thread
            import zmq

            self.realtime = RealtimeReport(cfg.realtime_priority)
            self.realtime.record(
                "zmq_io", configure_zmq_context(zmq.Context.instance(), cfg.realtime_priority)
            )
            self.realtime.apply("sender")  # this thread sends the frames
        self.control = ControlClient(self.endpoints["control"], timeout_ms=10_000)
        self.col = Collector(self.endpoints["results"], self.endpoints["events"], self.realtime)
        self.col.start()
        time.sleep(0.3)
        # a send that waits 5 s means the engine takes no frames: check it (send_paced)
        self.sender = FrameSender(self.endpoints["frames"], timeout_ms=5000, hwm=100_000)
        if not self.sender.wait_ready(10):
            raise BenchError("the engine does not take frames")
        self.next_seq = 0

    def _drain(self, stream) -> None:
        for line in stream:
            self.engine_log.append(line.rstrip())

    def check_engine(self) -> None:
        """Raise if the engine process has exited, with the end of its output."""
        rc = self.proc.poll()
        if rc is not None:
            time.sleep(0.2)  # the drain threads' last lines
            tail = "\n".join(list(self.engine_log)[-25:])
            raise BenchError(f"the engine process exited (status {rc}) during the run; "
                             f"its last output:\n{tail}")

    def dropped(self) -> int:
        self.check_engine()
        return self.control.counters()["dropped"]

    def run_phase(self, fps_hz: float, n: int) -> dict:
        d0 = self.dropped()
        # This process is the measuring instrument: a full collection here (70 and
        # 107 ms in two 10-minute 512 x 512 runs) would delay the subscriber's
        # arrival stamps and count as the engine's latency. Its heap holds no
        # cycles worth collecting during a phase (the clocks are plain tuples).
        gc.disable()
        try:
            seqs = send_paced(self.sender, self.movie, self.next_seq, n, fps_hz,
                              self.check_engine)
            self.next_seq += n
            _wait(lambda: seqs[-1] in self.col.frames, 5.0 + n / fps_hz)
        finally:
            gc.enable()
        time.sleep(0.2)
        phase = phase_summary(self.col, seqs, self.dropped() - d0)
        _wait(self._drained, 60)  # the next phase starts with an empty engine
        return phase

    def _drained(self) -> bool:
        self.check_engine()
        c = self.control.counters()
        return c["processed"] + c["dropped"] + c["skipped_bad_frames"] >= self.next_seq

    def warm_up(self) -> float:
        """Send frames at the bench rate until the engine is initialised and caught up."""
        t0 = time.monotonic()
        fps = self.cfg.fps_hz
        while self.control.status()["state"] != "running":
            send_paced(self.sender, self.movie, self.next_seq, max(1, int(fps / 2)), fps,
                       self.check_engine)
            self.next_seq += max(1, int(fps / 2))
            if time.monotonic() - t0 > 600:
                raise BenchError("the engine did not finish initialising in 10 minutes")
        return time.monotonic() - t0

    def close(self) -> dict:
        status = self.control.status()
        self.control.stop()
        self.proc.wait(60)
        self.col.stop.set()
        self.col.join(2)
        self.sender.close(linger_ms=0)
        self.control.close()
        if self.realtime is not None:
            restore_default_policy()
        return status


def simulated_movie(cfg: LatencyBenchConfig) -> np.ndarray:
    from rtcal.sim import Simulation, make_config

    sim = make_config(
        "2p",
        height=cfg.height,
        width=cfg.width,
        n_neurons=cfg.n_neurons,
        n_frames=cfg.movie_frames,
        fps_hz=cfg.fps_hz,
        seed=cfg.seed,
    )
    return np.concatenate([c.images for c in Simulation(sim).chunks()])


def run_latency_bench(cfg: LatencyBenchConfig, log=print) -> dict:
    """Run the benchmark; returns the report (JSON-serialisable)."""
    movie = simulated_movie(cfg)
    log(f"movie {cfg.height}x{cfg.width}, {cfg.n_neurons} neurons, {len(movie)} frames (looped)")
    session = _Session(cfg, movie)
    # The subscriber's own collections would delay its receipts: reported too.
    pauses = GcPauses()
    try:
        warm_s = session.warm_up()
        pauses.install()
        n_warm = session.next_seq
        warm = phase_summary(session.col, range(0, n_warm), 0)
        log(f"warm-up {warm_s:.1f} s ({session.next_seq} frames)")
        watch = StallWatch(priority=_watch_priority(cfg)).start() if cfg.stall_watch else None
        main = session.run_phase(cfg.fps_hz, int(cfg.duration_s * cfg.fps_hz))
        lat = main["latency"]
        log(
            f"{cfg.fps_hz:g} Hz: p50 {lat['p50_ms']:.2f} ms, p99 {lat['p99_ms']:.2f} ms, "
            f"p99.9 {lat['p999_ms']:.2f} ms, max {lat['max_ms']:.2f} ms, "
            f"{main['dropped']} dropped, {main['lost']} lost"
        )
        search = _search(session, cfg, log) if cfg.search else None
        stalls = watch.stop() if watch is not None else None  # through the search too
        if stalls is not None:
            main["machine_stalls"] = attribute_stalls(
                session.col, range(main["frames"][0], main["frames"][1] + 1), stalls)
            trials = search["trials"] if search else []
            for w in main["worst_frames"] + [w for t in trials for w in t["worst_frames"]]:
                w.update(machine_stalls_near(stalls, w["t_sent_s"],
                                             w["t_sent_s"] + w["latency_ms"] / 1e3))
        status = session.close()
    except BaseException:
        session.proc.kill()
        raise
    finally:
        pauses.remove()
    return {
        "config": asdict(cfg),
        "warmup": {
            "seconds": warm_s,
            "frames": n_warm,
            "latency": warm["warmup_latency"],
            "init_seconds": status["init_seconds"],
        },
        "main": main,
        "search": search,
        "engine": {k: status[k] for k in ("counters", "n_components", "redetect", "latency_ms",
                                          "stalls", "gc", "realtime")},
        "bench_gc": pauses.summary(),
        "bench_realtime": session.realtime.summary() if session.realtime else None,
        "stall_watch": stalls,
    }


def _watch_priority(cfg: LatencyBenchConfig) -> int:
    """Above the engine's frame path where permitted (a FIFO watchdog that wakes late
    means the machine stalled), else the default scheduler (0)."""
    priority = min(MAX_PRIORITY, max(60, cfg.realtime_priority + 10))
    return priority if can_use_fifo(priority) == "" else 0


def attribute_stalls(col: Collector, seqs: range, stalls: dict, over_ms: float = 33.0,
                     machine_ms: float = 5.0) -> dict:
    """How many of the phase's frames later than ``over_ms`` were in flight while
    the watchdog woke ``machine_ms`` late or steal time was counted."""
    late = []
    for s in seqs:
        a = col.frames.get(s)
        if a is None or a.warmup:
            continue
        ms = (a.t_arrived_ns - a.t_sent_ns) / 1e6
        if ms > over_ms:
            near = machine_stalls_near(stalls, a.t_sent_ns / 1e9, a.t_arrived_ns / 1e9)
            late.append(near["machine_late_ms"] >= machine_ms or near["steal_ms"] > 0)
    return {"over_ms": over_ms, "n_over": len(late), "n_with_machine_stall": int(sum(late)),
            "watchdog_policy": stalls["policy"], "n_late_wakeups": stalls["n_late"],
            "max_late_ms": stalls["max_late_ms"], "steal_total_ms": stalls["steal_total_ms"]}


def _search(session: _Session, cfg: LatencyBenchConfig, log) -> dict:
    trials = []

    def trial(rate: float) -> bool:
        phase = session.run_phase(rate, max(10, int(cfg.trial_s * rate)))
        ok = _sustained(phase, rate)
        trials.append(
            {
                "fps_hz": rate,
                "sustained": ok,
                "dropped": phase["dropped"],
                "lost": phase["lost"],
                "latency": phase["latency"],
                "worst_frames": phase["worst_frames"][:3],
            }
        )
        log(
            f"  {rate:8.1f} Hz: {'ok' if ok else 'no'} (p99 {phase['latency']['p99_ms']:.2f} ms, "
            f"{phase['dropped']} dropped)"
        )
        return ok

    good, bad = 0.0, None
    rate = cfg.fps_hz
    while rate <= cfg.search_max_hz:
        if not trial(rate):
            bad = rate
            break
        good, rate = rate, rate * 1.5
    if bad is not None and good:
        for _ in range(3):
            mid = (good + bad) / 2
            good, bad = (mid, bad) if trial(mid) else (good, mid)
    return {"max_sustained_hz": good, "trials": trials}


def plot_histogram(report: dict, path: str) -> None:
    """Latency histogram of the main measurement (matplotlib, imported here)."""
    import matplotlib
    import matplotlib.ticker

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    lat = np.array(report["main"]["latency_ms_values"])
    cfg = report["config"]
    fig, ax = plt.subplots(figsize=(6, 3.5))
    if lat.size:
        ax.hist(lat, bins=np.logspace(np.log10(max(lat.min(), 1e-2)), np.log10(lat.max()), 60))
        ax.set_xscale("log")
        ax.xaxis.set_major_formatter(matplotlib.ticker.ScalarFormatter())
        for q, style in ((50, "-"), (99, "--"), (99.9, ":")):
            ax.axvline(np.percentile(lat, q), color="k", linestyle=style, label=f"p{q:g}")
        ax.legend()
    ax.set_xlabel("end-to-end latency (ms): sender's timestamp to result received")
    ax.set_ylabel("frames")
    ax.set_title(
        f"{cfg['height']}x{cfg['width']}, {cfg['n_neurons']} neurons, "
        f"{cfg['fps_hz']:g} Hz, {lat.size} frames"
    )
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
