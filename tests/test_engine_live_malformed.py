"""A barrage of malformed frame messages: each counted by its reason, none stops the engine."""

import struct
import time

import numpy as np
import zmq
from engine_live_helpers import close_all, start_engine, wait_processed

from rtcal.client import ControlClient
from rtcal.net.frame import encode_frame


def _header(seq, h=64, w=64, code=2, magic=b"RTCF", version=1, flags=0):
    return struct.pack("<4sHBBIIQq", magic, version, code, flags, h, w, seq, 0)


def test_malformed_barrage_is_counted_and_the_engine_keeps_going(tmp_path):
    ctx = zmq.Context()
    try:
        _barrage(ctx)
    finally:
        close_all()
        ctx.destroy(linger=0)


def _barrage(ctx):
    from engine_live_helpers import small_movie

    movie = small_movie(120)
    engine = start_engine(ctx, "tcp")
    push = ctx.socket(zmq.PUSH)
    push.connect(engine.endpoints["frames"])

    def good(seq):
        header, pixels = encode_frame(movie[seq], seq, 0)
        push.send_multipart([header, pixels])

    for seq in range(60):
        good(seq)
    px = movie[0].tobytes()
    barrage = {
        "bad magic": [_header(60, magic=b"JUNK"), px],
        "unsupported version": [_header(60, version=7), px],
        "truncated header": [_header(60)[:20], px],
        "bad header size": [_header(60) + b"\0\0", px],
        "unknown dtype": [_header(60, code=42), px],
        "unknown flags": [_header(60, flags=0x80), px],
        "bad dims": [_header(60, h=100_000, w=100_000), px],
        "size mismatch": [_header(60), px[:-2]],
        "missing pixel frame": [_header(60)],
        "extra parts": [_header(60), px, b"trailer"],
        "shape change": [_header(60, h=32, w=32), px[: 32 * 32 * 2]],
    }
    oversize = [_header(60), bytes(64 * 64 * 4 + 10)]  # larger than a ring slot
    for parts in [*barrage.values(), oversize, [b""], [b"", b"", b""]]:
        push.send_multipart(parts)
    wait_processed(engine, 60)
    for seq in range(60, 120):  # paced: the engine has caught up, its steady state is measured
        good(seq)
        time.sleep(0.003)
    status = wait_processed(engine, 120)
    with ControlClient(engine.endpoints["control"], context=ctx) as control:
        assert control.ping()["version"] == 1
        counters = control.counters()
    push.close()
    engine.close()

    expected = dict.fromkeys(barrage, 1)
    expected["size mismatch"] += 1  # the oversize pixel part
    expected["truncated header"] += 2  # the empty messages
    assert counters["malformed"] == expected
    assert counters["malformed_total"] == sum(expected.values())
    assert counters["received"] == counters["processed"] == 120
    assert status["state"] == "running"
    assert np.isfinite(status["latency_ms"]["steady"]["p50_ms"]), status
