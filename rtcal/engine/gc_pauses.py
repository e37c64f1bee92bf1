"""Python's cyclic garbage collector and the frame loop's worst case.

CPython's cycle collector holds the GIL while it runs, so every thread of the
engine (ingest, frame loop, writer) waits for it. A full (generation-2)
collection walks every tracked container object in the process; once torch,
numba, scipy, h5py and pyzmq are imported that is about 250 000 objects, and a
full collection took 116 ms (median of 5, max 149 ms) on the 2-core
development machine (``python tools/gc_pause.py``), three and a half frames at
30 Hz. CPython starts one by itself once enough new objects have survived into
the oldest generation (a quarter of the long-lived ones; CPython 3.11). The
frame loop allocates few such objects (in a 10-minute 512 x 512, 30 Hz latency
bench the engine made 13 young collections and no full one), so this is
insurance against the rare case (hours of running, a busy control socket,
higher frame rates), not the cause of the bench's worst frames.

``freeze_heap`` runs one full collection (so that no garbage is kept) and then
``gc.freeze()``: everything alive at that moment (modules, compiled kernels,
the detector's weights, an initialised pipeline) moves to a permanent
generation that later collections never walk; they then walk only what was
allocated since (a fraction of a millisecond). With ``[engine] freeze_gc =
true`` the engine calls it before it binds its sockets and again when its
warm-up ends (``bench/online.py --gc-freeze`` after initialisation). It is
**off by default**: in ``rtcal demo`` it raised the end-to-end p99 from
5.0-5.5 ms (two runs without) to 15.3-16.6 ms (four runs with), nearly all of
it in ``transport_in`` (p99 ~12 against ~1 ms), for a reason not found, and
no full collection was seen in any run without it. Objects in
the permanent generation are still freed by reference counting as usual; only
a reference cycle among them would be kept until the process exits.

``GcPauses`` times every collection through ``gc.callbacks``, by generation, so
that a slow frame can be told apart from a collection; the engine reports it
in its status (``"gc"``) and the latency bench prints it.
"""

from __future__ import annotations

import gc
import time


def freeze_heap() -> float:
    """Collect, then move every live object to the permanent generation; returns
    the seconds the collection took."""
    t0 = time.perf_counter()
    gc.collect()
    seconds = time.perf_counter() - t0
    gc.freeze()
    return seconds


class GcPauses:
    """Times each garbage collection by generation while installed.

    ``summary()`` -> {"gen0": {"n", "total_ms", "max_ms"}, ..., "frozen": int}.
    Installing twice is harmless; ``remove()`` uninstalls.
    """

    def __init__(self) -> None:
        self._start = 0.0
        self._stats = [[0, 0.0, 0.0] for _ in range(3)]  # n, total ms, max ms

    def install(self) -> GcPauses:
        if self._callback not in gc.callbacks:
            gc.callbacks.append(self._callback)
        return self

    def remove(self) -> None:
        if self._callback in gc.callbacks:
            gc.callbacks.remove(self._callback)

    def _callback(self, phase: str, info: dict) -> None:
        # Runs inside the collection. No lock: a thread holding one while it
        # allocates could start a collection and wait on itself here. The
        # counters are only read for reports, where a torn read is harmless.
        if phase == "start":
            self._start = time.perf_counter()
            return
        ms = 1e3 * (time.perf_counter() - self._start)
        gen = min(max(int(info.get("generation", 2)), 0), 2)
        s = self._stats[gen]
        s[0] += 1
        s[1] += ms
        s[2] = max(s[2], ms)

    def summary(self) -> dict:
        out = {
            f"gen{g}": {"n": int(n), "total_ms": round(t, 2), "max_ms": round(w, 2)}
            for g, (n, t, w) in enumerate(list(s) for s in self._stats)
        }
        out["frozen"] = gc.get_freeze_count()
        return out
