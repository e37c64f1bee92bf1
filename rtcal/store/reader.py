"""Read and validate a results file (see ``docs/results-format.md``).

A cleanly closed file (``complete`` True) must be fully consistent: every
column of K, T and E has the same length, or the file is rejected. A file the
writer never closed (killed, crashed, or still being written) is read up to
its consistent prefix: T is the shortest frame column (``frames/index`` is
written last in each flush, so it is the one that bounds T), K and E likewise,
and the result says ``complete=False``.
"""

from __future__ import annotations

import struct
from pathlib import Path

import h5py
import numpy as np

from rtcal.store import format as fmt
from rtcal.store.format import ResultsFormatError
from rtcal.store.results import Events, Results


def read_results(path) -> Results:
    """Load a results file into memory.

    Raises ``ResultsFormatError`` naming the file for: a missing file, a file that
    is not HDF5, a truncated or corrupt HDF5 file, an HDF5 file that is not an
    rtcal results file, a newer ``format_version``, missing datasets, wrong
    dtypes or shapes, and a complete file whose columns disagree.
    """
    path = Path(path)
    with _open(path) as f:
        try:
            return _read(path, f)
        except (OSError, RuntimeError, KeyError) as e:
            raise ResultsFormatError(f"{path}: truncated or corrupt results file ({e})") from e


def _open(path: Path) -> h5py.File:
    """Open read-only; a file still marked open for writing needs ``swmr=True``.

    That is a file whose SWMR writer was killed, or is still running. An SWMR
    open skips HDF5's end-of-file check (which catches a truncated file), and on a
    truncated file can then spin on unreadable metadata, so the check is made here.
    """
    if not path.exists():
        raise ResultsFormatError(f"{path}: no such file")
    if not path.is_file() or not h5py.is_hdf5(path):
        raise ResultsFormatError(f"{path}: not an HDF5 file")
    superblock = _superblock(path)
    live = superblock is not None and superblock[0] & _FLAG_OPEN_FOR_WRITE
    if live and superblock[1] > path.stat().st_size:
        raise ResultsFormatError(
            f"{path}: truncated HDF5 file ({path.stat().st_size} bytes, "
            f"superblock says {superblock[1]})"
        )
    try:
        return h5py.File(path, "r", swmr=bool(live), locking=False)
    except OSError as e:
        raise ResultsFormatError(
            f"{path}: cannot open as HDF5 ({e}): truncated or corrupt, or open for "
            "writing in this same process (read a live file from another process)"
        ) from e


_HDF5_SIGNATURE = b"\x89HDF\r\n\x1a\n"
_FLAG_OPEN_FOR_WRITE = 0x01


def _superblock(path: Path) -> tuple[int, int] | None:
    """(consistency flags, end-of-file address) of a version 2/3 superblock at 0.

    HDF5 file format spec, "Superblock" v2/v3: signature (8 bytes), version, size
    of offsets, size of lengths, file consistency flags (bit 0: open for write,
    bit 2: open for SWMR write), then base, extension and end-of-file addresses
    (``size of offsets`` = 8 bytes each, little-endian). None for other layouts
    (older superblocks have no flags; a plain open handles them).
    """
    with open(path, "rb") as fh:
        head = fh.read(36)
    if len(head) < 36 or head[:8] != _HDF5_SIGNATURE or head[8] not in (2, 3) or head[9] != 8:
        return None
    (stored_eof,) = struct.unpack_from("<Q", head, 28)
    return head[11], stored_eof


