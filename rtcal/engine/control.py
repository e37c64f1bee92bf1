"""The control thread: a REP socket answering status, footprints, trigger and stop requests.

Every request gets exactly one reply (REP requires it): a malformed request
gets an error reply and is counted by reason; the thread never exits on bad
input. The engine supplies the answers through ``handle``.
"""

from __future__ import annotations

import sys
import threading
from collections.abc import Callable

import zmq

from rtcal.errors import RtcalError
from rtcal.ingest.counters import IngestCounters
from rtcal.net.control import ControlRequest, decode_request, encode_reply
from rtcal.net.errors import ProtocolError

# handle(request) -> (result dict, extra binary parts); raises RtcalError for a refusal
Handler = Callable[[ControlRequest], tuple[dict, tuple]]


class ControlServer(threading.Thread):
    def __init__(
        self, sock: zmq.Socket, handle: Handler, counters: IngestCounters, stop: threading.Event
    ) -> None:
        super().__init__(name="rtcal-control", daemon=True)
        self.sock = sock
        self.handle = handle
        self.counters = counters
        self.stop_event = stop
        self.n_requests = 0

    def run(self) -> None:
        try:
            while not self.stop_event.is_set():
                if self.sock.poll(50, zmq.POLLIN):
                    self.sock.send_multipart(self._answer(self.sock.recv_multipart()))
        except zmq.ZMQError as e:  # the context was terminated under us
            if not self.stop_event.is_set():
                print(f"rtcal engine: control socket failed ({e})", file=sys.stderr)
        finally:
            self.sock.close(linger=500)

    def _answer(self, parts: list) -> list:
        self.n_requests += 1
        try:
            request = decode_request(parts)
            result, extra = self.handle(request)
            return encode_reply(result, parts=extra)
        except ProtocolError as e:
            self.counters.control_error(e.reason)
            return encode_reply(error=str(e))
        except RtcalError as e:
            self.counters.control_error("refused")
            return encode_reply(error=f"refused: {e}")
        except Exception as e:  # a bug in a handler must not take the control socket down
            self.counters.control_error("internal error")
            print(f"rtcal engine: control request failed: {e!r}", file=sys.stderr)
            return encode_reply(error=f"internal error: {e!r}")
