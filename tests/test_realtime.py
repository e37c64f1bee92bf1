"""Real-time scheduling of the engine's frame path (rtcal.engine.realtime)."""

import os
import threading
import time

import pytest
import zmq
from engine_live_helpers import INIT_FRAMES, small_movie, start_engine

from rtcal.client import FrameSender
from rtcal.engine.config import EngineConfig, EngineConfigError
from rtcal.engine.latency_bench import BenchError, LatencyBenchConfig
from rtcal.engine.realtime import (
    MAX_PRIORITY,
    RealtimeReport,
    can_use_fifo,
    configure_zmq_context,
    make_thread_realtime,
    restore_default_policy,
    thread_policy,
)

linux_only = pytest.mark.skipif(not hasattr(os, "SCHED_FIFO"), reason="Linux scheduling only")
PERMITTED = hasattr(os, "SCHED_FIFO") and can_use_fifo(10) == ""
needs_permission = pytest.mark.skipif(
    not PERMITTED, reason="this process may not use SCHED_FIFO (not root, no CAP_SYS_NICE)"
)


def _on_thread(fn):
    out = []
    t = threading.Thread(target=lambda: out.append(fn()))
    t.start()
    t.join()
    return out[0]


def _refuse(monkeypatch):
    def refuse(*_):
        raise PermissionError(1, "Operation not permitted")

    monkeypatch.setattr(os, "sched_setscheduler", refuse)


@pytest.mark.parametrize("bad", [-1, MAX_PRIORITY + 1, 99, True, 1.5, "50"])
def test_engine_config_rejects_impossible_priorities(bad):
    with pytest.raises(EngineConfigError, match="realtime_priority"):
        EngineConfig(realtime_priority=bad)
    with pytest.raises(BenchError, match="realtime_priority"):
        LatencyBenchConfig(realtime_priority=bad)


def test_priority_zero_changes_nothing():
    assert _on_thread(lambda: (make_thread_realtime(0), thread_policy())) == ("", "SCHED_OTHER")
    with pytest.raises(ValueError, match="1-98"):
        make_thread_realtime(99)


@linux_only
@needs_permission
def test_a_thread_moves_to_fifo_and_back():
    def go():
        reason = make_thread_realtime(10)
        during = thread_policy()
        restore_default_policy()
        return reason, during, thread_policy()

    assert _on_thread(go) == ("", "SCHED_FIFO 10", "SCHED_OTHER")
    assert thread_policy() == "SCHED_OTHER"  # only the calling thread was moved


@linux_only
def test_a_refusal_is_explained_recorded_and_warned_once(monkeypatch, capsys):
    _refuse(monkeypatch)
    assert "CAP_SYS_NICE" in make_thread_realtime(20)
    assert "not permitted" in can_use_fifo(20)
    report = RealtimeReport(20)
    report.apply("receiver")
    report.apply("frame_loop")
    threads = report.summary()["threads"]
    assert set(threads) == {"receiver", "frame_loop"}
    assert all("not permitted" in v for v in threads.values())
    assert capsys.readouterr().err.count("real-time scheduling not applied") == 1


@linux_only
def test_a_refused_context_is_left_unconfigured(monkeypatch):
    # libzmq aborts the process if it cannot apply a policy it was given
    _refuse(monkeypatch)
    c = zmq.Context()
    try:
        default = c.get(zmq.THREAD_PRIORITY)
        assert "not permitted" in configure_zmq_context(c, 30)
        assert c.get(zmq.THREAD_PRIORITY) == default
    finally:
        c.term()


def _run(ctx, **kw):
    engine = start_engine(ctx, "inproc", **kw)
    sender = FrameSender(engine.endpoints["frames"], context=ctx, timeout_ms=-1)
    assert sender.wait_ready(5)
    for f in small_movie(INIT_FRAMES + 10):
        sender.send(f)
    sender.close()
    deadline = time.monotonic() + 60
    while engine.status()["counters"]["processed"] < INIT_FRAMES + 10:
        assert time.monotonic() < deadline, "the engine did not process every frame"
        time.sleep(0.05)
    policies = {}
    for name, t in (("receiver", engine.receiver), ("frame_loop", engine.loop)):
        policies[name] = (os.sched_getscheduler(t.native_id),
                          os.sched_getparam(t.native_id).sched_priority)
    status = engine.status()
    engine.close()
    return engine.summary, status, policies


@linux_only
@needs_permission
def test_engine_runs_its_frame_path_under_fifo(ctx):
    summary, status, policies = _run(ctx, realtime_priority=15)
    assert summary["counters"]["processed"] == INIT_FRAMES + 10
    assert policies == {"receiver": (os.SCHED_FIFO, 15), "frame_loop": (os.SCHED_FIFO, 15)}
    assert status["realtime"]["threads"] == {
        "zmq_io": "SCHED_FIFO 15", "receiver": "SCHED_FIFO 15", "frame_loop": "SCHED_FIFO 15"
    }
    # the writer, control and detector threads stay under the default scheduler
    assert os.sched_getscheduler(threading.get_native_id()) == os.SCHED_OTHER


@linux_only
def test_engine_without_permission_runs_normally_and_says_why(ctx, monkeypatch):
    _refuse(monkeypatch)
    summary, status, policies = _run(ctx, realtime_priority=15)
    assert summary["counters"]["processed"] == INIT_FRAMES + 10
    assert policies["frame_loop"][0] == os.SCHED_OTHER
    assert all("not permitted" in v for v in status["realtime"]["threads"].values())


def test_engine_default_leaves_scheduling_alone(ctx):
    summary, status, policies = _run(ctx)
    assert summary["counters"]["processed"] == INIT_FRAMES + 10
    assert status["realtime"] == {"priority": 0, "threads": {}}
    if hasattr(os, "SCHED_FIFO"):
        assert policies["frame_loop"][0] == os.SCHED_OTHER


@linux_only
def test_one_core_is_refused(monkeypatch):
    monkeypatch.setattr(os, "cpu_count", lambda: 1)
    assert "one CPU core" in _on_thread(lambda: make_thread_realtime(10))
    assert _on_thread(thread_policy) == "SCHED_OTHER"
