"""Validation of ``ResultsWriter`` inputs: clear errors instead of a bad file.

Pure checks on arrays and settings (no I/O); each raises ``ResultsWriteError``
with the file's path and the problem.
"""

from __future__ import annotations

import numpy as np

from rtcal.errors import RtcalError
from rtcal.store import format as fmt
from rtcal.store.results import Results


class ResultsWriteError(RtcalError):
    """Bad input to, or misuse of, a ``ResultsWriter``; the message names the file."""


def check_settings(path, height, width, fps_hz, flush_interval_s, block_frames) -> None:
    for name, n in (("height", height), ("width", width), ("block_frames", block_frames)):
        if not isinstance(n, (int, np.integer)) or n < 1:
            raise ResultsWriteError(f"{path}: {name} must be a positive int, got {n!r}")
    for name, x in (("fps_hz", fps_hz), ("flush_interval_s", flush_interval_s)):
        if not (isinstance(x, (int, float, np.number)) and np.isfinite(x) and x > 0):
            raise ResultsWriteError(f"{path}: {name} must be a positive number, got {x!r}")


def check_attrs(path, attrs: dict | None) -> dict:
    attrs = dict(attrs or {})
    for key in attrs:
        if not isinstance(key, str) or not key or "/" in key:
            raise ResultsWriteError(f"{path}: attr name {key!r} must be a non-empty str without /")
        if key in fmt.RESERVED_ATTRS:
            raise ResultsWriteError(f"{path}: attr {key!r} is reserved by the format")
    return attrs


def check_footprints(path, footprints, born_frame, height, width) -> None:
    """Types and shapes of ``set_footprints`` inputs (values are checked per row)."""
    if not isinstance(footprints, np.ndarray) or footprints.dtype.kind != "f":
        raise ResultsWriteError(f"{path}: footprints must be a float array")
    if footprints.ndim != 3 or footprints.shape[1:] != (height, width):
        raise ResultsWriteError(
            f"{path}: footprints must be (K, {height}, {width}), got {footprints.shape}"
        )
    if not isinstance(born_frame, np.ndarray) or born_frame.dtype.kind not in "iu":
        raise ResultsWriteError(f"{path}: born_frame must be an integer array")
    if born_frame.shape != footprints.shape[:1]:
        raise ResultsWriteError(
            f"{path}: born_frame shape {born_frame.shape} != ({footprints.shape[0]},)"
        )


def check_changed(path, changed, k_old: int) -> np.ndarray:
    """The ``changed`` hint as sorted unique int64 rows below k_old."""
    rows = np.asarray(changed)
    if rows.size == 0:
        return np.zeros(0, np.int64)
    if rows.ndim != 1 or rows.dtype.kind not in "iu":
        raise ResultsWriteError(f"{path}: changed must be 1-D integer row indices")
    if rows.min() < 0:
        raise ResultsWriteError(f"{path}: changed has a negative row index")
    return np.unique(rows[rows < k_old]).astype(np.int64)


def check_births(path, born: np.ndarray, old_born: np.ndarray, n_appended: int) -> None:
    """K only grows, existing births are fixed, new ones are not in the past."""
    k_old = len(old_born)
    if len(born) < k_old:
        raise ResultsWriteError(
            f"{path}: K shrank from {k_old} to {len(born)}; components are never deleted"
        )
    if not np.array_equal(born[:k_old], old_born):
        raise ResultsWriteError(f"{path}: born_frame of existing components changed")
    new = born[k_old:]
    if new.size and new.min() < n_appended:
        raise ResultsWriteError(
            f"{path}: new component born at frame column {int(new.min())}, but "
            f"{n_appended} frames are already appended (their values are NaN)"
        )


def check_retired(path, retired, old: np.ndarray, born: np.ndarray, n_appended: int) -> np.ndarray:
    """``set_retired`` input as int64 (K_r,): -1 (alive) or a frame column in
    [born_frame, n_appended]; a retirement, once set, never changes."""
    if not isinstance(retired, np.ndarray) or retired.ndim != 1 or retired.dtype.kind not in "iu":
        raise ResultsWriteError(f"{path}: retired_frame must be a 1-D integer array")
    retired = retired.astype(np.int64)
    k = len(born)
    if len(retired) > k:
        raise ResultsWriteError(
            f"{path}: retired_frame has {len(retired)} values but only {k} components"
        )
    alive = retired == -1
    bad = ~alive & ((retired < born[: len(retired)]) | (retired > n_appended))
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raise ResultsWriteError(
            f"{path}: component {i} retired at frame column {int(retired[i])}, outside "
            f"[born_frame {int(born[i])}, {n_appended} frames appended] (-1: alive)"
        )
    n = min(len(retired), len(old))
    changed = (old[:n] >= 0) & (retired[:n] != old[:n])
    if changed.any():
        i = int(np.flatnonzero(changed)[0])
        raise ResultsWriteError(
            f"{path}: component {i} was retired at column {int(old[i])}; a retirement is final"
        )
    return retired


def check_results_shapes(path, r: Results) -> None:
    """K and T agree across the arrays of a ``Results`` (values are checked per frame)."""
    k, t = r.footprints.shape[0], r.frame_index.shape[0]
    expected = {
        "traces": (k, t),
        "spikes": (k, t),
        "born_frame": (k,),
        "retired_frame": (k,),
        "shifts": (t, 2),
        "t_received_ns": (t,),
        "t_done_ns": (t,),
    }
    for name, shape in expected.items():
        if getattr(r, name).shape != shape:
            raise ResultsWriteError(
                f"{path}: results.{name} is {getattr(r, name).shape}, expected {shape} "
                f"(K={k} footprints, T={t} frames)"
            )
