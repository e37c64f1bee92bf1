"""The live engine end to end: frames in over tcp:// and inproc://, results,
footprints and events out, the results file, control, sequence gaps, drops."""

import time

import numpy as np
import pytest
import zmq
from engine_live_helpers import (
    FIRING_RULES,
    INIT_FRAMES,
    collect,
    small_movie,
    start_engine,
    subscribe,
    wait_processed,
)

from rtcal.client import ControlClient, ControlError, FrameSender
from rtcal.engine.config import EngineConfig, EngineConfigError
from rtcal.store import read_results


@pytest.fixture(scope="module")
def movie():
    return small_movie(300)


def _send(engine, ctx, frames, period_s=0.0):
    sender = FrameSender(engine.endpoints["frames"], context=ctx, timeout_ms=-1)
    assert sender.wait_ready(5)
    for f in frames:
        sender.send(f)
        time.sleep(period_s)
    return sender


def test_tcp_frames_in_results_footprints_events_and_file_out(movie, ctx, tmp_path):
    out = tmp_path / "live.h5"
    engine = start_engine(ctx, "tcp", rules=FIRING_RULES, results_path=str(out))
    assert all(
        e.startswith("tcp://127.0.0.1:") and not e.endswith("*") for e in engine.endpoints.values()
    )
    sub = subscribe(engine, ctx)
    n = 200
    _send(engine, ctx, movie[:n], period_s=0.003).close()
    frames, updates, events = collect(sub, n)
    wait_processed(engine, n)
    status = ControlClient(engine.endpoints["control"], context=ctx).status()
    engine.close()

    assert [r.sequence for r in frames] == list(range(n))
    warmup = [r.warmup for r in frames]  # the initialisation window, then caught up for good
    assert all(warmup[:INIT_FRAMES]) and warmup == sorted(warmup, reverse=True)
    versions = {u.component_version: u for u in updates}
    for r in frames:  # every result's component set was announced before it, same K
        assert versions[r.component_version].n_components == r.n_components
        assert r.t_sent_ns <= r.t_received_ns <= r.t_done_ns <= r.t_published_ns
        assert np.isfinite(r.denoised).all() and np.isfinite(r.dff).all()
    assert frames[-1].n_components >= 1
    assert events, "the rule fires on active neurons"
    by_seq = {r.sequence: r for r in frames}
    for e in events:
        assert e.rule == FIRING_RULES[0]["name"]
        assert e.component_version == by_seq[e.sequence].component_version
        assert 0 <= e.neurons.min() and e.neurons.max() < by_seq[e.sequence].n_components
        assert e.t_sent_ns == by_seq[e.sequence].t_sent_ns <= e.t_event_ns

    c = status["counters"]
    assert c["received"] == c["processed"] == n and c["dropped"] == 0 and c["malformed_total"] == 0
    latency = status["latency_ms"]
    assert (
        latency["steady"]["n"] + latency["warmup"]["n"] == n == sum(warmup) + latency["steady"]["n"]
    )
    r = read_results(out)
    assert r.complete and r.n_frames == n and r.n_components == frames[-1].n_components
    np.testing.assert_array_equal(r.frame_index, np.arange(n))
    assert len(r.events) == len(events)
    assert r.attrs["engine_received"] == n and r.attrs["engine_dropped"] == 0


def test_inproc_and_control_footprints_match_the_published_ones(movie, ctx):
    engine = start_engine(ctx, "inproc")
    sub = subscribe(engine, ctx)
    _send(engine, ctx, movie[:80]).close()
    frames, updates, _ = collect(sub, 80)
    with ControlClient(engine.endpoints["control"], context=ctx) as control:
        wait_processed(engine, 80)
        got = control.footprints()
        assert control.ping()["version"] == 1
        control.stop()
    engine.wait(10)
    assert [r.sequence for r in frames] == list(range(80))
    assert got.component_version == updates[-1].component_version == frames[-1].component_version
    np.testing.assert_array_equal(got.dense(), updates[-1].dense())
    assert engine.status()["state"] == "stopped"


def test_pub_sub_frames_for_a_lossy_live_view(movie, ctx):
    engine = start_engine(ctx, "tcp", frames_pattern="sub")
    sub = subscribe(engine, ctx)
    sender = FrameSender(engine.endpoints["frames"], context=ctx, pattern="pub")
    time.sleep(0.3)  # PUB drops until the engine's subscription has arrived
    for f in movie[:100]:
        sender.send(f)
        time.sleep(0.002)
    frames, _, _ = collect(sub, 100)
    sender.close()
    assert [r.sequence for r in frames] == list(range(100))


def test_sequence_gaps_duplicates_and_out_of_order(movie, ctx, tmp_path):
    out = tmp_path / "gaps.h5"
    engine = start_engine(ctx, "inproc", results_path=str(out))
    sender = FrameSender(engine.endpoints["frames"], context=ctx, timeout_ms=-1)
    sent = [*range(60), *range(70, 90), 89, 75, *range(90, 100)]
    for seq in sent:
        sender.sequence = seq
        sender.send(movie[seq])
    sender.close()
    status = wait_processed(engine, 90)
    engine.close()
    c = status["counters"]
    assert (c["gaps"], c["gap_frames"], c["duplicates"], c["out_of_order"]) == (1, 10, 1, 1)
    assert c["processed"] == 90
    r = read_results(out)
    np.testing.assert_array_equal(r.frame_index, [*range(60), *range(70, 100)])
    assert r.attrs["engine_gap_frames"] == 10 and r.attrs["engine_duplicates"] == 1


