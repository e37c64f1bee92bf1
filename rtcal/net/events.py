"""Trigger events out, on their own PUB socket (the stimulation controller's).

Parts: [b"event", header (48 bytes), rule, neurons]. Header (``<4sHBBIIQqqq``)::

    magic b"RTCR", version u16, kind u8 = 3, flags u8 (0),
    component_version u32, n_neurons u32,
    sequence u64 (the frame that fired the rule),
    t_sent_ns, t_received_ns, t_event_ns (int64, ``time.time_ns()``: sender's
    send, engine's arrival, event emission)

rule: the rule's name, UTF-8; neurons: int64 (n_neurons,) component indices.
The latency of an event from the microscope's send is t_event_ns - t_sent_ns
(plus transport to the controller).
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

import numpy as np

from rtcal.net.errors import ProtocolError
from rtcal.net.frame import PROTOCOL_VERSION
from rtcal.net.message import (
    KIND_EVENT,
    RESULT_MAGIC,
    TOPICS,
    array_part,
    check_parts,
    unpack_header,
)

_HEADER = struct.Struct("<4sHBBIIQqqq")
MAX_RULE_BYTES = 64


@dataclass(frozen=True)
class Event:
    """One trigger event. neurons: int64 (n,) component indices."""

    rule: str
    sequence: int
    neurons: np.ndarray
    component_version: int
    t_sent_ns: int
    t_received_ns: int
    t_event_ns: int


def encode_event(e: Event) -> list:
    rule = e.rule.encode("utf-8")
    neurons = np.ascontiguousarray(e.neurons, "<i8")
    header = _HEADER.pack(
        RESULT_MAGIC,
        PROTOCOL_VERSION,
        KIND_EVENT,
        0,
        e.component_version,
        len(neurons),
        e.sequence,
        e.t_sent_ns,
        e.t_received_ns,
        e.t_event_ns,
    )
    return [TOPICS[KIND_EVENT], header, rule, neurons]


def decode_event(parts: list) -> Event:
    """Parse and validate an event message (ProtocolError if malformed)."""
    check_parts(parts, KIND_EVENT, 4)
    f = unpack_header(_HEADER, KIND_EVENT, memoryview(parts[1]))
    version, n, seq, t_sent, t_rec, t_event = f[4:]
    raw = bytes(parts[2])
    if not 0 < len(raw) <= MAX_RULE_BYTES:
        raise ProtocolError("bad rule", f"rule name of {len(raw)} bytes")
    try:
        rule = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        raise ProtocolError("bad rule", "rule name is not UTF-8") from e
    neurons = array_part(parts[3], "<i8", n, "neurons")
    return Event(rule, seq, neurons, version, t_sent, t_rec, t_event)
