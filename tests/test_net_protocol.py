"""Wire protocol: round trips of every message, and every malformed case named."""

import json
import struct

import numpy as np
import pytest

from rtcal.net.control import decode_reply, decode_request, encode_reply, encode_request
from rtcal.net.errors import ProtocolError
from rtcal.net.events import Event, decode_event, encode_event
from rtcal.net.footprints import FootprintUpdate, decode_footprints, encode_footprints
from rtcal.net.frame import (
    FRAME_HEADER_SIZE,
    FrameHeader,
    check_pixel_size,
    decode_frame_header,
    encode_frame,
    encode_frame_header,
    frame_view,
)
from rtcal.net.results import FrameResult, decode_frame_result, encode_frame_result


def _wire(parts):
    """What a receiver gets: bytes of every part (arrays serialised as raw buffers)."""
    return [p.tobytes() if isinstance(p, np.ndarray) else bytes(p) for p in parts]


@pytest.mark.parametrize("dtype", ["uint8", "uint16", "int16", "float32"])
def test_frame_roundtrip(dtype):
    frame = (np.arange(12).reshape(3, 4) * 7).astype(dtype)
    header, pixels = encode_frame(frame, sequence=41, t_sent_ns=123456789)
    assert len(header) == FRAME_HEADER_SIZE == 32
    h = decode_frame_header(header)
    assert (h.sequence, h.t_sent_ns, h.height, h.width, h.dtype) == (
        41,
        123456789,
        3,
        4,
        frame.dtype,
    )
    check_pixel_size(h, pixels.nbytes)
    np.testing.assert_array_equal(frame_view(bytes(pixels.data), h), frame)


def test_frame_header_from_a_larger_buffer():
    header, _ = encode_frame(np.zeros((5, 6), np.uint16), 1, 2)
    buf = bytearray(64)
    buf[:32] = header
    assert decode_frame_header(buf, n_bytes=32).width == 6
    with pytest.raises(ProtocolError) as e:
        decode_frame_header(buf, n_bytes=33)
    assert e.value.reason == "bad header size"


def _header(**kw):
    fields = dict(magic=b"RTCF", version=1, code=2, flags=0, h=8, w=8, seq=0, t=0)
    fields.update(kw)
    return struct.pack("<4sHBBIIQq", *fields.values())


@pytest.mark.parametrize(
    "buf, reason",
    [
        (_header()[:20], "truncated header"),
        (_header() + b"x", "bad header size"),
        (_header(magic=b"XXXX"), "bad magic"),
        (_header(version=2), "unsupported version"),
        (_header(code=9), "unknown dtype"),
        (_header(flags=1), "unknown flags"),
        (_header(h=0), "bad dims"),
        (_header(h=100_000, w=100_000), "bad dims"),
    ],
)
def test_malformed_frame_headers_are_named(buf, reason):
    with pytest.raises(ProtocolError) as e:
        decode_frame_header(buf)
    assert e.value.reason == reason


def test_pixel_size_mismatch_and_unsendable_dtype():
    h = decode_frame_header(_header(h=4, w=4))
    with pytest.raises(ProtocolError, match="size mismatch"):
        check_pixel_size(h, 31)
    with pytest.raises(ProtocolError, match="unknown dtype"):
        encode_frame(np.zeros((2, 2), np.float64), 0, 0)
    with pytest.raises(ProtocolError, match="bad dims"):
        encode_frame(np.zeros(4, np.uint16), 0, 0)
    with pytest.raises(ProtocolError, match="bad dims"):
        encode_frame_header(FrameHeader(0, 0, np.dtype("u2"), 0, 5))


def test_big_endian_and_strided_frames_arrive_as_sent():
    frame = np.arange(20, dtype=">u2").reshape(4, 5)[:, ::2]
    header, pixels = encode_frame(frame, 0, 0)
    h = decode_frame_header(header)
    np.testing.assert_array_equal(frame_view(bytes(pixels.data), h), frame)


