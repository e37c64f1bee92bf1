"""Append-only, crash-safe writer of a results file (see ``docs/results-format.md``).

The live engine calls ``append_frame`` once per frame from its writer thread, so
that call only copies a few small arrays into preallocated memory. Every
``flush_interval_s`` (or when the block of ``block_frames`` frames is full) the
block goes to disk and HDF5 is flushed.

Crash safety comes from HDF5 SWMR (single-writer / multiple-reader) mode: every
dataset exists from the start with an unlimited axis, and SWMR orders HDF5's
metadata writes so that the file on disk is a valid HDF5 file at every instant.
On top of that each flush writes the datasets in a fixed order and flushes each
one before the next, ending with ``frames/index`` (and ``events/frame``), whose
lengths define T (and E) for a reader of an incomplete file. A process killed
at any moment therefore leaves a file that ``read_results`` opens, holding at
least everything up to the last completed ``flush``.

Not thread-safe: one thread owns a writer.
"""

from __future__ import annotations

import operator
import time
from pathlib import Path

import h5py
import numpy as np

from rtcal import __version__
from rtcal.store import format as fmt
from rtcal.store.buffers import EventLog, FootprintCopy, FrameBlock
from rtcal.store.checks import (
    ResultsWriteError,
    check_attrs,
    check_births,
    check_changed,
    check_footprints,
    check_results_shapes,
    check_retired,
    check_settings,
)
from rtcal.store.results import Results

# numpy bytes tagged as UTF-8 for h5py (plain "S" arrays would be ASCII in HDF5)
_RULE_DTYPE = h5py.string_dtype("utf-8", fmt.RULE_MAX_BYTES)


def _create_h5(path: Path) -> h5py.File:
    """Open a new HDF5 file with the format bounds that SWMR needs."""
    return h5py.File(path, "w", libver=fmt.LIBVER)


def _start_swmr(f: h5py.File) -> None:
    """Switch to SWMR write mode: from here on no new objects or attributes."""
    f.swmr_mode = True


def _growing(f: h5py.File, column: fmt.Column, shape: tuple, chunks: tuple, **kw):
    """Create an empty dataset that can grow along every axis that starts at 0."""
    maxshape = tuple(None if n == 0 else n for n in shape)
    dtype = _RULE_DTYPE if column.dtype.kind == "S" else column.dtype
    return f.create_dataset(
        column.path, shape=shape, maxshape=maxshape, chunks=chunks, dtype=dtype, **kw
    )


def _create_layout(f: h5py.File, height: int, width: int) -> None:
    """Create every dataset of the schema, empty (T = K = E = 0)."""
    cols = {c.path: c for c in fmt.ALL_COLUMNS}
    _growing(
        f,
        cols[fmt.FOOTPRINTS],
        (0, height, width),
        (1, height, width),
        compression="gzip",
        compression_opts=fmt.FOOTPRINT_GZIP_LEVEL,
        shuffle=True,
    )
    _growing(f, cols[fmt.BORN_FRAME], (0,), (fmt.EVENT_CHUNK,))
    for column in fmt.OPTIONAL_COLUMNS:
        _growing(f, column, (0,), (fmt.EVENT_CHUNK,))
    for path in (fmt.TRACES, fmt.SPIKES):
        _growing(f, cols[path], (0, 0), fmt.TRACE_CHUNK, fillvalue=np.float32(np.nan))
    for path in (fmt.FRAME_INDEX, fmt.FRAME_T_RECEIVED, fmt.FRAME_T_DONE):
        _growing(f, cols[path], (0,), (fmt.COLUMN_CHUNK,))
    _growing(f, cols[fmt.FRAME_SHIFT], (0, 2), (fmt.COLUMN_CHUNK, 2))
    for path in (fmt.EVENT_FRAME, fmt.EVENT_T, fmt.EVENT_RULE, fmt.EVENT_NEURONS):
        _growing(f, cols[path], (0,), (fmt.EVENT_CHUNK,))
    offset = f.create_dataset(
        fmt.EVENT_OFFSET, shape=(1,), maxshape=(None,), chunks=(fmt.EVENT_CHUNK,), dtype=np.int64
    )
    offset[0] = 0


