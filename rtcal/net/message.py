"""What every message the engine publishes shares: a topic part, then a binary
header that starts with magic, version, kind, flags and the component-set version.

The topic (first part) lets a SUB socket filter by prefix: b"frame",
b"footprints", b"event". Arrays follow as raw little-endian parts.
"""

from __future__ import annotations

import struct

import numpy as np

from rtcal.net.errors import ProtocolError
from rtcal.net.frame import PROTOCOL_VERSION

RESULT_MAGIC = b"RTCR"
KIND_FRAME, KIND_FOOTPRINTS, KIND_EVENT = 1, 2, 3
TOPICS = {KIND_FRAME: b"frame", KIND_FOOTPRINTS: b"footprints", KIND_EVENT: b"event"}
_PREFIX = struct.Struct("<4sHBB")


def unpack_header(layout: struct.Struct, kind: int, header) -> tuple:
    """Check size, magic, version and kind of a header part; return all its fields."""
    n = len(header)
    if n != layout.size:
        reason = "truncated header" if n < layout.size else "bad header size"
        raise ProtocolError(
            reason, f"{TOPICS[kind].decode()} header of {n} bytes, need {layout.size}"
        )
    magic, version, got_kind, _ = _PREFIX.unpack_from(header)
    if magic != RESULT_MAGIC:
        raise ProtocolError("bad magic", f"{magic!r}, expected {RESULT_MAGIC!r}")
    if version != PROTOCOL_VERSION:
        raise ProtocolError(
            "unsupported version", f"{version}, this client speaks {PROTOCOL_VERSION}"
        )
    if got_kind != kind:
        raise ProtocolError("wrong kind", f"kind {got_kind} under topic {TOPICS[kind]!r}")
    return layout.unpack(header)


def check_parts(parts: list, kind: int, n_parts: int) -> None:
    """The topic matches ``kind`` and there are exactly ``n_parts`` parts."""
    if len(parts) != n_parts:
        raise ProtocolError("wrong part count", f"{len(parts)} parts, need {n_parts}")
    if bytes(parts[0]) != TOPICS[kind]:
        raise ProtocolError("unknown topic", repr(bytes(parts[0])[:32]))


def array_part(part, dtype: str, count: int, name: str) -> np.ndarray:
    """A read-only 1-D view of a part holding ``count`` values of ``dtype``."""
    dt = np.dtype(dtype)
    buf = memoryview(part)
    if buf.nbytes != count * dt.itemsize:
        raise ProtocolError(
            "size mismatch", f"{name}: {buf.nbytes} bytes, need {count} x {dt.itemsize}"
        )
    return np.frombuffer(buf, dt, count=count)
