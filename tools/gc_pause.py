"""How long one full garbage collection stops the engine, before and after a freeze.

    python tools/gc_pause.py [--repeat 5]

Imports what ``rtcal serve`` imports (the engine, the pipeline, the detectors,
torch, numba, scipy, h5py, pyzmq), counts the objects the cyclic collector
tracks, and times ``gc.collect()`` (a generation-2 collection, the one CPython
starts by itself every few minutes in a long run) several times; then freezes
the heap as the engine does (``rtcal.engine.gc_pauses.freeze_heap``) and times
it again. Prints median and max per case.
"""

from __future__ import annotations

import argparse
import gc
import time

import numpy as np


def _time_collections(repeat: int) -> np.ndarray:
    ms = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        gc.collect()
        ms.append(1e3 * (time.perf_counter() - t0))
    return np.array(ms)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--repeat", type=int, default=5)
    args = p.parse_args()

    import h5py  # noqa: F401
    import numba  # noqa: F401
    import scipy.sparse  # noqa: F401
    import torch  # noqa: F401
    import zmq  # noqa: F401

    import rtcal.detect.factory  # noqa: F401
    import rtcal.detect.learned  # noqa: F401
    import rtcal.engine.live  # noqa: F401
    from rtcal.engine.gc_pauses import freeze_heap

    tracked = len(gc.get_objects())
    before = _time_collections(args.repeat)
    freeze_heap()
    after = _time_collections(args.repeat)
    print(f"objects tracked by the collector after the engine's imports: {tracked}")
    print("| heap | full collection median (ms) | max (ms) |")
    print("| --- | --- | --- |")
    print(f"| as imported | {np.median(before):.1f} | {before.max():.1f} |")
    print(f"| frozen ({gc.get_freeze_count()} objects) | {np.median(after):.2f} | "
          f"{after.max():.2f} |")


if __name__ == "__main__":
    main()
