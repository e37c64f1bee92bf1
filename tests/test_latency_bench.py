"""`rtcal bench latency`: the figures it computes from arrival stamps, and a short
real run of the engine process on loopback."""

import numpy as np

from rtcal.engine.latency_bench import (
    Arrival,
    EventArrival,
    LatencyBenchConfig,
    phase_summary,
    run_latency_bench,
)
from rtcal.net.results import STAGES


class _Frames:
    def __init__(self, frames, events=()):
        self.frames, self.events = frames, list(events)


def test_phase_summary_splits_latency_into_stages_and_leaves_warm_up_out():
    ms = 1_000_000
    frames = {}
    for s in range(10):
        sent = 1000 * ms + s * 33 * ms
        stage = tuple((i + 1) * ms for i in range(len(STAGES)))
        done = sent + 2 * ms + sum(stage)
        frames[s] = Arrival(s, sent, sent + 2 * ms, done, done + ms, stage, s < 2, done + 4 * ms)
    col = _Frames(frames, [EventArrival(5, frames[5].t_sent_ns, "r", frames[5].t_arrived_ns + ms)])
    p = phase_summary(col, range(0, 12), dropped=0)
    assert (p["n_sent"], p["n_results"], p["n_warmup"], p["lost"]) == (12, 10, 2, 2)
    total = 2 + sum(range(1, len(STAGES) + 1)) + 1 + 3
    assert p["latency"]["p50_ms"] == p["latency"]["max_ms"] == total
    assert p["stages_ms"]["transport_in"]["p50_ms"] == 2
    assert p["stages_ms"]["publish"]["p50_ms"] == 1
    assert p["stages_ms"]["transport_out"]["p50_ms"] == 3
    for i, name in enumerate(STAGES):
        assert p["stages_ms"][name]["p50_ms"] == i + 1
    assert p["events"]["max_ms"] == total + 1
    assert np.allclose(p["latency_ms_values"], [total] * 8)


def test_worst_frames_name_the_stage_that_made_them_late():
    ms = 1_000_000
    stage = tuple(ms for _ in STAGES)
    frames = {}
    for s in range(20):
        sent = s * 10 * ms
        late = 50 * ms if s == 7 else 2 * s * ms // 10  # frame 7: its result arrived late
        done = sent + ms + sum(stage)
        frames[s] = Arrival(s, sent, sent + ms, done, done + ms, stage, False, done + ms + late)
    worst = phase_summary(_Frames(frames), range(20), dropped=0)["worst_frames"]
    assert len(worst) == 10 and worst[0]["sequence"] == 7
    assert worst[0]["transport_out"] == 50 and worst[0]["latency_ms"] == 1 + len(STAGES) + 1 + 50
    assert [w["sequence"] for w in worst[1:4]] == [19, 18, 17]
    assert all(w["queue"] == 1 for w in worst)


def test_a_short_run_measures_every_frame_with_nothing_dropped():
    cfg = LatencyBenchConfig(
        height=64, width=64, n_neurons=6, fps_hz=40.0, duration_s=2.0, init_frames=60,
        detect_every_frames=0, radius_px=4.0, movie_frames=120, stall_watch=True,
        search=True, trial_s=0.5, search_max_hz=100.0,
    )
    report = run_latency_bench(cfg, log=lambda *a: None)
    main = report["main"]
    assert main["n_sent"] == 80
    assert main["dropped"] == 0 and main["lost"] == 0 and main["n_warmup"] == 0
    lat = main["latency"]
    assert 0 < lat["p50_ms"] <= lat["p99_ms"] <= lat["max_ms"] < 5000
    trials = report["search"]["trials"]  # 40, 60, 90 Hz, then the bisection if one fails
    n_search = sum(max(10, int(0.5 * t["fps_hz"])) for t in trials)
    c = report["engine"]["counters"]
    assert c["processed"] + c["dropped"] == report["warmup"]["frames"] + 80 + n_search
    assert "gc_freeze" not in report["engine"]["stalls"]  # off by default
    assert set(report["bench_gc"]) == {"gen0", "gen1", "gen2", "frozen"}
    # the machine-stall watchdog ran through the measurement and marked the frames
    assert report["stall_watch"]["seconds"] >= 1.5
    assert report["main"]["machine_stalls"]["n_over"] <= 80
    assert all("machine_late_ms" in w and "steal_ms" in w for w in main["worst_frames"])
    assert trials and all("machine_late_ms" in w for t in trials for w in t["worst_frames"])
    assert report["engine"]["realtime"] == {"priority": 0, "threads": {}}


def test_an_engine_that_dies_stops_the_bench_with_its_last_words():
    import subprocess
    import sys
    import threading
    from collections import deque

    import pytest

    from rtcal.engine.latency_bench import BenchError, _Session

    session = object.__new__(_Session)  # only the process-watching half
    session.proc = subprocess.Popen(
        [sys.executable, "-c", "import sys; print('frame loop failed: boom', file=sys.stderr); "
         "sys.exit(2)"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    session.engine_log = deque(maxlen=200)
    for stream in (session.proc.stdout, session.proc.stderr):
        threading.Thread(target=session._drain, args=(stream,), daemon=True).start()
    session.proc.wait(10)
    with pytest.raises(BenchError, match=r"exited \(status 2\)[\s\S]*boom"):
        session.check_engine()


def test_sending_to_no_engine_times_out_and_asks_the_check():
    import pytest

    from rtcal.client import FrameSender
    from rtcal.engine.latency_bench import BenchError, send_paced

    sender = FrameSender("tcp://127.0.0.1:1", timeout_ms=50)  # nobody there
    calls = []

    def check():
        calls.append(1)
        raise BenchError("engine gone")

    with pytest.raises(BenchError, match="engine gone"):
        send_paced(sender, np.zeros((2, 8, 8), np.float32), 0, 5, 1000.0, check)
    assert calls == [1] and sender.n_dropped == 1
    sender.close(linger_ms=0)


def test_the_bench_does_not_collect_garbage_while_it_measures(monkeypatch):
    import gc

    import rtcal.engine.latency_bench as lb

    seen = []

    def fake_send(sender, movie, start, n, fps_hz, check=None):
        seen.append(gc.isenabled())
        for s in range(start, start + n):
            t = 1_000_000 * s
            session.col.frames[s] = Arrival(s, t, t, t, t, tuple(0 for _ in STAGES), False, t + 1)
        return range(start, start + n)

    class Control:
        def counters(self):
            return {"dropped": 0, "processed": session.next_seq, "skipped_bad_frames": 0}

    class Proc:
        def poll(self):
            return None

    session = object.__new__(lb._Session)
    session.proc, session.control, session.col = Proc(), Control(), _Frames({})
    session.sender, session.movie, session.next_seq = None, None, 0
    monkeypatch.setattr(lb, "send_paced", fake_send)
    assert gc.isenabled()
    phase = session.run_phase(100.0, 5)
    assert seen == [False] and gc.isenabled()  # off while measuring, on again after
    assert phase["n_results"] == 5
