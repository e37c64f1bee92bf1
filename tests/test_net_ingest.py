"""Ingest pieces on their own: the ring's drop policies and the sequence tracker."""

import threading

import numpy as np

from rtcal.ingest import FrameRing, IngestCounters, SequenceTracker
from rtcal.net.frame import FrameHeader


def _fill(ring, seq, value):
    n = ring.height * ring.width
    ring.buffer(ring.receiving)[: 2 * n].view(np.uint16)[:] = value
    ring.commit(FrameHeader(seq, 0, np.dtype("<u2"), ring.height, ring.width), 1, 2)


def _drain(ring):
    out = []
    while (slot := ring.pop(0.0)) is not None:
        out.append((int(ring.sequence[slot]), int(ring.frame(slot)[0, 0])))
        ring.release(slot)
    return out


def test_ring_drop_oldest_keeps_the_newest_frames():
    c = IngestCounters()
    ring = FrameRing(5, 3, 4, "oldest", c)  # 4 can wait
    for s in range(7):
        _fill(ring, s, s)
    assert _drain(ring) == [(3, 3), (4, 4), (5, 5), (6, 6)]
    assert c.get("dropped_ring") == 3 and list(ring.dropped_sequences) == [0, 1, 2]


def test_ring_drop_newest_keeps_the_first_frames():
    c = IngestCounters()
    ring = FrameRing(5, 3, 4, "newest", c)
    for s in range(7):
        _fill(ring, s, s)
    assert [s for s, _ in _drain(ring)] == [0, 1, 2, 3]
    assert c.dropped == 3


def test_ring_block_waits_for_the_consumer_and_drops_nothing():
    c = IngestCounters()
    ring = FrameRing(4, 2, 2, "block", c)
    got = []

    def consume():
        while len(got) < 20:
            slot = ring.pop(0.5)
            if slot is not None:
                got.append(int(ring.sequence[slot]))
                ring.release(slot)

    t = threading.Thread(target=consume)
    t.start()
    for s in range(20):
        _fill(ring, s, s)
    t.join(5)
    assert got == list(range(20)) and c.dropped == 0


def test_ring_slots_are_reused_in_place():
    ring = FrameRing(4, 8, 8, "oldest", IngestCounters())
    base = ring.buffer(0).__array_interface__["data"][0]
    for s in range(50):
        _fill(ring, s, s)
        slot = ring.pop(0.0)
        assert ring.frame(slot).__array_interface__["data"][0] - base in {
            i * ring.slot_bytes for i in range(4)
        }
        ring.release(slot)


def test_sequence_tracker():
    t = SequenceTracker()
    verdicts = [t.step(s) for s in (5, 6, 6, 9, 7, 10)]
    assert verdicts == [
        ("ok", 0),
        ("ok", 0),
        ("duplicate", 0),
        ("ok", 2),
        ("out of order", 0),
        ("ok", 0),
    ]


def test_recv_part_fallback_matches_recv_into(monkeypatch):
    import zmq

    from rtcal.ingest import receiver

    ctx = zmq.Context()
    a, b = ctx.socket(zmq.PAIR), ctx.socket(zmq.PAIR)
    a.bind("inproc://recv-part")
    b.connect("inproc://recv-part")
    payload = np.arange(1000, dtype=np.uint16).tobytes()
    got = {}
    for fast in (True, False):
        monkeypatch.setattr(receiver, "_HAS_RECV_INTO", fast and receiver._HAS_RECV_INTO)
        a.send_multipart([payload, b"x" * 10])
        buf, small = np.zeros(4000, np.uint8), bytearray(4)
        got[fast] = (receiver.recv_part(b, buf), bytes(buf[:2000]), receiver.recv_part(b, small))
        assert bytes(small) == b"xxxx"  # truncated to the buffer; the real size is returned
    assert got[True] == got[False] == (2000, payload, 10)
    a.close()
    b.close()
    ctx.term()
