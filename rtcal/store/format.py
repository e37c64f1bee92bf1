"""Names, version and schema of the results file (see ``docs/results-format.md``).

One place that says what a results file holds: the writer creates exactly
these objects and the reader checks exactly these, so the two cannot drift.

Layout (HDF5, all datasets chunked and resizable along their growing axes)::

    /                      attrs: format, format_version, software, complete,
                                  height, width, fps_hz, n_frames, + caller attrs
    footprints             float32 (K, H, W)   gzip + shuffle, one chunk per row
    born_frame             int64   (K,)
    retired_frame          int64   (K,)        -1 while alive (optional: absent in older files)
    traces                 float32 (K, T)      NaN before birth
    spikes                 float32 (K, T)      NaN before birth
    frames/index           int64   (T,)        defines T of an incomplete file
    frames/shift           float32 (T, 2)      (dy, dx) px
    frames/t_received_ns   int64   (T,)
    frames/t_done_ns       int64   (T,)
    events/frame           int64   (E,)        defines E of an incomplete file
    events/t_ns            int64   (E,)
    events/rule            fixed-length UTF-8 string, RULE_MAX_BYTES bytes (E,)
    events/neurons         int64   (N,)        CSR values
    events/neurons_offset  int64   (E + 1,)    CSR row pointer, starts at 0
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from rtcal.errors import RtcalError

FORMAT_NAME = "rtcal-results"
FORMAT_VERSION = 1

# HDF5 file-format bounds: v1.10 objects are the oldest that support SWMR, and
# pinning the upper bound keeps files readable by any HDF5 >= 1.10 (h5py >= 2.7).
LIBVER = ("v110", "v110")

# Root attributes the format defines; every other root attribute is the caller's.
ATTR_FORMAT = "format"
ATTR_VERSION = "format_version"
ATTR_SOFTWARE = "software"
ATTR_COMPLETE = "complete"
ATTR_HEIGHT = "height"
ATTR_WIDTH = "width"
ATTR_FPS = "fps_hz"
ATTR_N_FRAMES = "n_frames"
RESERVED_ATTRS = frozenset(
    {
        ATTR_FORMAT,
        ATTR_VERSION,
        ATTR_SOFTWARE,
        ATTR_COMPLETE,
        ATTR_HEIGHT,
        ATTR_WIDTH,
        ATTR_FPS,
        ATTR_N_FRAMES,
    }
)

FOOTPRINTS = "footprints"
BORN_FRAME = "born_frame"
RETIRED_FRAME = "retired_frame"
TRACES = "traces"
SPIKES = "spikes"
FRAME_INDEX = "frames/index"
FRAME_SHIFT = "frames/shift"
FRAME_T_RECEIVED = "frames/t_received_ns"
FRAME_T_DONE = "frames/t_done_ns"
EVENT_FRAME = "events/frame"
EVENT_T = "events/t_ns"
EVENT_RULE = "events/rule"
EVENT_NEURONS = "events/neurons"
EVENT_OFFSET = "events/neurons_offset"

# Rule names are stored fixed-length because SWMR cannot append variable-length data.
RULE_MAX_BYTES = 64

# Chunk shapes along the growing axes: traces chunks are 64 components x 256 frames
# (64 KiB), so a one-second flush at 30-1000 Hz touches a few chunks per 64 rows.
TRACE_CHUNK = (64, 256)
COLUMN_CHUNK = 4096
EVENT_CHUNK = 1024
FOOTPRINT_GZIP_LEVEL = 1


class ResultsFormatError(RtcalError):
    """A file that is not a readable rtcal results file; the message names file and problem."""


@dataclass(frozen=True)
class Column:
    """One dataset of the schema: its path, dtype and number of dimensions."""

    path: str
    dtype: np.dtype
    ndim: int


F32 = np.dtype(np.float32)
I64 = np.dtype(np.int64)

COMPONENT_COLUMNS = (
    Column(FOOTPRINTS, F32, 3),
    Column(BORN_FRAME, I64, 1),
    Column(TRACES, F32, 2),
    Column(SPIKES, F32, 2),
)
FRAME_COLUMNS = (
    Column(FRAME_INDEX, I64, 1),
    Column(FRAME_SHIFT, F32, 2),
    Column(FRAME_T_RECEIVED, I64, 1),
    Column(FRAME_T_DONE, I64, 1),
)
EVENT_COLUMNS = (
    Column(EVENT_FRAME, I64, 1),
    Column(EVENT_T, I64, 1),
    Column(EVENT_RULE, np.dtype(f"S{RULE_MAX_BYTES}"), 1),
    Column(EVENT_NEURONS, I64, 1),
    Column(EVENT_OFFSET, I64, 1),
)
ALL_COLUMNS = COMPONENT_COLUMNS + FRAME_COLUMNS + EVENT_COLUMNS
# Written by every writer, read when present: files from before it read as all -1.
OPTIONAL_COLUMNS = (Column(RETIRED_FRAME, I64, 1),)