def _write_at(ds: h5py.Dataset, start: int, values: np.ndarray) -> None:
    """Write ``values`` at rows ``start:`` (growing ``ds`` to fit), flush the dataset.

    Positioned by the writer's own counters, not by ``ds.shape``, so a flush that
    failed half-way (disk full) can be retried without duplicating rows.
    """
    if len(values):
        ds.resize(start + len(values), axis=0)
        ds[start:] = values
        ds.flush()


class ResultsWriter:
    """Write one results file, frame by frame, crash-safely.

    path: file to create (an existing file is replaced unless ``overwrite=False``)
    height, width: frame size in px (footprints are (K, height, width))
    fps_hz: nominal frame rate, stored as an attribute
    flush_interval_s: the longest time buffered data waits before going to disk
        (checked on each ``append_frame``); a kill loses at most this much
    attrs: extra root attributes (str keys, HDF5-storable values), written once
    block_frames: frames buffered in memory; a full block is flushed at once

    Use as a context manager, or call ``close()``: only a clean close sets the
    ``complete`` attribute to True. Leaving the ``with`` block by an exception
    flushes and closes but leaves ``complete`` False.
    """

    def __init__(
        self,
        path,
        *,
        height: int,
        width: int,
        fps_hz: float,
        flush_interval_s: float = 1.0,
        attrs: dict | None = None,
        block_frames: int = 256,
        overwrite: bool = True,
    ) -> None:
        self.path = Path(path)
        check_settings(self.path, height, width, fps_hz, flush_interval_s, block_frames)
        user_attrs = check_attrs(self.path, attrs)
        self.height, self.width = int(height), int(width)
        self._flush_interval_ns = int(flush_interval_s * 1e9)
        self._block = FrameBlock(int(block_frames))
        self._events = EventLog()
        self._footprints = FootprintCopy()
        self._born = np.zeros(0, np.int64)
        self._retired = np.zeros(0, np.int64)
        self._retired_dirty = False
        self._max_born = -1
        self._n_appended = 0
        self._n_written = 0
        self._n_events_written = 0
        self._n_neurons_written = 0
        self._k_written = 0
        self._last_index = -1
        self._closed = False
        self._file = self._open(overwrite, float(fps_hz), user_attrs)
        self._next_flush_ns = time.monotonic_ns() + self._flush_interval_ns

    def _open(self, overwrite: bool, fps_hz: float, user_attrs: dict) -> h5py.File:
        if not overwrite and self.path.exists():
            raise ResultsWriteError(f"{self.path}: exists and overwrite=False")
        try:
            f = _create_h5(self.path)
        except OSError as e:
            raise ResultsWriteError(f"{self.path}: cannot create results file ({e})") from e
        f.attrs[fmt.ATTR_FORMAT] = fmt.FORMAT_NAME
        f.attrs[fmt.ATTR_VERSION] = np.int64(fmt.FORMAT_VERSION)
        f.attrs[fmt.ATTR_SOFTWARE] = f"rtcal {__version__}"
        f.attrs[fmt.ATTR_COMPLETE] = False
        f.attrs[fmt.ATTR_HEIGHT] = np.int64(self.height)
        f.attrs[fmt.ATTR_WIDTH] = np.int64(self.width)
        f.attrs[fmt.ATTR_FPS] = np.float64(fps_hz)
        f.attrs[fmt.ATTR_N_FRAMES] = np.int64(0)
        try:
            for key, value in user_attrs.items():
                f.attrs[key] = value
        except (TypeError, ValueError) as e:
            f.close()
            raise ResultsWriteError(f"{self.path}: attrs cannot be stored in HDF5 ({e})") from e
        _create_layout(f, self.height, self.width)
        f.flush()
        _start_swmr(f)
        return f

    # ------------------------------------------------------------------ state

    @property
    def n_components(self) -> int:
        """K, the number of components set so far."""
        return int(self._born.shape[0])

    @property
    def n_frames_appended(self) -> int:
        return self._n_appended

    @property
    def n_frames_written(self) -> int:
        """Frames on disk as of the last flush: a kill now keeps at least these."""
        return self._n_written

    @property
    def n_events_written(self) -> int:
        return self._n_events_written

    def _check_open(self) -> None:
        if self._closed:
            raise ResultsWriteError(f"{self.path}: writer is closed")

    # ------------------------------------------------------------- components

    def set_footprints(
        self, footprints: np.ndarray, born_frame: np.ndarray, *, changed=None
    ) -> None:
        """Set all K footprints; K may only grow.

        footprints: float (K, H, W), finite; rows below the previous K overwrite
            (refine) the stored rows, rows above it are new components
        born_frame: integer (K,), the frame column (0-based position along T) of
            each component's first value. Existing components keep theirs; a new
            one cannot be born before ``n_frames_appended`` (its earlier columns
            are already NaN).
        changed: optional 1-D integer indices of the existing rows that changed.
            Without it every existing row is compared with the writer's copy;
            with it the other existing rows are taken as unchanged, unchecked,
            which makes the call cost proportional to the rows that changed.
        The changed and new rows are copied now and written at the next flush.
        """
        self._check_open()
        check_footprints(self.path, footprints, born_frame, self.height, self.width)
        born = born_frame.astype(np.int64)
        check_births(self.path, born, self._born, self._n_appended)
        k_old, k = self.n_components, len(born)
        if changed is None:
            old_rows = self._footprints.changed_rows(footprints)
        else:
            old_rows = check_changed(self.path, changed, k_old)
        rows = np.concatenate((old_rows, np.arange(k_old, k)))
        for row in rows.tolist():  # row by row: no (K, H, W) temporaries
            if not np.isfinite(footprints[row]).all():
                raise ResultsWriteError(f"{self.path}: footprint {row} has NaN or inf")
        self._footprints.update(rows, footprints)
        self._born = born
        self._retired = np.r_[self._retired, np.full(k - k_old, -1, np.int64)]
        self._max_born = int(born.max()) if k else -1
        self._block.reserve_components(k)

    def set_retired(self, retired_frame: np.ndarray) -> None:
        """Record retirements: retired_frame integer (K_r,), K_r <= K, for components
        0..K_r-1: -1 while alive, else the frame column from which the component is
        retired (merged into another or dead; its values are 0 from there on), in
        [its born_frame, n_frames_appended]. A retirement, once set, never changes.
        Written at the next flush.
        """
        self._check_open()
        retired = check_retired(
            self.path, retired_frame, self._retired, self._born, self._n_appended
        )
        if not np.array_equal(retired, self._retired[: len(retired)]):
            self._retired[: len(retired)] = retired
            self._retired_dirty = True

    # ----------------------------------------------------------------- frames

    def append_frame(
        self,
        *,
        index: int,
        traces: np.ndarray,
        spikes: np.ndarray,
        shift,
        t_received_ns: int,
        t_done_ns: int,
    ) -> None:
        """Buffer one frame's results.

        index: movie frame index, strictly increasing (gaps = dropped frames)
        traces, spikes: float (K_t,) for components 0..K_t-1, K_t <= K; the rest
            are NaN for this frame. Must be NaN for components not yet born.
        shift: (dy, dx) px, finite
        t_received_ns, t_done_ns: ``time.monotonic_ns()`` when the frame arrived
            and when its results were ready; t_done_ns >= t_received_ns
        Flushes when the block is full or ``flush_interval_s`` has passed.
        """
        self._check_open()
        index = operator.index(index)
        t_received_ns, t_done_ns = operator.index(t_received_ns), operator.index(t_done_ns)
        k_t = self._check_frame(index, traces, spikes, t_received_ns, t_done_ns)
        shift = np.asarray(shift, np.float32)
        if shift.shape != (2,) or not np.isfinite(shift).all():
            raise ResultsWriteError(f"{self.path}: frame {index}: shift must be 2 finite floats")
        b, row = self._block, self._block.n
        b.index[row] = index
        b.shift[row] = shift
        b.t_received_ns[row] = t_received_ns
        b.t_done_ns[row] = t_done_ns
        b.traces[row, :k_t] = traces
        b.spikes[row, :k_t] = spikes
        b.n += 1
        self._n_appended += 1
        self._last_index = index
        if b.n == b.capacity or time.monotonic_ns() >= self._next_flush_ns:
            self.flush()

    def _check_frame(self, index, traces, spikes, t_received_ns, t_done_ns) -> int:
        """Validate one frame's inputs; return K_t."""
        where = f"{self.path}: frame {index}"
        if index <= self._last_index:
            raise ResultsWriteError(f"{where}: index must increase (last was {self._last_index})")
        if t_done_ns < t_received_ns:
            raise ResultsWriteError(f"{where}: t_done_ns is before t_received_ns")
        for name, a in (("traces", traces), ("spikes", spikes)):
            if not isinstance(a, np.ndarray) or a.ndim != 1 or a.dtype.kind != "f":
                raise ResultsWriteError(f"{where}: {name} must be a 1-D float array")
        k_t = traces.shape[0]
        if spikes.shape[0] != k_t:
            raise ResultsWriteError(f"{where}: traces has {k_t} values, spikes {len(spikes)}")
        if k_t > self.n_components:
            raise ResultsWriteError(
                f"{where}: {k_t} traces but only {self.n_components} components; "
                "call set_footprints first"
            )
        if self._max_born > self._n_appended:  # some component is born after this frame
            unborn = self._born[:k_t] > self._n_appended
            if not (np.isnan(traces[unborn]).all() and np.isnan(spikes[unborn]).all()):
                raise ResultsWriteError(f"{where}: values for components not yet born")
        return k_t

    # ----------------------------------------------------------------- events

    def add_event(self, *, frame: int, t_ns: int, rule: str, neurons) -> None:
        """Record one trigger event (written at the next flush).

        frame: movie frame index that fired the rule; t_ns: ``time.time_ns()`` at
        emission; rule: name, at most ``RULE_MAX_BYTES`` bytes of UTF-8;
        neurons: 1-D integer component indices, each in [0, K).
        """
        self._check_open()
        frame, t_ns = operator.index(frame), operator.index(t_ns)
        where = f"{self.path}: event at frame {frame}"
        encoded = rule.encode("utf-8") if isinstance(rule, str) else b""
        if not encoded or len(encoded) > fmt.RULE_MAX_BYTES:
            raise ResultsWriteError(
                f"{where}: rule must be a non-empty str of <= {fmt.RULE_MAX_BYTES} UTF-8 bytes"
            )
        ids = np.asarray(neurons)
        if ids.size == 0:
            ids = np.zeros(0, np.int64)
        if ids.ndim != 1 or ids.dtype.kind not in "iu":
            raise ResultsWriteError(f"{where}: neurons must be a 1-D integer array")
        if ids.size and (ids.min() < 0 or ids.max() >= self.n_components):
            raise ResultsWriteError(f"{where}: neuron index outside [0, {self.n_components})")
        self._events.frame.append(frame)
        self._events.t_ns.append(t_ns)
        self._events.rule.append(encoded)
        self._events.neurons.append(ids.astype(np.int64))

    # ------------------------------------------------------------ disk writes

    def flush(self) -> None:
        """Write buffered footprints, frames and events, then flush HDF5.

        After this returns, a killed process leaves at least this state on disk.
        No-op on a closed writer.
        """
        if self._closed:
            return
        try:
            self._write_components()
            self._write_frames()
            self._write_events()
            self._file.flush()
        except OSError as e:  # disk full, file system gone: nothing buffered is lost yet
            raise ResultsWriteError(f"{self.path}: writing failed ({e}); retry flush()") from e
        self._next_flush_ns = time.monotonic_ns() + self._flush_interval_ns

    def _write_components(self) -> None:
        ds, born_ds = self._file[fmt.FOOTPRINTS], self._file[fmt.BORN_FRAME]
        if self.n_components > ds.shape[0]:
            ds.resize(self.n_components, axis=0)
        for k, row in self._footprints.dirty():
            ds[k] = row
        ds.flush()
        self._footprints.mark_written()
        retired_ds = self._file[fmt.RETIRED_FRAME]
        if self._retired_dirty or retired_ds.shape[0] != self.n_components:
            start = 0 if self._retired_dirty else self._k_written
            _write_at(retired_ds, start, self._retired[start:])
            self._retired_dirty = False
        _write_at(born_ds, self._k_written, self._born[self._k_written :])
        self._k_written = self.n_components

    def _write_frames(self) -> None:
        b, k = self._block, self.n_components
        t0, t1 = self._n_written, self._n_written + b.n
        for path, block in ((fmt.TRACES, b.traces), (fmt.SPIKES, b.spikes)):
            ds = self._file[path]
            if ds.shape != (k, t1):
                ds.resize((k, t1))
            if k and b.n:
                ds[:, t0:t1] = block[: b.n, :k].T
            ds.flush()
        _write_at(self._file[fmt.FRAME_SHIFT], t0, b.shift[: b.n])
        _write_at(self._file[fmt.FRAME_T_RECEIVED], t0, b.t_received_ns[: b.n])
        _write_at(self._file[fmt.FRAME_T_DONE], t0, b.t_done_ns[: b.n])
        _write_at(self._file[fmt.FRAME_INDEX], t0, b.index[: b.n])  # last: it defines T
        self._n_written = t1
        b.clear()

    def _write_events(self) -> None:
        ev = self._events
        if not len(ev):
            return
        e0, n0 = self._n_events_written, self._n_neurons_written
        neurons = np.concatenate(ev.neurons)
        offsets = n0 + np.cumsum([len(n) for n in ev.neurons], dtype=np.int64)
        _write_at(self._file[fmt.EVENT_NEURONS], n0, neurons)
        _write_at(self._file[fmt.EVENT_OFFSET], e0 + 1, offsets)
        _write_at(self._file[fmt.EVENT_RULE], e0, np.array(ev.rule, dtype=_RULE_DTYPE))
        _write_at(self._file[fmt.EVENT_T], e0, np.array(ev.t_ns, np.int64))
        _write_at(self._file[fmt.EVENT_FRAME], e0, np.array(ev.frame, np.int64))  # defines E
        self._n_events_written += len(ev)
        self._n_neurons_written += len(neurons)
        ev.clear()

    # ---------------------------------------------------------------- closing

    def close(self) -> None:
        """Final flush, store ``n_frames``, mark ``complete``; idempotent."""
        self._finish(complete=True)

    def _finish(self, *, complete: bool) -> None:
        if self._closed:
            return
        try:
            self.flush()
            if complete:
                self._file.attrs[fmt.ATTR_N_FRAMES] = np.int64(self._n_written)
                self._file.attrs[fmt.ATTR_COMPLETE] = True
        finally:
            self._closed = True
            self._file.close()

    def __enter__(self) -> ResultsWriter:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        self._finish(complete=exc_type is None)


