"""The receiver thread: frames from a PULL (or SUB) socket into the ring.

Per message: the header part is received into a small fixed buffer and
validated, then the pixel part straight into the ring's receiving slot. Any
malformed message is counted by reason and discarded whole; nothing a sender
does stops this thread. A PULL socket cannot answer, so errors are reported
through the counters (control ``status``) only.
"""

from __future__ import annotations

import sys
import threading
import time
from typing import TYPE_CHECKING

import numpy as np
import zmq

from rtcal.ingest.counters import IngestCounters
from rtcal.ingest.ring import FrameRing
from rtcal.ingest.sequence import OK, SequenceTracker
from rtcal.net.errors import ProtocolError
from rtcal.net.frame import FRAME_HEADER_SIZE, check_pixel_size, decode_frame_header

if TYPE_CHECKING:  # the engine's; not imported by the ingest layer at run time
    from rtcal.engine.realtime import RealtimeReport

_POLL_MS = 50
_HAS_RECV_INTO = hasattr(zmq.Socket, "recv_into")  # pyzmq >= 26.4


def recv_part(sock: zmq.Socket, buf) -> int:
    """Receive the next part into ``buf``; its real size (larger = truncated)."""
    if _HAS_RECV_INTO:
        return sock.recv_into(buf)
    part = sock.recv(copy=False)
    view = memoryview(part.buffer).cast("B")
    n = min(len(view), len(buf))
    if n:
        np.frombuffer(buf, np.uint8, count=n)[:] = np.frombuffer(view, np.uint8, count=n)
    return len(view)


def _discard_rest(sock: zmq.Socket) -> None:
    while sock.getsockopt(zmq.RCVMORE):
        recv_part(sock, bytearray(0))


class Receiver(threading.Thread):
    """Owns ``sock`` (bound by the engine). The ring is made at the first valid
    frame (its size fixes the stream's frame size) and announced through
    ``ring_ready``; frames of another size are "shape change" errors.

    on_ring(ring): called once, from this thread, when the ring exists.
    realtime: a ``RealtimeReport`` this thread applies to itself when it starts
    (``rtcal.engine.realtime``), or None.
    """

    def __init__(
        self,
        sock: zmq.Socket,
        counters: IngestCounters,
        *,
        n_slots: int,
        policy: str,
        stop: threading.Event,
        realtime: RealtimeReport | None = None,
    ) -> None:
        super().__init__(name="rtcal-receiver", daemon=True)
        self.realtime = realtime
        self.sock = sock
        self.counters = counters
        self.n_slots, self.policy = n_slots, policy
        self.stop_event = stop
        self.ring: FrameRing | None = None
        self.ring_ready = threading.Event()
        self.sequence = SequenceTracker()
        self._header = bytearray(FRAME_HEADER_SIZE + 1)  # one spare byte: oversize shows

    def run(self) -> None:
        if self.realtime is not None:
            self.realtime.apply("receiver")
        try:
            while not self.stop_event.is_set():
                if self.sock.poll(_POLL_MS, zmq.POLLIN):
                    self._receive_one()
        except zmq.ZMQError as e:  # the context was terminated under us: nothing to receive
            if not self.stop_event.is_set():
                print(f"rtcal engine: frame socket failed ({e}); stopping", file=sys.stderr)
                self.stop_event.set()
        finally:
            self.sock.close(linger=0)
            if self.ring is not None:
                self.ring.close()

    def _receive_one(self) -> None:
        n = recv_part(self.sock, self._header)
        t_wall, t_mono = time.time_ns(), time.monotonic_ns()
        try:
            header = decode_frame_header(self._header, n_bytes=n)
            if not self.sock.getsockopt(zmq.RCVMORE):
                raise ProtocolError("missing pixel frame", f"frame {header.sequence}")
            ring = self._ring_for(header.height, header.width)
            n_pixels = recv_part(self.sock, ring.buffer(ring.receiving))
            if self.sock.getsockopt(zmq.RCVMORE):
                raise ProtocolError("extra parts", f"frame {header.sequence}")
            check_pixel_size(header, n_pixels)
        except ProtocolError as e:
            _discard_rest(self.sock)
            self.counters.malformed(e.reason)
            return
        verdict, missing = self.sequence.step(header.sequence)
        if verdict != OK:
            self.counters.add("duplicates" if verdict == "duplicate" else "out_of_order")
            return
        if missing:
            self.counters.add("gap_frames", missing)
            self.counters.add("gaps")
        self.counters.add("received")
        ring.commit(header, t_wall, t_mono)

    def _ring_for(self, height: int, width: int) -> FrameRing:
        if self.ring is None:
            self.ring = FrameRing(self.n_slots, height, width, self.policy, self.counters)
            self.ring_ready.set()
        elif (height, width) != (self.ring.height, self.ring.width):
            raise ProtocolError(
                "shape change",
                f"{height}x{width} frame in a {self.ring.height}x{self.ring.width} stream",
            )
        return self.ring
