"""rtcal.client against bare sockets: what goes on the wire, timeouts, drops."""

import threading

import numpy as np
import pytest
import zmq

from rtcal.client import ControlClient, ControlError, FrameSender, ResultsSubscriber
from rtcal.net.control import decode_request, encode_reply
from rtcal.net.events import Event, encode_event
from rtcal.net.frame import check_pixel_size, decode_frame_header, frame_view
from rtcal.net.results import FrameResult, encode_frame_result


@pytest.fixture
def ctx():
    c = zmq.Context()
    yield c
    c.destroy(linger=0)


def test_sender_frames_arrive_in_order_with_sequence_and_time(ctx):
    pull = ctx.socket(zmq.PULL)
    port = pull.bind_to_random_port("tcp://127.0.0.1")
    sender = FrameSender(f"tcp://127.0.0.1:{port}", context=ctx, timeout_ms=-1)
    frames = [np.full((300, 300), i, np.uint16) for i in range(3)]  # above COPY_THRESHOLD
    for f in frames:
        assert sender.send(f)
    for i, f in enumerate(frames):
        header, pixels = pull.recv_multipart()
        h = decode_frame_header(header)
        check_pixel_size(h, len(pixels))
        assert h.sequence == i and h.t_sent_ns > 0
        np.testing.assert_array_equal(frame_view(pixels, h), f)
    sender.close()


def test_sender_without_engine_drops_and_counts_but_never_blocks(ctx):
    sender = FrameSender("tcp://127.0.0.1:1", context=ctx, timeout_ms=0)
    assert not sender.wait_ready(0.05)
    assert not sender.send(np.zeros((4, 4), np.uint8))
    assert sender.n_dropped == 1 and sender.sequence == 1
    sender.close()


def test_subscriber_decodes_and_skips_malformed(ctx):
    pub = ctx.socket(zmq.PUB)
    port = pub.bind_to_random_port("tcp://127.0.0.1")
    sub = ResultsSubscriber(f"tcp://127.0.0.1:{port}", context=ctx)
    r = FrameResult(5, 1, *np.ones((4, 2), np.float32), (0.0, 0.0), 1, 2, 3, 4, (0,) * 5)
    got = None
    for _ in range(50):  # PUB drops until the subscription has arrived
        pub.send_multipart([b"frame", b"garbage", b""])
        pub.send_multipart(encode_frame_result(r))
        got = sub.recv(timeout_ms=20)
        if got is not None:
            break
    assert isinstance(got, FrameResult) and got.sequence == 5
    before = sub.n_malformed  # subscribed now: the next garbage is seen and skipped
    pub.send_multipart([b"frame", b"garbage", b""])
    pub.send_multipart(encode_frame_result(r))
    assert isinstance(sub.recv(timeout_ms=2000), FrameResult)
    assert sub.n_malformed == before + 1
    pub.send_multipart(encode_event(Event("x", 5, np.array([1]), 1, 1, 2, 3)))
    for _ in range(10):
        msg = sub.recv(timeout_ms=200)
        if isinstance(msg, Event):
            break
    assert isinstance(msg, Event) and msg.rule == "x"
    sub.close()


def test_control_client_errors_and_timeout(ctx):
    rep = ctx.socket(zmq.REP)
    port = rep.bind_to_random_port("tcp://127.0.0.1")

    def serve():
        for _ in range(2):
            req = decode_request(rep.recv_multipart())
            if req.cmd == "ping":
                rep.send_multipart(encode_reply({"version": 1}))
            else:
                rep.send_multipart(encode_reply(error="nope: test"))

    t = threading.Thread(target=serve)
    t.start()
    client = ControlClient(f"tcp://127.0.0.1:{port}", context=ctx, timeout_ms=2000)
    assert client.ping() == {"version": 1}
    with pytest.raises(ControlError, match="nope"):
        client.status()
    t.join()
    client._timeout_ms = 50
    with pytest.raises(ControlError, match="no reply"):
        client.ping()
    client.close()