def _read(path: Path, f: h5py.File) -> Results:
    height, width, fps_hz = _check_identity(path, f)
    _check_columns(path, f, height, width)
    complete = bool(f.attrs.get(fmt.ATTR_COMPLETE, False))
    k, t, e = _sizes(path, f, complete)
    return Results(
        height=height,
        width=width,
        fps_hz=fps_hz,
        footprints=_head(f[fmt.FOOTPRINTS], k),
        traces=_head(f[fmt.TRACES], k, t),
        spikes=_head(f[fmt.SPIKES], k, t),
        born_frame=_head(f[fmt.BORN_FRAME], k),
        frame_index=_head(f[fmt.FRAME_INDEX], t),
        shifts=_head(f[fmt.FRAME_SHIFT], t),
        t_received_ns=_head(f[fmt.FRAME_T_RECEIVED], t),
        t_done_ns=_head(f[fmt.FRAME_T_DONE], t),
        events=_read_events(f, e),
        complete=complete,
        attrs=_user_attrs(f),
        software=_text(f.attrs.get(fmt.ATTR_SOFTWARE, "")),
        retired_frame=_read_retired(f, k),
    )


def _read_retired(f: h5py.File, k: int) -> np.ndarray:
    """retired_frame (K,); -1 where the file has no value (older files, or an
    incomplete file whose last flush did not reach it)."""
    out = np.full(k, -1, np.int64)
    if fmt.RETIRED_FRAME in f:
        stored = _head(f[fmt.RETIRED_FRAME], min(k, f[fmt.RETIRED_FRAME].shape[0]))
        out[: len(stored)] = stored
    return out


def _text(value) -> str:
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)


def _check_identity(path: Path, f: h5py.File) -> tuple[int, int, float]:
    """Format name and version, then the frame geometry attributes."""
    name = f.attrs.get(fmt.ATTR_FORMAT)
    if name is None or _text(name) != fmt.FORMAT_NAME:
        found = "no 'format' attribute" if name is None else f"format={_text(name)!r}"
        raise ResultsFormatError(
            f"{path}: not an rtcal results file ({found}; expected {fmt.FORMAT_NAME!r})"
        )
    version = f.attrs.get(fmt.ATTR_VERSION)
    if not isinstance(version, (int, np.integer)) or version < 1:
        raise ResultsFormatError(f"{path}: bad format_version {version!r}")
    if version > fmt.FORMAT_VERSION:
        raise ResultsFormatError(
            f"{path}: written by a newer rtcal (format_version {int(version)}; this rtcal "
            f"reads up to {fmt.FORMAT_VERSION}); upgrade rtcal to read it"
        )
    try:
        height, width = int(f.attrs[fmt.ATTR_HEIGHT]), int(f.attrs[fmt.ATTR_WIDTH])
        fps_hz = float(f.attrs[fmt.ATTR_FPS])
    except (KeyError, TypeError, ValueError) as e:
        raise ResultsFormatError(f"{path}: missing or bad height/width/fps_hz ({e})") from e
    return height, width, fps_hz


def _check_columns(path: Path, f: h5py.File, height: int, width: int) -> None:
    """Every schema dataset exists with its dtype and number of dimensions."""
    for col in fmt.ALL_COLUMNS:
        ds = f.get(col.path)
        if not isinstance(ds, h5py.Dataset):
            raise ResultsFormatError(f"{path}: missing dataset {col.path!r}")
        if col.dtype.kind == "S":
            ok = h5py.check_string_dtype(ds.dtype) is not None
        else:
            ok = ds.dtype == col.dtype
        if not ok or ds.ndim != col.ndim:
            raise ResultsFormatError(
                f"{path}: {col.path!r} is {ds.dtype} {ds.ndim}-D, expected {col.dtype} {col.ndim}-D"
            )
    if f[fmt.FOOTPRINTS].shape[1:] != (height, width):
        raise ResultsFormatError(
            f"{path}: footprints are {f[fmt.FOOTPRINTS].shape[1:]}, attrs say ({height}, {width})"
        )
    if f[fmt.FRAME_SHIFT].shape[1] != 2:
        raise ResultsFormatError(f"{path}: frames/shift must be (T, 2)")
    for col in fmt.OPTIONAL_COLUMNS:
        ds = f.get(col.path)
        if ds is not None and (
            not isinstance(ds, h5py.Dataset) or ds.dtype != col.dtype or ds.ndim != col.ndim
        ):
            raise ResultsFormatError(f"{path}: {col.path!r} must be {col.dtype} {col.ndim}-D")


