"""Per-frame results out: every current component's values for one frame.

Parts: [b"frame", header (104 bytes), values]. Header (``<4sHBBIIQ4q5q2f``)::

    magic b"RTCR", version u16, kind u8 = 1, flags u8 (bit 0: WARMUP),
    component_version u32, n_components K u32,
    sequence u64, t_sent_ns, t_received_ns, t_done_ns, t_published_ns (int64),
    queue_ns, motion_ns, nmf_ns, deconv_ns, trigger_ns (int64),
    shift_dy, shift_dx (float32, px)

values: float32 (4, K) C order, rows traces (raw: unconstrained, may be negative),
denoised (C), spikes (S), dF/F.
Timestamps are ``time.time_ns()``: t_sent_ns by the sender, the rest by the
engine (arrival, result ready, just before publishing). WARMUP marks frames
whose results came out of the initialisation or the backlog held during it.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

import numpy as np

from rtcal.net.frame import PROTOCOL_VERSION
from rtcal.net.message import (
    KIND_FRAME,
    RESULT_MAGIC,
    TOPICS,
    array_part,
    check_parts,
    unpack_header,
)

_HEADER = struct.Struct("<4sHBBIIQ4q5q2f")
FLAG_WARMUP = 1
STAGES = ("queue", "motion", "nmf", "deconv", "trigger")


@dataclass(frozen=True)
class FrameResult:
    """One frame's results. traces, denoised, spikes, dff: float32 (K,);
    stage_ns: int64 ns per stage, in the order of ``STAGES``; shift: (dy, dx) px."""

    sequence: int
    component_version: int
    traces: np.ndarray
    denoised: np.ndarray
    spikes: np.ndarray
    dff: np.ndarray
    shift: tuple[float, float]
    t_sent_ns: int
    t_received_ns: int
    t_done_ns: int
    t_published_ns: int
    stage_ns: tuple[int, int, int, int, int]
    warmup: bool = False

    @property
    def n_components(self) -> int:
        return int(self.traces.shape[0])


def encode_frame_result(r: FrameResult) -> list:
    """The message parts of ``r``."""
    values = np.stack([r.traces, r.denoised, r.spikes, r.dff]).astype(np.float32, copy=False)
    header = _HEADER.pack(
        RESULT_MAGIC,
        PROTOCOL_VERSION,
        KIND_FRAME,
        FLAG_WARMUP if r.warmup else 0,
        r.component_version,
        values.shape[1],
        r.sequence,
        r.t_sent_ns,
        r.t_received_ns,
        r.t_done_ns,
        r.t_published_ns,
        *r.stage_ns,
        *r.shift,
    )
    return [TOPICS[KIND_FRAME], header, values]


def decode_frame_result(parts: list) -> FrameResult:
    """Parse and validate the parts of a frame message (ProtocolError if malformed)."""
    check_parts(parts, KIND_FRAME, 3)
    f = unpack_header(_HEADER, KIND_FRAME, memoryview(parts[1]))
    _, _, _, flags, version, K, seq, t_sent, t_rec, t_done, t_pub = f[:11]
    values = array_part(parts[2], "<f4", 4 * K, "values").reshape(4, K)
    return FrameResult(
        sequence=seq,
        component_version=version,
        traces=values[0],
        denoised=values[1],
        spikes=values[2],
        dff=values[3],
        shift=(f[16], f[17]),
        t_sent_ns=t_sent,
        t_received_ns=t_rec,
        t_done_ns=t_done,
        t_published_ns=t_pub,
        stage_ns=tuple(f[11:16]),
        warmup=bool(flags & FLAG_WARMUP),
    )
