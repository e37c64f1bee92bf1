"""Settings of the live engine: endpoints, ring, drop policy, detector period, results file.

One frozen dataclass, validated without I/O; ``EngineConfig.from_section`` reads
the ``[engine]`` table of a TOML config file (keys = field names).
"""

from __future__ import annotations

from dataclasses import dataclass, fields

from rtcal.engine.realtime import MAX_PRIORITY
from rtcal.errors import RtcalError

DROP_POLICIES = ("oldest", "newest", "block")
FRAME_PATTERNS = ("pull", "sub")


class EngineConfigError(RtcalError):
    """An engine setting that cannot work; the message names the field."""


@dataclass(frozen=True)
class EngineConfig:
    """Settings of ``rtcal.engine.live.Engine``.

    *_endpoint: ZeroMQ endpoints the engine binds ("tcp://HOST:PORT", port "*"
        for any free port, "inproc://NAME" or "ipc://PATH"). frames: PULL (or
        SUB, ``frames_pattern="sub"``, for a lossy live view); results, events:
        PUB; control: REP.
    ring_slots: preallocated frame slots between the receiver and the frame loop;
        ring_slots - 2 frames can wait (one slot is being received into, one
        processed).
    drop_policy: when all slots are waiting and a new frame arrives: "oldest"
        drops the oldest waiting frame (closed loop: the newest data matter),
        "newest" drops the arriving frame, "block" stops receiving until a slot
        is free (no drops in the engine: ZeroMQ's queue, then the sender, take
        the back-pressure; for lossless runs from a file).
    warmup_backlog_frames: frames held while the pipeline initialises (beyond
        this the oldest held frames are dropped and counted).
    detect_every_frames: frames between detector re-runs on the keyframe
        buffer (0: never).
    detect_confirm_runs: consecutive re-runs that must propose a new component
        before it is added (1: add at once), unless the detector is sure of it
        (``[detector] sure_score``; see ``rtcal.engine.redetect``).
    detect_in_process: run the detector in a child process (shared memory)
        rather than on a thread, so that it does not hold the frame loop's GIL.
    keyframe_frames, keyframe_n_key: the keyframe buffer's capacity and its
        number of activity-chosen key frames.
    results_path: results file to write ("" for none).
    flush_interval_s: longest time results wait in memory before the file.
    footprint_refresh_s: period of full footprint updates on PUB as footprints
        are refined; a change of the component set is sent (and written) at once,
        refined shapes go to the file when it is closed.
    frames_hwm, results_hwm: ZeroMQ queue limits, messages (PUB drops beyond
        its limit for a slow subscriber instead of blocking the frame loop).
    warm_kernels: compile the frame loop's kernels on a small simulated movie
        before binding the sockets (``rtcal.engine.warmup``); without it the
        first frames pay Numba's compilation, seconds on a fresh machine.
    freeze_gc: move every object alive before the sockets are bound, and again
        when the warm-up ends, out of the garbage collector's reach
        (``rtcal.engine.gc_pauses``), against a full collection's ~116 ms. Off
        by default: it raised the demo's p99 latency from ~5 to ~16 ms.
    realtime_priority: 0 (default) leaves thread scheduling alone; 1-98 runs
        the receiver, the frame loop and ZeroMQ's I/O threads under SCHED_FIFO
        at that priority where the process is permitted to
        (``rtcal.engine.realtime``; otherwise a warning and the default).
    """

    frames_endpoint: str = "tcp://127.0.0.1:5555"
    results_endpoint: str = "tcp://127.0.0.1:5556"
    events_endpoint: str = "tcp://127.0.0.1:5557"
    control_endpoint: str = "tcp://127.0.0.1:5558"
    frames_pattern: str = "pull"
    ring_slots: int = 256
    drop_policy: str = "oldest"
    warmup_backlog_frames: int = 4096
    detect_every_frames: int = 1000
    detect_confirm_runs: int = 2
    detect_in_process: bool = True
    keyframe_frames: int = 300
    keyframe_n_key: int = 3  # the learned detector's key frames (rtcal.detect.inputs)
    results_path: str = ""
    flush_interval_s: float = 1.0
    footprint_refresh_s: float = 10.0
    frames_hwm: int = 1000
    results_hwm: int = 10000
    warm_kernels: bool = True
    freeze_gc: bool = False
    realtime_priority: int = 0

    def __post_init__(self) -> None:
        for name in ("frames_endpoint", "results_endpoint", "events_endpoint", "control_endpoint"):
            value = getattr(self, name)
            if not isinstance(value, str) or "://" not in value:
                raise EngineConfigError(
                    f"EngineConfig.{name} must be 'transport://address', got {value!r}"
                )
        ends = [
            self.frames_endpoint,
            self.results_endpoint,
            self.events_endpoint,
            self.control_endpoint,
        ]
        fixed = [e for e in ends if not e.endswith(":*")]
        if len(set(fixed)) != len(fixed):
            raise EngineConfigError(f"EngineConfig endpoints must differ, got {ends}")
        checks = {
            "frames_pattern": self.frames_pattern in FRAME_PATTERNS,
            "drop_policy": self.drop_policy in DROP_POLICIES,
            "ring_slots": _int(self.ring_slots) and self.ring_slots >= 4,
            "warmup_backlog_frames": _int(self.warmup_backlog_frames)
            and self.warmup_backlog_frames >= 0,
            "detect_every_frames": _int(self.detect_every_frames) and self.detect_every_frames >= 0,
            "detect_confirm_runs": _int(self.detect_confirm_runs)
            and 1 <= self.detect_confirm_runs <= 10,
            "detect_in_process": isinstance(self.detect_in_process, bool),
            "warm_kernels": isinstance(self.warm_kernels, bool),
            "freeze_gc": isinstance(self.freeze_gc, bool),
            "realtime_priority": _int(self.realtime_priority)
            and 0 <= self.realtime_priority <= MAX_PRIORITY,
            "keyframe_frames": _int(self.keyframe_frames) and self.keyframe_frames >= 20,
            "keyframe_n_key": _int(self.keyframe_n_key)
            and 1 <= self.keyframe_n_key <= self.keyframe_frames,
            "results_path": isinstance(self.results_path, str),
            "flush_interval_s": _num(self.flush_interval_s) and 0 < self.flush_interval_s <= 60,
            "footprint_refresh_s": _num(self.footprint_refresh_s) and self.footprint_refresh_s > 0,
            "frames_hwm": _int(self.frames_hwm) and self.frames_hwm >= 1,
            "results_hwm": _int(self.results_hwm) and self.results_hwm >= 1,
        }
        for name, ok in checks.items():
            if not ok:
                raise EngineConfigError(
                    f"EngineConfig.{name}={getattr(self, name)!r} is out of range"
                )

    @classmethod
    def from_section(cls, section: dict) -> EngineConfig:
        """From the ``[engine]`` table of a config file: keys are the field names."""
        if not isinstance(section, dict):
            raise EngineConfigError(f"[engine] must be a table, got {type(section).__name__}")
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(section) - known)
        if unknown:
            raise EngineConfigError(
                f"[engine]: unknown key(s) {', '.join(unknown)} (known: {', '.join(sorted(known))})"
            )
        return cls(**section)


def _int(x) -> bool:
    return isinstance(x, int) and not isinstance(x, bool)


def _num(x) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool)
