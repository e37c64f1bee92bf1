"""Client side of the wire protocol: what an acquisition program, a live view and a
stimulation controller use to talk to a running engine (``rtcal serve``).

    from rtcal.client import FrameSender
    sender = FrameSender("tcp://127.0.0.1:5555")
    sender.send(frame)                      # (H, W) uint8/uint16/int16/float32

The engine binds every socket; clients connect. See ``docs/protocol.md``.
"""

from __future__ import annotations

import time
from collections.abc import Iterator

import numpy as np
import zmq

from rtcal.errors import RtcalError
from rtcal.net.control import ControlReply, decode_reply, encode_request
from rtcal.net.errors import ProtocolError
from rtcal.net.events import Event, decode_event
from rtcal.net.footprints import FootprintUpdate, decode_footprints
from rtcal.net.frame import encode_frame
from rtcal.net.results import FrameResult, decode_frame_result

Message = FrameResult | FootprintUpdate | Event
_DECODERS = {
    b"frame": decode_frame_result,
    b"footprints": decode_footprints,
    b"event": decode_event,
}


class ControlError(RtcalError):
    """The engine answered a control request with an error, or did not answer."""


class FrameSender:
    """Sends frames to an engine: a PUSH socket (or PUB, ``pattern="pub"``, for a
    lossy live view) that connects to ``endpoint``.

    timeout_ms: how long ``send`` may wait when the queue to the engine is full
        or no engine is connected yet: 0 (default) never waits, so acquisition
        is never stalled, and the frame is dropped and counted in ``n_dropped``;
        -1 waits as long as it takes (lossless streaming of a file).
    hwm: frames queued in the sender before it counts as full.
    Each frame takes the next sequence number even when dropped, so the engine
    sees (and counts) the gap. Arrays of at least ``zmq.COPY_THRESHOLD`` bytes
    are sent without a copy: do not overwrite one until ``send`` has returned
    and the message has left (pass ``copy=True`` to ``send`` when reusing a buffer
    at once).
    """

    def __init__(
        self,
        endpoint: str,
        *,
        pattern: str = "push",
        timeout_ms: int = 0,
        hwm: int = 1000,
        first_sequence: int = 0,
        context: zmq.Context | None = None,
    ) -> None:
        if pattern not in ("push", "pub"):
            raise RtcalError(f"FrameSender pattern must be 'push' or 'pub', got {pattern!r}")
        self._ctx = context or zmq.Context.instance()
        self._sock = self._ctx.socket(zmq.PUSH if pattern == "push" else zmq.PUB)
        self._sock.setsockopt(zmq.SNDHWM, hwm)
        self._sock.setsockopt(zmq.SNDTIMEO, timeout_ms)
        self._sock.setsockopt(zmq.IMMEDIATE, 1)  # queue only to a connected engine
        self._sock.connect(endpoint)
        self.sequence = int(first_sequence)
        self.n_sent = 0
        self.n_dropped = 0

    def wait_ready(self, timeout_s: float = 5.0) -> bool:
        """Wait until an engine is connected and can take a frame (PUSH only)."""
        return bool(self._sock.poll(int(timeout_s * 1000), zmq.POLLOUT))

    def send(self, frame: np.ndarray, *, t_sent_ns: int | None = None, copy: bool = False) -> bool:
        """Send one (H, W) frame with the next sequence number; False if it was dropped."""
        seq = self.sequence
        self.sequence += 1
        t = time.time_ns() if t_sent_ns is None else t_sent_ns
        header, pixels = encode_frame(frame, seq, t)
        big = pixels.nbytes >= zmq.COPY_THRESHOLD and not copy
        try:
            self._sock.send_multipart([header, pixels], copy=not big)
        except zmq.Again:
            self.n_dropped += 1
            return False
        self.n_sent += 1
        return True

    def send_raw(self, parts: list[bytes]) -> None:
        """Send arbitrary parts (tests of the engine's validation)."""
        self._sock.send_multipart(parts)

    def close(self, linger_ms: int = 5000) -> None:
        """Close; frames still queued get ``linger_ms`` to reach the engine."""
        self._sock.close(linger=linger_ms)

    def __enter__(self) -> FrameSender:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


