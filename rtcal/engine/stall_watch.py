"""Machine stalls, measured apart from the engine (in the spirit of ``cyclictest``).

When a frame is late, either the engine was slow or the machine did not run
it: another process had the core, or, on a virtual machine, the hypervisor
took the virtual CPU away ("steal" time). ``StallWatch`` tells the two apart.
It starts a small child process (``python -m rtcal.engine.stall_watch``) whose
one thread sleeps 1 ms in a loop, under ``SCHED_FIFO`` above the engine's
priority where permitted (``rtcal.engine.realtime``), and records every wake-up
later than ``threshold_ms``; every 100 ms it also reads the machine's steal
time from ``/proc/stat``. A FIFO thread above everything else that wakes late
means the whole machine (or its virtual CPU) stalled, which no scheduling
inside the guest can prevent.

``rtcal bench latency --stall-watch`` runs it alongside the measurement and
marks each of the worst frames with the watchdog's lateness and the steal time
seen while that frame was in flight (``machine_stalls_near``). On the 2-core
development VM, with the engine's frame path under SCHED_FIFO, the worst
frames of a 2-minute 512 x 512 run (24-41 ms) fell in a stretch where the
watchdog woke up to 25 ms late and 50 ms of steal were counted in 400 ms.

The child stops when its stdin closes and prints one JSON object (``summary``)
on stdout.
"""

from __future__ import annotations

import json
import os
import select
import subprocess
import sys
import time

STEAL_FIELD = 8  # /proc/stat "cpu" line: user nice system idle iowait irq softirq steal
MAX_EVENTS = 20_000


def read_steal_ticks(path: str = "/proc/stat") -> int | None:
    """The machine's total steal time in clock ticks (USER_HZ), or None where
    there is no such counter (not Linux, or an old kernel)."""
    try:
        with open(path) as f:
            parts = f.readline().split()
        return int(parts[STEAL_FIELD]) if parts and parts[0] == "cpu" else None
    except (OSError, IndexError, ValueError):
        return None


def watch(stop_fd: int, *, period_s: float = 0.001, threshold_ms: float = 3.0,
          priority: int = 0, steal_every_s: float = 0.1) -> dict:
    """Sleep ``period_s`` in a loop until ``stop_fd`` becomes readable; returns the
    summary. Wall-clock times are ``time.time()`` seconds."""
    from rtcal.engine.realtime import make_thread_realtime, thread_policy

    refused = make_thread_realtime(priority) if priority else ""
    tick_ms = 1000.0 / os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 10.0
    late: list[tuple[float, float]] = []
    steal: list[tuple[float, float]] = []
    steal0 = read_steal_ticks()
    n = 0
    t_start = time.monotonic()
    t_check = t_start
    while True:
        t0 = time.monotonic()
        time.sleep(period_s)
        t1 = time.monotonic()
        n += 1
        lateness_ms = (t1 - t0 - period_s) * 1e3
        if lateness_ms > threshold_ms and len(late) < MAX_EVENTS:
            late.append((time.time(), lateness_ms))
        if t1 - t_check >= steal_every_s:
            t_check = t1
            s1 = read_steal_ticks()
            if s1 is not None and steal0 is not None and s1 > steal0 and len(steal) < MAX_EVENTS:
                steal.append((time.time(), (s1 - steal0) * tick_ms))
            steal0 = s1
            if select.select([stop_fd], [], [], 0)[0]:
                break
    lat = [v for _, v in late]
    return {
        "seconds": time.monotonic() - t_start,
        "period_ms": period_s * 1e3,
        "threshold_ms": threshold_ms,
        "policy": thread_policy(),
        "refused": refused,
        "n_wakeups": n,
        "n_late": len(late),
        "max_late_ms": max(lat, default=0.0),
        "steal_available": steal0 is not None,
        "steal_total_ms": sum(v for _, v in steal),
        "late": late,
        "steal": steal,
    }


class StallWatch:
    """The watchdog in a child process: ``start()``, then ``stop()`` -> its summary."""

    def __init__(self, *, priority: int = 0, threshold_ms: float = 3.0) -> None:
        self.priority, self.threshold_ms = priority, threshold_ms
        self._proc: subprocess.Popen | None = None

    def start(self) -> StallWatch:
        cmd = [sys.executable, "-m", "rtcal.engine.stall_watch",
               "--priority", str(self.priority), "--threshold-ms", str(self.threshold_ms)]
        self._proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                      stderr=subprocess.PIPE, text=True)
        return self

    def stop(self, timeout_s: float = 10.0) -> dict:
        if self._proc is None:
            raise RuntimeError("StallWatch.stop() before start()")
        try:
            out, err = self._proc.communicate(input="", timeout=timeout_s)  # closes stdin
        except subprocess.TimeoutExpired:
            self._proc.kill()
            out, err = self._proc.communicate()
        self._proc = None
        try:
            return json.loads(out)
        except json.JSONDecodeError as e:
            raise RuntimeError(f"the stall watchdog failed: {err.strip()[-300:]}") from e


def machine_stalls_near(summary: dict, t_start_s: float, t_end_s: float,
                        margin_s: float = 0.05) -> dict:
    """What the watchdog saw while one frame was in flight (its sender's time to
    its arrival, widened by ``margin_s``): its longest late wake-up (ms) and the
    steal time (ms) of the steal samples in that span (each sample covers the
    ``steal_every_s`` before its time stamp)."""
    a, b = t_start_s - margin_s, t_end_s + margin_s
    late = [v for t, v in summary["late"] if a <= t <= b]
    steal = [v for t, v in summary["steal"] if a <= t <= b + 0.1]
    return {"machine_late_ms": round(max(late, default=0.0), 2),
            "steal_ms": round(sum(steal), 1)}


def main(argv: list[str] | None = None) -> int:
    import argparse

    p = argparse.ArgumentParser(description="machine stall watchdog (stops when stdin closes)")
    p.add_argument("--priority", type=int, default=0)
    p.add_argument("--threshold-ms", type=float, default=3.0)
    p.add_argument("--period-ms", type=float, default=1.0)
    args = p.parse_args(argv)
    summary = watch(sys.stdin.fileno(), period_s=args.period_ms / 1e3,
                    threshold_ms=args.threshold_ms, priority=args.priority)
    json.dump(summary, sys.stdout)
    return 0


if __name__ == "__main__":
    sys.exit(main())
