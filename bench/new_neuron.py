"""How soon a neuron that starts firing during a live session appears in the
published results (the live-engine issue's target: within two detector periods).

    python bench/new_neuron.py                              # 2p 256x256, 60 neurons, 80 s
    python bench/new_neuron.py --mode 1p --neurons 40 --fps 20 --seed 23
    python bench/new_neuron.py --frames 3600 --detect-every 300 --json new.json
    python bench/new_neuron.py --detector seed              # the classical detector

A movie with ground truth is simulated in memory, then sent to a live engine
(`rtcal serve` in a child process, on loopback, lossless) at its frame rate, as
a microscope would, while the engine re-runs its detector every
--detect-every frames; the engine writes its results file. Its components
at the end are matched to the true cells as ``rtcal eval`` matches them (main
convention, IoU >= 0.5 after the global offset). A *late* cell is one whose
first spike comes after the initialisation window: the engine cannot have seen
it fire there. For each late cell found, the delay is the frame at which its
component was born (the column from which the results file, and the results
socket, carry it) minus the frame of its first spike, in frames and in
detector periods. A component born before its cell's first spike was found at
rest. Late cells never found are listed with their spike count and
single-spike SNR: many fire too rarely or too weakly to be found at all. A
cell whose first spike comes less than two periods before the end is listed
but not judged (it could still appear after the movie).

Printed: one row per late cell, then the summary (found within one and two
periods, median and worst delay). The delay counts from the first spike, which
may be a single weak one; the rows give the spike count and SNR to judge by.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import subprocess
import sys
import tempfile
import threading
import time
from collections import deque
from pathlib import Path

import numpy as np

from rtcal.cli import limit_blas_threads

limit_blas_threads()

from rtcal.client import ControlClient, FrameSender  # noqa: E402
from rtcal.engine.latency_bench import send_paced  # noqa: E402
from rtcal.metrics import evaluate, truth_from_arrays  # noqa: E402
from rtcal.sim import Simulation, make_config, static_truth  # noqa: E402
from rtcal.store import read_results  # noqa: E402


def simulate(args) -> tuple[np.ndarray, dict, np.ndarray, np.ndarray]:
    """(frames (T, H, W) uint16, static truth, spikes (K, T), calcium (K, T))."""
    cfg = make_config(args.mode, height=args.size[0], width=args.size[1],
                      n_neurons=args.neurons, n_frames=args.frames, fps_hz=args.fps,
                      seed=args.seed)
    sim = Simulation(cfg)
    chunks = list(sim.chunks())
    frames = np.concatenate([c.images for c in chunks])
    spikes = np.concatenate([c.spikes for c in chunks]).T
    calcium = np.concatenate([c.calcium for c in chunks]).T
    return frames, static_truth(sim), spikes, calcium


def run_engine(args, frames: np.ndarray, out: Path) -> dict:
    """Stream ``frames`` through `rtcal serve` at args.fps; returns its final status."""
    any_port = "tcp://127.0.0.1:*"
    cmd = [sys.executable, "-m", "rtcal", "serve", "--quiet", "--mode", args.mode,
           "--fps", str(args.fps), "--radius", str(args.radius),
           "--init-frames", str(args.init_frames), "--detect-every", str(args.detect_every),
           "--drop-policy", "block", "--out", str(out)]
    cmd += ["--detector", args.detector] if args.detector else []
    cmd += [a for n in ("frames", "results", "events", "control") for a in (f"--{n}", any_port)]
    env = {**os.environ, "OPENBLAS_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            env=env)
    line = proc.stdout.readline()
    while line and "listening:" not in line:
        line = proc.stdout.readline()
    if "listening:" not in line:
        proc.kill()
        raise SystemExit(f"rtcal serve did not start: {line}{proc.stdout.read()}")
    endpoints = dict(p.split() for p in line.split("listening:")[1].split(","))
    log: deque[str] = deque(maxlen=50)  # read all along: a full pipe would block the engine
    threading.Thread(target=lambda: [log.append(x) for x in proc.stdout], daemon=True).start()

    def check() -> None:
        if proc.poll() is not None:
            raise SystemExit("the engine exited during the run:\n" + "".join(log))

    control = ControlClient(endpoints["control"], timeout_ms=30_000)
    sender = FrameSender(endpoints["frames"], timeout_ms=5000, hwm=100_000)
    try:
        if not sender.wait_ready(10):
            raise SystemExit("the engine does not take frames")
        send_paced(sender, frames, 0, len(frames), args.fps, check)
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            c = control.counters()
            if c["processed"] + c["dropped"] + c["skipped_bad_frames"] >= len(frames):
                break
            time.sleep(0.1)
        status = control.status()
        control.stop()
        proc.wait(120)
    finally:
        sender.close(linger_ms=0)
        control.close()
        if proc.poll() is None:
            proc.kill()
    return status


def late_cells(args, truth: dict, spikes: np.ndarray, calcium: np.ndarray, out: Path) -> dict:
    """Match the engine's components to the truth and time each late cell's arrival."""
    results = read_results(out)
    report = evaluate(results, truth_from_arrays(truth["footprints"], calcium=calcium))
    alive = results.retired_frame < 0
    born = results.frame_index[np.minimum(results.born_frame[alive], len(results.frame_index) - 1)]
    m = report.matching
    found = {int(t): int(born[e]) for e, t, ok in zip(m.est_index, m.true_index, m.is_tp,
                                                      strict=True) if ok}
    fired = spikes > 0
    first = np.where(fired.any(axis=1), fired.argmax(axis=1), -1)
    period = args.detect_every
    rows = []
    for k in np.nonzero(first >= args.init_frames)[0]:
        b = found.get(int(k))
        delay = None if b is None else b - int(first[k])
        rows.append({
            "cell": int(k), "first_spike": int(first[k]), "spikes": int(spikes[k].sum()),
            "spikes_by_then": None if b is None else int(spikes[k, : max(b, 0) + 1].sum()),
            "snr": round(float(truth["snr"][k]), 2), "born": b, "delay_frames": delay,
            "delay_periods": None if delay is None else round(delay / period, 2),
        })
    # A cell that first fires within two periods of the end could still have appeared
    # after it: judged only where the movie runs two periods past its first spike.
    last = spikes.shape[1] - 1
    for r in rows:
        r["judged"] = r["first_spike"] + 2 * period <= last
    judged = [r for r in rows if r["judged"]]
    delays = np.array([r["delay_frames"] for r in rows if r["delay_frames"] is not None])
    n = len(rows)
    summary = {
        "late_cells": n, "judged": len(judged),
        "judged_within_2_periods": sum(
            r["delay_frames"] is not None and r["delay_frames"] <= 2 * period for r in judged),
        "judged_never": sum(r["delay_frames"] is None for r in judged),
        "found": int(delays.size),
        "found_at_rest": int((delays < 0).sum()) if delays.size else 0,
        "within_1_period": int((delays <= period).sum()) if delays.size else 0,
        "within_2_periods": int((delays <= 2 * period).sum()) if delays.size else 0,
        "median_delay_periods": float(np.median(delays) / period) if delays.size else math.nan,
        "max_delay_periods": float(delays.max() / period) if delays.size else math.nan,
        "f1_all_cells": round(report.main.f1, 3),
    }
    return {"rows": rows, "summary": summary}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--mode", choices=("2p", "1p"), default="2p")
    ap.add_argument("--size", nargs=2, type=int, default=(256, 256), metavar=("H", "W"))
    ap.add_argument("--neurons", type=int, default=60)
    ap.add_argument("--frames", type=int, default=2400)
    ap.add_argument("--fps", type=float, default=30.0)
    ap.add_argument("--radius", type=float, default=None, help="soma radius (2p 6, 1p 9)")
    ap.add_argument("--init-frames", type=int, default=300)
    ap.add_argument("--detect-every", type=int, default=300, metavar="N",
                    help="detector period in frames")
    ap.add_argument("--seed", type=int, default=17)
    ap.add_argument("--detector", choices=("seed", "learned", "learned+seed"),
                    help="the engine's detector (default: the engine's, learned for 2p)")
    ap.add_argument("--json", metavar="FILE.json")
    args = ap.parse_args()
    if args.radius is None:
        args.radius = 9.0 if args.mode == "1p" else 6.0
    if args.frames <= args.init_frames + args.detect_every:
        raise SystemExit("--frames must leave at least one detector period after initialisation")
    frames, truth, spikes, calcium = simulate(args)
    print(f"{args.mode} {args.size[0]}x{args.size[1]}, {args.neurons} neurons, {len(frames)} "
          f"frames at {args.fps:g} Hz (seed {args.seed}); detector every {args.detect_every} "
          f"frames; streaming for {len(frames) / args.fps:.0f} s ...", flush=True)
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "results.h5"
        status = run_engine(args, frames, out)
        res = late_cells(args, truth, spikes, calcium, out)
    red = status.get("redetect", {})
    res["engine"] = {"dropped": status["counters"]["dropped"] if "counters" in status else None,
                     "redetect_runs": red.get("runs"), "redetect_added": red.get("added")}
    print("| cell | first spike | spikes (by appearance) | SNR | appeared | delay frames "
          "| delay periods |")
    print("| --- | ---: | ---: | ---: | ---: | ---: | ---: |")
    for r in sorted(res["rows"], key=lambda r: r["first_spike"]):
        if r["born"] is None:
            never = "never" if r["judged"] else "not by the end (too late to judge)"
            print(f"| {r['cell']} | {r['first_spike']} | {r['spikes']} | {r['snr']} | {never} "
                  "| | |")
        else:
            print(f"| {r['cell']} | {r['first_spike']} | {r['spikes']} ({r['spikes_by_then']}) "
                  f"| {r['snr']} | {r['born']} | {r['delay_frames']} | {r['delay_periods']} |")
    s = res["summary"]
    print(f"late cells (first spike after frame {args.init_frames}): {s['late_cells']}; found "
          f"{s['found']} ({s['found_at_rest']} before they fired); appeared within 1 period: "
          f"{s['within_1_period']}, within 2 periods: {s['within_2_periods']} of the "
          f"{s['found']} found; delay median {s['median_delay_periods']:.2f}, max "
          f"{s['max_delay_periods']:.2f} periods; F1 over all cells {s['f1_all_cells']}; "
          f"engine: {res['engine']}")
    print(f"late cells with two periods left after their first spike: {s['judged']}; appeared "
          f"within 2 periods: {s['judged_within_2_periods']}; never: {s['judged_never']}")
    if args.json:
        Path(args.json).write_text(json.dumps(res, indent=1))
        print(f"wrote {args.json}")


if __name__ == "__main__":
    main()
