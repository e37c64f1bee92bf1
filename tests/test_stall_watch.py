"""The machine-stall watchdog (rtcal.engine.stall_watch) and how the latency bench
uses it to mark late frames."""

import os
import threading
import time

import pytest

import rtcal.engine.stall_watch as sw
from rtcal.engine.latency_bench import Arrival, attribute_stalls
from rtcal.net.results import STAGES


def test_steal_is_read_from_the_cpu_line(tmp_path):
    stat = tmp_path / "stat"
    stat.write_text("cpu  5371899 179101 647736 8499271 15091 0 5309 10795 0 0\ncpu0 1 2 3\n")
    assert sw.read_steal_ticks(str(stat)) == 10795
    stat.write_text("intr 1 2 3\n")
    assert sw.read_steal_ticks(str(stat)) is None
    assert sw.read_steal_ticks(str(tmp_path / "missing")) is None


def test_a_late_wake_up_is_recorded_with_its_time(monkeypatch):
    real_sleep = time.sleep
    calls = [0]

    def sleep(s):  # the 50th sleep overruns by 30 ms: what a stalled machine does
        calls[0] += 1
        real_sleep(s + (0.03 if calls[0] == 50 else 0.0))

    monkeypatch.setattr(sw.time, "sleep", sleep)
    r, w = os.pipe()
    threading.Timer(0.5, lambda: os.write(w, b"x")).start()
    t0 = time.time()
    summary = sw.watch(r, threshold_ms=10.0)
    os.close(r)
    os.close(w)
    assert summary["n_wakeups"] >= 50
    assert summary["n_late"] >= 1 and 28 <= summary["max_late_ms"] < 200
    t_late = max(summary["late"], key=lambda e: e[1])[0]
    assert t0 < t_late < time.time()
    assert summary["policy"] in ("SCHED_OTHER", "unknown")  # priority 0: untouched


def test_the_child_process_reports_when_stopped():
    watch = sw.StallWatch(threshold_ms=3.0).start()
    time.sleep(0.6)
    summary = watch.stop()
    assert summary["seconds"] >= 0.3 and summary["n_wakeups"] > 100
    assert summary["n_late"] == len(summary["late"])
    assert summary["refused"] == ""
    with pytest.raises(RuntimeError, match="before start"):
        watch.stop()


def test_stalls_are_matched_to_the_frames_in_flight():
    summary = {"late": [(10.00, 4.0), (10.05, 25.0), (20.0, 80.0)],
               "steal": [(10.1, 30.0), (30.0, 10.0)], "policy": "SCHED_FIFO 60",
               "n_late": 3, "max_late_ms": 80.0, "steal_total_ms": 40.0}
    assert sw.machine_stalls_near(summary, 10.0, 10.04) == {"machine_late_ms": 25.0,
                                                             "steal_ms": 30.0}
    assert sw.machine_stalls_near(summary, 15.0, 15.1) == {"machine_late_ms": 0.0,
                                                            "steal_ms": 0.0}

    class Col:
        frames = {}

    ms = 1_000_000
    stage = tuple(0 for _ in STAGES)
    for s, (sent_s, lat_ms) in enumerate([(10.0, 40), (15.0, 50), (20.0, 5), (25.0, 34)]):
        t = int(sent_s * 1e9)
        Col.frames[s] = Arrival(s, t, t, t, t, stage, False, t + lat_ms * ms)
    got = attribute_stalls(Col(), range(4), summary)
    assert (got["n_over"], got["n_with_machine_stall"]) == (3, 1)  # 10.0 in a stall; 15, 25 not
    assert got["watchdog_policy"] == "SCHED_FIFO 60" and got["steal_total_ms"] == 40.0
