"""Rolling record of per-frame latencies, summarised as percentiles for status and benches."""

from __future__ import annotations

import threading

import numpy as np


def percentiles_ms(latency_ns: np.ndarray) -> dict:
    """{"n", "p50_ms", "p99_ms", "p999_ms", "max_ms"} of latencies in ns (NaN when empty)."""
    if latency_ns.size == 0:
        nan = float("nan")
        return {"n": 0, "p50_ms": nan, "p99_ms": nan, "p999_ms": nan, "max_ms": nan}
    p50, p99, p999 = np.percentile(latency_ns, [50, 99, 99.9]) / 1e6
    return {
        "n": int(latency_ns.size),
        "p50_ms": float(p50),
        "p99_ms": float(p99),
        "p999_ms": float(p999),
        "max_ms": float(latency_ns.max() / 1e6),
    }


class LatencyLog:
    """The last ``capacity`` latencies (ns) of one kind, written by one thread,
    summarised by any. add() is an array store: no allocation per frame."""

    def __init__(self, capacity: int = 100_000) -> None:
        self._values = np.zeros(capacity, np.int64)
        self._n = 0
        self._lock = threading.Lock()

    def add(self, latency_ns: int) -> None:
        with self._lock:
            self._values[self._n % self._values.size] = latency_ns
            self._n += 1

    @property
    def n_total(self) -> int:
        return self._n

    def values(self) -> np.ndarray:
        """A copy of the recorded latencies (ns), unordered."""
        with self._lock:
            return self._values[: min(self._n, self._values.size)].copy()

    def summary(self) -> dict:
        return percentiles_ms(self.values())
