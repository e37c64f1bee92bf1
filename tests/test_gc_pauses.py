"""Objects alive after start-up leave the garbage collector's reach; collections
are timed by generation and reported by the engine."""

import gc
import time
import weakref

import pytest
from engine_live_helpers import INIT_FRAMES, small_movie, start_engine

from rtcal.client import FrameSender
from rtcal.engine.config import EngineConfig, EngineConfigError
from rtcal.engine.gc_pauses import GcPauses, freeze_heap


class _Node:
    def __init__(self) -> None:
        self.other = None


def _cycle() -> weakref.ref:
    a, b = _Node(), _Node()
    a.other, b.other = b, a
    return weakref.ref(a)


def test_freeze_collects_garbage_first_then_freezes_what_is_alive():
    dead = _cycle()  # unreachable, but kept alive by its cycle until a collection
    kept = [_Node()]
    assert dead() is not None
    before = gc.get_freeze_count()
    freeze_heap()
    assert dead() is None, "a cycle that was garbage must not be frozen"
    assert gc.get_freeze_count() > before
    assert kept[0].other is None  # live objects are untouched


def test_a_full_collection_after_the_freeze_walks_only_new_objects():
    heavy = [[i] for i in range(200_000)]  # tracked containers, as imported modules are
    gc.collect()
    t0 = time.perf_counter()
    gc.collect()
    unfrozen_s = time.perf_counter() - t0
    freeze_heap()
    t0 = time.perf_counter()
    gc.collect()
    frozen_s = time.perf_counter() - t0
    assert len(heavy) == 200_000
    assert frozen_s < 0.5 * unfrozen_s, (frozen_s, unfrozen_s)


def test_gc_pauses_counts_and_times_each_generation():
    pauses = GcPauses().install()
    try:
        gc.collect(0)
        gc.collect(2)
        gc.collect(2)
        s = pauses.summary()
    finally:
        pauses.remove()
    assert s["gen0"]["n"] >= 1 and s["gen2"]["n"] >= 2
    assert 0 < s["gen2"]["max_ms"] <= s["gen2"]["total_ms"]
    assert s["frozen"] == gc.get_freeze_count()
    gc.collect(2)  # removed: not counted any more
    assert pauses.summary()["gen2"]["n"] == s["gen2"]["n"]
    assert pauses._callback not in gc.callbacks


def test_engine_config_freeze_gc_must_be_a_bool():
    with pytest.raises(EngineConfigError, match="freeze_gc"):
        EngineConfig(freeze_gc="yes")


def _run_past_warmup(ctx, freeze_gc: bool) -> dict:
    engine = start_engine(ctx, "inproc", freeze_gc=freeze_gc)
    sender = FrameSender(engine.endpoints["frames"], context=ctx, timeout_ms=-1)
    assert sender.wait_ready(5)
    frames = small_movie(INIT_FRAMES + 30)
    for f in frames[: INIT_FRAMES + 10]:
        sender.send(f)
    deadline = time.monotonic() + 30
    while engine.status()["state"] != "running" and time.monotonic() < deadline:
        time.sleep(0.05)
    for f in frames[INIT_FRAMES + 10 :]:  # the loop's turn after the warm-up ended
        sender.send(f)
        time.sleep(0.01)
    sender.close()
    engine.close()
    return engine.summary


def test_engine_freezes_after_start_up_and_after_its_warm_up(ctx):
    status = _run_past_warmup(ctx, freeze_gc=True)
    assert status["counters"]["processed"] == INIT_FRAMES + 30
    assert status["stalls"]["gc_freeze"]["n"] == 1
    assert status["gc"]["frozen"] > 0
    assert set(status["gc"]) == {"gen0", "gen1", "gen2", "frozen"}


def test_engine_without_freeze_leaves_the_heap_to_the_collector(ctx):
    gc.unfreeze()
    status = _run_past_warmup(ctx, freeze_gc=False)
    assert status["counters"]["processed"] == INIT_FRAMES + 30
    assert "gc_freeze" not in status["stalls"]
    assert status["gc"]["frozen"] == 0