def test_frame_result_roundtrip():
    K = 5
    rng = np.random.default_rng(0)
    vals = rng.random((4, K)).astype(np.float32)
    r = FrameResult(7, 3, *vals, (0.5, -1.25), 10, 20, 30, 40, (1, 2, 3, 4, 5), warmup=True)
    got = decode_frame_result(_wire(encode_frame_result(r)))
    assert got.sequence == 7 and got.component_version == 3 and got.warmup
    assert got.stage_ns == (1, 2, 3, 4, 5) and got.shift == (0.5, -1.25)
    assert (got.t_sent_ns, got.t_received_ns, got.t_done_ns, got.t_published_ns) == (10, 20, 30, 40)
    for a, b in zip((got.traces, got.denoised, got.spikes, got.dff), vals, strict=True):
        np.testing.assert_array_equal(a, b)
    empty = FrameResult(0, 0, *np.zeros((4, 0), np.float32), (0.0, 0.0), 0, 0, 0, 0, (0,) * 5)
    assert decode_frame_result(_wire(encode_frame_result(empty))).n_components == 0


def test_frame_result_malformed():
    r = FrameResult(1, 1, *np.ones((4, 3), np.float32), (0.0, 0.0), 0, 0, 0, 0, (0,) * 5)
    parts = _wire(encode_frame_result(r))
    cases = {
        "wrong part count": parts[:2],
        "unknown topic": [b"frame2", *parts[1:]],
        "truncated header": [parts[0], parts[1][:50], parts[2]],
        "bad magic": [parts[0], b"XXXX" + parts[1][4:], parts[2]],
        "unsupported version": [parts[0], parts[1][:4] + b"\x09\x00" + parts[1][6:], parts[2]],
        "size mismatch": [parts[0], parts[1], parts[2][:-4]],
    }
    for reason, bad in cases.items():
        with pytest.raises(ProtocolError) as e:
            decode_frame_result(bad)
        assert e.value.reason == reason


def test_footprints_roundtrip_and_dense():
    dense = np.zeros((3, 4, 5), np.float32)
    dense[0, 1, 1:3] = [1, 2]
    dense[2, 3, 4] = 5
    flat = dense.reshape(3, -1)
    indptr = np.r_[0, np.cumsum((flat > 0).sum(1))]
    rows, cols = np.nonzero(flat)
    u = FootprintUpdate(4, 99, 4, 5, indptr, cols, flat[rows, cols], np.array([0, 0, 50]))
    got = decode_footprints(_wire(encode_footprints(u)))
    assert got.n_components == 3 and got.component_version == 4 and got.sequence == 99
    np.testing.assert_array_equal(got.dense(), dense)
    np.testing.assert_array_equal(got.born, [0, 0, 50])
    bad = _wire(encode_footprints(u))
    bad[3] = np.array([0, 1, 99], "<i4").tobytes()
    with pytest.raises(ProtocolError, match="bad indices"):
        decode_footprints(bad)


def test_event_roundtrip_and_malformed():
    e = Event("dff>1", 12, np.array([3, 1]), 2, 100, 200, 300)
    got = decode_event(_wire(encode_event(e)))
    assert (got.rule, got.sequence, got.component_version) == ("dff>1", 12, 2)
    assert (got.t_sent_ns, got.t_received_ns, got.t_event_ns) == (100, 200, 300)
    np.testing.assert_array_equal(got.neurons, [3, 1])
    parts = _wire(encode_event(e))
    with pytest.raises(ProtocolError, match="bad rule"):
        decode_event([parts[0], parts[1], b"\xff\xfe", parts[3]])
    with pytest.raises(ProtocolError, match="size mismatch"):
        decode_event([*parts[:3], parts[3] + b"\0"])


def test_control_requests_and_replies():
    req = decode_request([encode_request("set_triggers", rules=[{"name": "a"}])])
    assert req.cmd == "set_triggers" and req.args == {"rules": [{"name": "a"}]}
    bad = {
        "bad request": [
            [b"\xff"],
            [b"[1, 2]"],
            [b'{"x": 1}'],
            [b"{}", b"{}"],
            [json.dumps({"cmd": "set_triggers", "rules": 3}).encode()],
        ],
        "unknown command": [[b'{"cmd": "format_disk"}']],
    }
    for reason, cases in bad.items():
        for parts in cases:
            with pytest.raises(ProtocolError) as e:
                decode_request(parts)
            assert e.value.reason == reason
    ok = decode_reply(encode_reply({"n": 1}, parts=(b"x",)))
    assert ok.ok and ok.result == {"n": 1} and ok.parts == (b"x",)
    err = decode_reply(encode_reply(error="bad request: no"))
    assert not err.ok and err.error == "bad request: no"
