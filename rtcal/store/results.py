"""In-memory view of one results file (see ``docs/results-format.md``).

These dataclasses are what ``read_results`` returns and what the evaluator and
report code consume. They carry arrays exactly as stored; no derived state.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


@dataclass(frozen=True)
class Events:
    """Closed-loop trigger events, one row per event.

    frame: int64 (E,) index of the frame that fired the rule (movie frame index)
    t_ns: int64 (E,) ``time.time_ns()`` when the event was emitted
    rule: tuple of E rule names
    neurons: tuple of E int64 arrays, the component indices involved
    """

    frame: np.ndarray
    t_ns: np.ndarray
    rule: tuple[str, ...]
    neurons: tuple[np.ndarray, ...]

    def __len__(self) -> int:
        return int(self.frame.shape[0])

    @staticmethod
    def empty() -> Events:
        return Events(np.zeros(0, np.int64), np.zeros(0, np.int64), (), ())


@dataclass(frozen=True)
class Results:
    """Everything a results file holds.

    footprints: float32 (K, H, W), in the motion-corrected (template) frame
    traces: float32 (K, T) denoised calcium; NaN before ``born_frame``
    spikes: float32 (K, T) inferred spikes; NaN before ``born_frame``
    born_frame: int64 (K,) row of the first frame each component has a value for
    frame_index: int64 (T,) movie frame index of each column of traces/spikes
    shifts: float32 (T, 2) (dy, dx) px, the estimated motion of each frame
    t_received_ns, t_done_ns: int64 (T,) when each frame arrived / was finished
    complete: False if the writer did not close the file (crash or kill); the
        arrays then hold everything up to the last flush
    attrs: the caller's extra root attributes (not the format's own)
    software: the ``software`` attribute of the file read ("rtcal X.Y.Z"); empty
        for a ``Results`` built in memory
    retired_frame: int64 (K,) column from which each component was retired (merged
        into another or dead; its values are 0 from there on), -1 while alive;
        None (the default) means all -1
    """

    height: int
    width: int
    fps_hz: float
    footprints: np.ndarray
    traces: np.ndarray
    spikes: np.ndarray
    born_frame: np.ndarray
    frame_index: np.ndarray
    shifts: np.ndarray
    t_received_ns: np.ndarray
    t_done_ns: np.ndarray
    events: Events = field(default_factory=Events.empty)
    complete: bool = True
    attrs: dict = field(default_factory=dict)
    software: str = ""
    retired_frame: np.ndarray | None = None

    def __post_init__(self) -> None:
        if self.retired_frame is None:
            object.__setattr__(self, "retired_frame", np.full(self.n_components, -1, np.int64))

    @property
    def n_components(self) -> int:
        return int(self.footprints.shape[0])

    @property
    def n_frames(self) -> int:
        return int(self.frame_index.shape[0])