def _sizes(path: Path, f: h5py.File, complete: bool) -> tuple[int, int, int]:
    """K, T, E: equal across columns in a complete file, else the shortest."""
    ks = {p: f[p].shape[0] for p in (fmt.FOOTPRINTS, fmt.BORN_FRAME, fmt.TRACES, fmt.SPIKES)}
    if complete and fmt.RETIRED_FRAME in f:
        ks[fmt.RETIRED_FRAME] = f[fmt.RETIRED_FRAME].shape[0]
    ts = {p: f[p].shape[0] for p in (fmt.FRAME_INDEX, fmt.FRAME_SHIFT, fmt.FRAME_T_RECEIVED)}
    ts[fmt.FRAME_T_DONE] = f[fmt.FRAME_T_DONE].shape[0]
    ts[fmt.TRACES] = f[fmt.TRACES].shape[1]
    ts[fmt.SPIKES] = f[fmt.SPIKES].shape[1]
    es = {p: f[p].shape[0] for p in (fmt.EVENT_FRAME, fmt.EVENT_T, fmt.EVENT_RULE)}
    es[fmt.EVENT_OFFSET] = f[fmt.EVENT_OFFSET].shape[0] - 1
    offsets = f[fmt.EVENT_OFFSET][:]
    n_neurons = f[fmt.EVENT_NEURONS].shape[0]
    if not complete:
        e = _valid_offsets_prefix(offsets[: min(es.values()) + 1], n_neurons)
        return min(ks.values()), min(ts.values()), e
    for axis, sizes in (("K", ks), ("T", ts), ("E", es)):
        if len(set(sizes.values())) != 1:
            raise ResultsFormatError(f"{path}: complete file but {axis} disagrees: {sizes}")
    t = ts[fmt.FRAME_INDEX]
    n_frames = f.attrs.get(fmt.ATTR_N_FRAMES)
    if n_frames != t:
        raise ResultsFormatError(f"{path}: n_frames attr is {n_frames} but {t} frames stored")
    e = es[fmt.EVENT_FRAME]
    if _valid_offsets_prefix(offsets, n_neurons) != e or offsets[-1] != n_neurons:
        raise ResultsFormatError(f"{path}: events/neurons_offset does not index events/neurons")
    return ks[fmt.FOOTPRINTS], t, e


def _valid_offsets_prefix(offsets: np.ndarray, n_neurons: int) -> int:
    """Largest E such that offsets[:E+1] starts at 0, never decreases, stays <= N."""
    if len(offsets) == 0 or offsets[0] != 0:
        return 0
    bad = (np.diff(offsets) < 0) | (offsets[1:] > n_neurons)
    return int(np.argmax(bad)) if bad.any() else len(offsets) - 1


def _head(ds: h5py.Dataset, *stops: int) -> np.ndarray:
    """ds[:stops[0], :stops[1], ...] read into memory (empty-safe)."""
    shape = tuple(stops) + ds.shape[len(stops) :]
    if 0 in shape:
        return np.zeros(shape, ds.dtype)
    return ds[tuple(slice(0, n) for n in stops)]


def _read_events(f: h5py.File, e: int) -> Events:
    if e == 0:
        return Events.empty()
    offsets = f[fmt.EVENT_OFFSET][: e + 1]
    neurons = _head(f[fmt.EVENT_NEURONS], int(offsets[-1]))
    return Events(
        frame=f[fmt.EVENT_FRAME][:e],
        t_ns=f[fmt.EVENT_T][:e],
        rule=tuple(f[fmt.EVENT_RULE].asstr()[:e].tolist()),
        neurons=tuple(np.split(neurons, offsets[1:-1])),
    )


def _user_attrs(f: h5py.File) -> dict:
    """Root attributes the caller added (not the format's), numpy scalars as Python."""
    out = {}
    for key, value in f.attrs.items():
        if key not in fmt.RESERVED_ATTRS:
            out[key] = value.item() if isinstance(value, np.generic) else value
    return out
