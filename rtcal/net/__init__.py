"""The wire protocol (``docs/protocol.md``): frames in, results, footprints and
events out, control requests. Pure encode/decode functions and small message
dataclasses; sockets live in ``rtcal.client``, ``rtcal.ingest`` and ``rtcal.engine``."""

from rtcal.net.control import ControlReply, ControlRequest
from rtcal.net.errors import ProtocolError
from rtcal.net.events import Event
from rtcal.net.footprints import FootprintUpdate
from rtcal.net.frame import PROTOCOL_VERSION, FrameHeader
from rtcal.net.results import FrameResult

__all__ = [
    "PROTOCOL_VERSION",
    "ControlReply",
    "ControlRequest",
    "Event",
    "FootprintUpdate",
    "FrameHeader",
    "FrameResult",
    "ProtocolError",
]
