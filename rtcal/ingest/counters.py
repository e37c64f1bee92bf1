"""What happened to every frame that arrived: thread-safe counters."""

from __future__ import annotations

import threading
from collections import Counter


class IngestCounters:
    """Counts shared by the receiver, the ring, the frame loop and the control thread.

    received: well-formed frames accepted into the ring;
    malformed: messages rejected, by reason (``ProtocolError.reason``);
    duplicates, out_of_order: frames whose sequence number was not new (not processed);
    gap_frames: sequence numbers never seen (lost before the engine), gaps: how many gaps;
    dropped_ring: frames dropped by the ring's drop policy (engine behind);
    dropped_warmup: frames dropped because the warm-up backlog was full, or held
        for initialisation when the stream stopped too soon to initialise on them;
    control_errors: control requests answered with an error, by reason.
    """

    FIELDS = (
        "received",
        "duplicates",
        "out_of_order",
        "gap_frames",
        "gaps",
        "dropped_ring",
        "dropped_warmup",
    )

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._n = dict.fromkeys(self.FIELDS, 0)
        self._malformed: Counter[str] = Counter()
        self._control: Counter[str] = Counter()

    def add(self, name: str, n: int = 1) -> None:
        with self._lock:
            self._n[name] += n

    def malformed(self, reason: str) -> None:
        with self._lock:
            self._malformed[reason] += 1

    def control_error(self, reason: str) -> None:
        with self._lock:
            self._control[reason] += 1

    def get(self, name: str) -> int:
        with self._lock:
            return self._n[name]

    @property
    def dropped(self) -> int:
        """Frames that arrived well-formed but were never processed by the engine's choice."""
        with self._lock:
            return self._n["dropped_ring"] + self._n["dropped_warmup"]

    def snapshot(self) -> dict:
        """A consistent copy: {field: n, ..., "dropped": n, "malformed": {reason: n},
        "malformed_total": n, "control_errors": {reason: n}}."""
        with self._lock:
            out = dict(self._n)
            out["dropped"] = out["dropped_ring"] + out["dropped_warmup"]
            out["malformed"] = dict(self._malformed)
            out["malformed_total"] = sum(self._malformed.values())
            out["control_errors"] = dict(self._control)
        return out
