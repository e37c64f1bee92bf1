"""Footprint updates out: the whole current component set, sparse (CSR).

Sent whenever the component set changes (components added), periodically as
footprints are refined, and on request over the control socket.
Parts: [b"footprints", header (40 bytes), indptr, indices, values, born].
Header (``<4sHBBIIIIQQ``)::

    magic b"RTCR", version u16, kind u8 = 2, flags u8 (0),
    component_version u32, n_components K u32, height u32, width u32,
    nnz u64, sequence u64 (the frame after which this set holds)

indptr int64 (K + 1,), indices int32 (nnz,) flat pixel index row * width + col,
values float32 (nnz,): component k is ``indices/values[indptr[k]:indptr[k+1]]``.
born: int64 (K,) the sequence number of the first frame with a value for each
component. Component k is the same neuron in every message of a run.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

import numpy as np

from rtcal.net.errors import ProtocolError
from rtcal.net.frame import PROTOCOL_VERSION
from rtcal.net.message import (
    KIND_FOOTPRINTS,
    RESULT_MAGIC,
    TOPICS,
    array_part,
    check_parts,
    unpack_header,
)

_HEADER = struct.Struct("<4sHBBIIIIQQ")


@dataclass(frozen=True)
class FootprintUpdate:
    """All K footprints in CSR form (see the module docstring for the arrays)."""

    component_version: int
    sequence: int
    height: int
    width: int
    indptr: np.ndarray
    indices: np.ndarray
    values: np.ndarray
    born: np.ndarray

    @property
    def n_components(self) -> int:
        return int(self.indptr.shape[0] - 1)

    def dense(self) -> np.ndarray:
        """float32 (K, height, width)."""
        K, P = self.n_components, self.height * self.width
        out = np.zeros((K, P), np.float32)
        rows = np.repeat(np.arange(K), np.diff(self.indptr))
        out[rows, self.indices] = self.values
        return out.reshape(K, self.height, self.width)


def encode_footprints(u: FootprintUpdate) -> list:
    """The message parts of ``u`` (arrays sent as they are when already of the wire dtype)."""
    K = u.n_components
    header = _HEADER.pack(
        RESULT_MAGIC,
        PROTOCOL_VERSION,
        KIND_FOOTPRINTS,
        0,
        u.component_version,
        K,
        u.height,
        u.width,
        len(u.values),
        u.sequence,
    )
    return [
        TOPICS[KIND_FOOTPRINTS],
        header,
        np.ascontiguousarray(u.indptr, "<i8"),
        np.ascontiguousarray(u.indices, "<i4"),
        np.ascontiguousarray(u.values, "<f4"),
        np.ascontiguousarray(u.born, "<i8"),
    ]


def decode_footprints(parts: list) -> FootprintUpdate:
    """Parse and validate a footprints message (ProtocolError if malformed)."""
    check_parts(parts, KIND_FOOTPRINTS, 6)
    f = unpack_header(_HEADER, KIND_FOOTPRINTS, memoryview(parts[1]))
    version, K, height, width, nnz, seq = f[4:]
    indptr = array_part(parts[2], "<i8", K + 1, "indptr")
    indices = array_part(parts[3], "<i4", nnz, "indices")
    values = array_part(parts[4], "<f4", nnz, "values")
    born = array_part(parts[5], "<i8", K, "born")
    if indptr[0] != 0 or indptr[-1] != nnz or np.any(np.diff(indptr) < 0):
        raise ProtocolError("bad indptr", "must rise from 0 to nnz")
    if nnz and (indices.min() < 0 or indices.max() >= height * width):
        raise ProtocolError("bad indices", f"pixel index outside [0, {height * width})")
    return FootprintUpdate(version, seq, height, width, indptr, indices, values, born)
