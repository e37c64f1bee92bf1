"""Frames in: a fixed 32-byte binary header, then the raw pixels as a second part.

Header layout (little-endian, ``struct`` format ``<4sHBBIIQq``)::

    offset size field
         0    4 magic        b"RTCF"
         4    2 version      PROTOCOL_VERSION (1)
         6    1 dtype code   DTYPE_CODES: 1 uint8, 2 uint16, 3 int16, 4 float32
         7    1 flags        no bits defined in version 1: must be 0
         8    4 height       rows, 1..MAX_DIM
        12    4 width        columns, 1..MAX_DIM
        16    8 sequence     uint64, +1 per frame the sender produced
        24    8 t_sent_ns    int64, sender's ``time.time_ns()`` when it sent the frame

The pixel part is exactly height * width * itemsize bytes, C order (row-major),
little-endian. Pure encode/decode functions: no sockets here.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

import numpy as np

from rtcal.net.errors import ProtocolError

PROTOCOL_VERSION = 1
FRAME_MAGIC = b"RTCF"
_HEADER = struct.Struct("<4sHBBIIQq")
FRAME_HEADER_SIZE = _HEADER.size  # 32
MAX_DIM = 16384
MAX_FRAME_BYTES = 1 << 30

DTYPE_CODES: dict[int, np.dtype] = {
    1: np.dtype("<u1"),
    2: np.dtype("<u2"),
    3: np.dtype("<i2"),
    4: np.dtype("<f4"),
}
_CODE_OF = {dt: code for code, dt in DTYPE_CODES.items()}
MAX_ITEMSIZE = max(dt.itemsize for dt in DTYPE_CODES.values())


@dataclass(frozen=True)
class FrameHeader:
    """One frame's header. dtype: the pixels' numpy dtype; t_sent_ns: sender wall clock."""

    sequence: int
    t_sent_ns: int
    dtype: np.dtype
    height: int
    width: int
    flags: int = 0

    @property
    def n_bytes(self) -> int:
        """Size of the pixel part."""
        return self.height * self.width * self.dtype.itemsize


def dtype_code(dtype) -> int:
    """The wire code of a numpy dtype; ProtocolError("unknown dtype") if it has none."""
    code = _CODE_OF.get(np.dtype(dtype))
    if code is None:
        names = ", ".join(str(d) for d in DTYPE_CODES.values())
        raise ProtocolError("unknown dtype", f"{np.dtype(dtype)} (the wire carries {names})")
    return code


def encode_frame_header(header: FrameHeader) -> bytes:
    """The 32 header bytes of ``header`` (validated as a receiver would)."""
    _check_dims(header.height, header.width, header.dtype.itemsize)
    if not 0 <= header.sequence < 1 << 64:
        raise ProtocolError("bad sequence", f"{header.sequence} is not a uint64")
    return _HEADER.pack(
        FRAME_MAGIC,
        PROTOCOL_VERSION,
        dtype_code(header.dtype),
        header.flags,
        header.height,
        header.width,
        header.sequence,
        header.t_sent_ns,
    )


def decode_frame_header(buf, n_bytes: int | None = None) -> FrameHeader:
    """Parse and validate a header part.

    buf: the received bytes (or a buffer holding them at its start); n_bytes:
    the part's real size when ``buf`` is a larger preallocated buffer (as
    returned by ``recv_into``). Raises ProtocolError with reason "truncated
    header", "bad header size", "bad magic", "unsupported version", "unknown
    dtype", "unknown flags" or "bad dims".
    """
    size = len(buf) if n_bytes is None else n_bytes
    if size < FRAME_HEADER_SIZE:
        raise ProtocolError("truncated header", f"{size} bytes, need {FRAME_HEADER_SIZE}")
    if size > FRAME_HEADER_SIZE:
        raise ProtocolError("bad header size", f"{size} bytes, need {FRAME_HEADER_SIZE}")
    magic, version, code, flags, height, width, seq, t_sent = _HEADER.unpack_from(buf)
    if magic != FRAME_MAGIC:
        raise ProtocolError("bad magic", f"{magic!r}, expected {FRAME_MAGIC!r}")
    if version != PROTOCOL_VERSION:
        raise ProtocolError(
            "unsupported version", f"{version}, this engine speaks {PROTOCOL_VERSION}"
        )
    dtype = DTYPE_CODES.get(code)
    if dtype is None:
        raise ProtocolError("unknown dtype", f"code {code}")
    if flags:
        raise ProtocolError("unknown flags", f"0x{flags:02x}")
    _check_dims(height, width, dtype.itemsize)
    return FrameHeader(seq, t_sent, dtype, height, width, flags)


def _check_dims(height: int, width: int, itemsize: int) -> None:
    if not (1 <= height <= MAX_DIM and 1 <= width <= MAX_DIM):
        raise ProtocolError("bad dims", f"{height}x{width} (each must be in 1..{MAX_DIM})")
    if height * width * itemsize > MAX_FRAME_BYTES:
        raise ProtocolError("bad dims", f"{height}x{width} frame over {MAX_FRAME_BYTES} bytes")


def check_pixel_size(header: FrameHeader, n_bytes: int) -> None:
    """ProtocolError("size mismatch") unless the pixel part has header.n_bytes bytes."""
    if n_bytes != header.n_bytes:
        raise ProtocolError(
            "size mismatch",
            f"pixel part of {n_bytes} bytes, header says {header.height}x{header.width} "
            f"{header.dtype} = {header.n_bytes}",
        )


def frame_view(buffer, header: FrameHeader) -> np.ndarray:
    """The (height, width) array of ``header.dtype`` at the start of ``buffer``; no copy."""
    n = header.height * header.width
    return np.frombuffer(buffer, header.dtype, count=n).reshape(header.height, header.width)


def encode_frame(frame: np.ndarray, sequence: int, t_sent_ns: int) -> tuple[bytes, np.ndarray]:
    """(header bytes, C-contiguous pixels) for a 2-D array; the pixels are not copied
    when ``frame`` is already C-contiguous."""
    frame = np.asarray(frame)
    if frame.ndim != 2:
        raise ProtocolError("bad dims", f"a frame is 2-D (H, W), got shape {frame.shape}")
    pixels = np.ascontiguousarray(frame)
    if pixels.dtype.byteorder == ">":
        pixels = pixels.astype(pixels.dtype.newbyteorder("<"))
    header = FrameHeader(sequence, t_sent_ns, pixels.dtype, *pixels.shape)
    return encode_frame_header(header), pixels