def write_results(path, results: Results, *, overwrite: bool = True) -> None:
    """Write a whole ``Results`` through the same code path as the live writer.

    ``results.attrs`` become the caller attributes; ``software`` is this rtcal.
    """
    check_results_shapes(path, results)
    with ResultsWriter(
        path,
        height=results.height,
        width=results.width,
        fps_hz=results.fps_hz,
        attrs=results.attrs,
        flush_interval_s=3600.0,
        block_frames=1024,
        overwrite=overwrite,
    ) as w:
        w.set_footprints(results.footprints, results.born_frame)
        retired = results.retired_frame
        for t in range(results.n_frames):
            if (retired == t).any():  # retirements are set as the frames reach them
                w.set_retired(np.where((retired >= 0) & (retired <= t), retired, -1))
            w.append_frame(
                index=int(results.frame_index[t]),
                traces=results.traces[:, t],
                spikes=results.spikes[:, t],
                shift=results.shifts[t],
                t_received_ns=int(results.t_received_ns[t]),
                t_done_ns=int(results.t_done_ns[t]),
            )
        if (retired >= 0).any():
            w.set_retired(retired)
        ev = results.events
        for i in range(len(ev)):
            w.add_event(
                frame=int(ev.frame[i]), t_ns=int(ev.t_ns[i]), rule=ev.rule[i], neurons=ev.neurons[i]
            )
