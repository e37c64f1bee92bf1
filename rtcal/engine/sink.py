"""The writer thread: appends the frame loop's outputs to the results file.

The frame loop only puts references on a queue; this thread turns sparse
footprint updates into the writer's rows, appends frames and events, and
flushes at least every ``flush_interval_s`` even when no frame arrives, so a
killed engine loses at most that much. At the end it closes the file (marked
complete) and stores the engine's counters as root attributes.
"""

from __future__ import annotations

import json
import queue
import sys
import threading
from pathlib import Path

import h5py
import numpy as np

from rtcal.engine.pipeline import FrameOutput
from rtcal.errors import RtcalError
from rtcal.net.footprints import FootprintUpdate
from rtcal.store import ResultsWriter

_STOP = object()


def dense_rows(u: FootprintUpdate, rows: np.ndarray) -> np.ndarray:
    """float32 (K, H, W) holding ``u``'s footprints at ``rows`` and zeros elsewhere.

    np.zeros maps untouched pages lazily, so only the filled rows cost memory."""
    out = np.zeros((u.n_components, u.height * u.width), np.float32)
    for k in rows.tolist():
        lo, hi = u.indptr[k], u.indptr[k + 1]
        out[k, u.indices[lo:hi]] = u.values[lo:hi]
    return out.reshape(u.n_components, u.height, u.width)


class ResultsSink(threading.Thread):
    """Owns a ResultsWriter (created here, then used only by this thread)."""

    def __init__(
        self,
        path: str | Path,
        *,
        height: int,
        width: int,
        fps_hz: float,
        flush_interval_s: float,
        attrs: dict,
    ) -> None:
        super().__init__(name="rtcal-writer", daemon=True)
        self.path = Path(path)
        self.writer = ResultsWriter(
            self.path,
            height=height,
            width=width,
            fps_hz=fps_hz,
            flush_interval_s=flush_interval_s,
            attrs=attrs,
        )
        self._flush_s = flush_interval_s
        self._queue: queue.SimpleQueue = queue.SimpleQueue()
        self._born = np.zeros(0, np.int64)
        self._retired = np.zeros(0, np.int64)  # frame column of each retirement, -1 alive
        self.n_errors = 0
        self.last_error = ""

    # ------------------------------------------------------- frame loop side
    def put_footprints(self, update: FootprintUpdate, refresh: bool) -> None:
        """All footprints; refresh: rewrite the existing rows too (refined shapes)."""
        self._queue.put(("footprints", update, refresh))

    def put_frame(self, out: FrameOutput, events: list) -> None:
        self._queue.put(("frame", out, events))

    def finish(self, attrs: dict, timeout_s: float = 60.0) -> None:
        """Write what is queued, close the file complete, add ``attrs``; wait for it."""
        self._queue.put((_STOP, attrs, None))
        self.join(timeout_s)

    # ----------------------------------------------------------- this thread
    def run(self) -> None:
        while True:
            try:
                kind, a, b = self._queue.get(timeout=self._flush_s / 2)
            except queue.Empty:
                self._guard(self.writer.flush)
                continue
            if kind is _STOP:
                self._close(a)
                return
            if kind == "footprints":
                self._guard(self._footprints, a, b)
            else:
                self._guard(self._frame, a, b)

    def _guard(self, fn, *args) -> None:
        """A write that fails (disk full, bad values) is counted; the engine goes on."""
        try:
            fn(*args)
        except (RtcalError, OSError) as e:
            self.n_errors += 1
            self.last_error = str(e)
            print(f"rtcal engine: results file: {e}", file=sys.stderr)

    def _footprints(self, u: FootprintUpdate, refresh: bool) -> None:
        w = self.writer
        k_old, K = w.n_components, u.n_components
        if K < k_old:
            return  # rows are never removed from the file
        rows = np.arange(K) if refresh else np.arange(k_old, K)
        born = np.r_[self._born, np.full(K - k_old, w.n_frames_appended, np.int64)]
        w.set_footprints(dense_rows(u, rows), born, changed=rows[rows < k_old])
        self._born = born

    def _frame(self, out: FrameOutput, events: list) -> None:
        if out.retired is not None and out.retired.any():
            self._record_retired(out.retired)
        self.writer.append_frame(
            index=out.index,
            traces=out.denoised,
            spikes=out.spikes,
            shift=out.shift,
            t_received_ns=out.t_received_ns,
            t_done_ns=out.t_done_ns,
        )
        for e in events:
            self.writer.add_event(frame=e.frame, t_ns=e.t_ns, rule=e.rule, neurons=e.neurons)

    def _record_retired(self, retired: np.ndarray) -> None:
        """Components merged away or retired by the NMF from this frame on (their
        footprints are zero from now; the file's rows get that at the final refresh)."""
        w = self.writer
        K = min(len(retired), w.n_components)
        if len(self._retired) < K:
            self._retired = np.r_[self._retired, np.full(K - len(self._retired), -1, np.int64)]
        newly = np.flatnonzero(retired[:K] & (self._retired[:K] < 0))
        if len(newly):
            self._retired[newly] = w.n_frames_appended
            w.set_retired(self._retired)

    def _close(self, attrs: dict) -> None:
        self._guard(self.writer.close)
        try:  # the writer is closed: attributes may be added now (not under SWMR)
            with h5py.File(self.path, "r+") as f:
                for key, value in attrs.items():
                    f.attrs[key] = value if not isinstance(value, dict) else json.dumps(value)
        except OSError as e:
            self.n_errors += 1
            self.last_error = str(e)