def test_overload_drops_oldest_and_counts_every_frame(movie, ctx, tmp_path):
    out = tmp_path / "drops.h5"
    engine = start_engine(
        ctx,
        "inproc",
        results_path=str(out),
        drop_policy="oldest",
        ring_slots=4,
        warmup_backlog_frames=20,
    )
    n = 600
    frames = np.concatenate([movie, movie])[:n]
    _send(engine, ctx, frames).close()  # as fast as the sender goes: far above the engine
    status = wait_processed(engine, n)
    engine.close()
    c = status["counters"]
    assert c["received"] == n
    assert c["dropped_warmup"] > 0 and c["dropped_ring"] > 0
    assert c["processed"] + c["dropped"] == n
    r = read_results(out)
    assert r.n_frames == c["processed"] and r.frame_index[-1] == n - 1  # the newest is kept
    assert r.attrs["engine_dropped"] == c["dropped"]
    assert r.attrs["engine_drop_policy"] == "oldest"


def test_slow_subscriber_never_blocks_the_frame_loop(movie, ctx):
    engine = start_engine(ctx, "tcp", results_hwm=10)
    stuck = ctx.socket(zmq.SUB)  # subscribes, never reads
    stuck.setsockopt(zmq.RCVHWM, 1)
    stuck.setsockopt(zmq.SUBSCRIBE, b"")
    stuck.connect(engine.endpoints["results"])
    time.sleep(0.3)
    t0 = time.monotonic()
    _send(engine, ctx, movie, period_s=0.002).close()
    status = wait_processed(engine, len(movie))
    elapsed = time.monotonic() - t0
    engine.close()
    stuck.close()
    assert status["counters"]["processed"] == len(movie)
    assert elapsed < 15


def test_control_triggers_and_bad_requests(ctx):
    engine = start_engine(ctx, "tcp")
    control = ControlClient(engine.endpoints["control"], context=ctx)
    assert control.triggers() == []
    assert len(control.set_triggers(FIRING_RULES)) == 1
    assert [r["name"] for r in control.triggers()] == [FIRING_RULES[0]["name"]]
    with pytest.raises(ControlError, match="refused"):
        control.set_triggers([{"name": "x", "kind": "threshold", "nonsense": True}])
    with pytest.raises(ControlError, match="refused"):  # all or nothing: the good rule too
        control.set_triggers([*FIRING_RULES, {"name": "y", "kind": "unheard-of"}])
    assert [r["name"] for r in control.triggers()] == [FIRING_RULES[0]["name"]]
    control.clear_triggers()
    assert control.triggers() == []
    with pytest.raises(ControlError, match="no footprints yet"):
        control.footprints()
    raw = ctx.socket(zmq.REQ)
    raw.connect(engine.endpoints["control"])
    for request in (b"\xff not json", b'{"cmd": "reboot"}', b"[]"):
        raw.send(request)
        assert b'"ok": false' in raw.recv()
    raw.close()
    errors = control.counters()["control_errors"]
    engine.close()
    assert errors == {"bad request": 2, "unknown command": 1, "refused": 3}


def test_engine_config_validation():
    assert EngineConfig.from_section({"ring_slots": 8}).ring_slots == 8
    with pytest.raises(EngineConfigError, match="unknown key"):
        EngineConfig.from_section({"ring_slot": 8})
    for bad in (
        {"drop_policy": "random"},
        {"ring_slots": 2},
        {"frames_endpoint": "localhost"},
        {"results_endpoint": "tcp://127.0.0.1:5555"},
        {"flush_interval_s": 0},
    ):
        with pytest.raises(EngineConfigError):
            EngineConfig(**bad)


def test_an_endpoint_in_use_is_a_clear_error(ctx):
    from rtcal.engine.live import EngineError

    first = start_engine(ctx, "tcp")
    taken = first.endpoints["control"]
    with pytest.raises(EngineError, match="cannot bind the control socket"):
        start_engine(ctx, "tcp", control_endpoint=taken)


def test_a_stream_too_short_to_initialise_is_counted_as_dropped(movie, ctx, tmp_path, capsys):
    out = tmp_path / "short.h5"
    engine = start_engine(ctx, "inproc", results_path=str(out))
    _send(engine, ctx, movie[:12]).close()
    deadline = time.monotonic() + 10
    while engine.status()["counters"]["received"] < 12 and time.monotonic() < deadline:
        time.sleep(0.02)
    summary = engine.close()
    c = summary["counters"]
    assert c["received"] == 12 and c["processed"] == 0
    assert c["dropped_warmup"] == 12 and c["dropped"] == 12  # nothing lost silently
    assert "too few to initialise" in capsys.readouterr().err
    results = read_results(out)
    assert results.complete and results.n_frames == 0
    assert results.attrs["engine_dropped"] == 12