class ResultsSubscriber:
    """Subscribes to an engine's results (and, optionally, events) and decodes
    them into ``FrameResult``, ``FootprintUpdate`` and ``Event``.

    topics: which of b"frame", b"footprints", b"event" to receive. Malformed
    messages are skipped and counted in ``n_malformed`` (never raised).
    """

    def __init__(
        self,
        results_endpoint: str | None,
        events_endpoint: str | None = None,
        *,
        topics: tuple[bytes, ...] = (b"frame", b"footprints", b"event"),
        hwm: int = 100_000,
        context: zmq.Context | None = None,
    ) -> None:
        self._ctx = context or zmq.Context.instance()
        self._poller = zmq.Poller()
        self._socks = []
        for endpoint in (results_endpoint, events_endpoint):
            if endpoint is None:
                continue
            sock = self._ctx.socket(zmq.SUB)
            sock.setsockopt(zmq.RCVHWM, hwm)
            sock.setsockopt(zmq.LINGER, 0)
            for topic in topics:
                sock.setsockopt(zmq.SUBSCRIBE, topic)
            sock.connect(endpoint)
            self._poller.register(sock, zmq.POLLIN)
            self._socks.append(sock)
        self.n_malformed = 0

    def recv(self, timeout_ms: int = 1000) -> Message | None:
        """The next message, or None if none came within ``timeout_ms``."""
        deadline = time.monotonic() + timeout_ms / 1000
        while True:
            wait = max(0, int((deadline - time.monotonic()) * 1000))
            ready = dict(self._poller.poll(wait))
            if not ready:
                return None
            for sock in self._socks:
                if sock in ready:
                    parts = sock.recv_multipart(copy=False)
                    try:
                        decoder = _DECODERS.get(bytes(parts[0].buffer))
                        if decoder is None:
                            raise ProtocolError("unknown topic")
                        return decoder([p.buffer for p in parts])
                    except ProtocolError:
                        self.n_malformed += 1

    def __iter__(self) -> Iterator[Message]:
        while True:
            msg = self.recv(timeout_ms=1000)
            if msg is not None:
                yield msg

    def close(self) -> None:
        for sock in self._socks:
            sock.close()

    def __enter__(self) -> ResultsSubscriber:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


class ControlClient:
    """Requests to an engine's control socket (REQ). A request that gets no answer
    within ``timeout_ms`` raises ControlError (and the socket is renewed)."""

    def __init__(
        self, endpoint: str, *, timeout_ms: int = 5000, context: zmq.Context | None = None
    ) -> None:
        self._ctx = context or zmq.Context.instance()
        self._endpoint = endpoint
        self._timeout_ms = timeout_ms
        self._sock = self._open()

    def _open(self) -> zmq.Socket:
        sock = self._ctx.socket(zmq.REQ)
        sock.setsockopt(zmq.LINGER, 0)
        sock.connect(self._endpoint)
        return sock

    def request(self, cmd: str, **args) -> ControlReply:
        """Send one request; return the reply (ok or not)."""
        self._sock.send(encode_request(cmd, **args))
        if not self._sock.poll(self._timeout_ms, zmq.POLLIN):
            self._sock.close()  # a REQ socket without its reply is stuck: start afresh
            self._sock = self._open()
            raise ControlError(
                f"no reply to {cmd!r} from {self._endpoint} in {self._timeout_ms} ms"
            )
        return decode_reply(self._sock.recv_multipart())

    def _result(self, cmd: str, **args) -> dict:
        reply = self.request(cmd, **args)
        if not reply.ok:
            raise ControlError(f"{cmd}: {reply.error}")
        return reply.result

    def ping(self) -> dict:
        return self._result("ping")

    def status(self) -> dict:
        return self._result("status")

    def counters(self) -> dict:
        return self._result("counters")

    def footprints(self) -> FootprintUpdate:
        reply = self.request("footprints")
        if not reply.ok:
            raise ControlError(f"footprints: {reply.error}")
        return decode_footprints(list(reply.parts))

    def triggers(self) -> list[dict]:
        return self._result("get_triggers")["rules"]

    def set_triggers(self, rules: list[dict]) -> list[dict]:
        return self._result("set_triggers", rules=rules)["rules"]

    def clear_triggers(self) -> None:
        self._result("clear_triggers")

    def stop(self) -> None:
        self._result("stop")

    def close(self) -> None:
        self._sock.close()

    def __enter__(self) -> ControlClient:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
