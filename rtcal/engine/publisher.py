"""Results and events out: two PUB sockets, used only by the frame loop's thread.

PUB never blocks: a subscriber that reads too slowly loses messages once its
queue (``results_hwm``) is full, and the frame loop does not wait for it.
"""

from __future__ import annotations

import zmq

from rtcal.net.events import Event, encode_event
from rtcal.net.footprints import FootprintUpdate, encode_footprints
from rtcal.net.results import FrameResult, encode_frame_result


class Publisher:
    def __init__(self, results_sock: zmq.Socket, events_sock: zmq.Socket) -> None:
        self.results_sock = results_sock
        self.events_sock = events_sock
        self.n_results = 0
        self.n_events = 0

    def frame(self, result: FrameResult) -> None:
        self.results_sock.send_multipart(encode_frame_result(result), flags=zmq.NOBLOCK)
        self.n_results += 1

    def footprints(self, update: FootprintUpdate) -> None:
        self.results_sock.send_multipart(encode_footprints(update), flags=zmq.NOBLOCK, copy=False)

    def event(self, event: Event) -> None:
        self.events_sock.send_multipart(encode_event(event), flags=zmq.NOBLOCK)
        self.n_events += 1

    def close(self) -> None:
        self.results_sock.close(linger=200)
        self.events_sock.close(linger=200)
