"""What a live run measured (``rtcal demo``): latency, engine counters, detector
re-runs and trigger events, as numbers for the report and its JSON form."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

Rows = list[tuple[str, str]]  # (label, value) lines of one table


@dataclass(frozen=True)
class LiveRun:
    """One live run, seen from the listener and the engine's control socket.

    fps_hz, init_frames, detect_every_frames: the run's settings.
    n_sent, n_sender_dropped: frames the simulated microscope sent / dropped (its
        FrameSender never waits, as a microscope cannot).
    n_results, n_warmup: frame results the listener received (of which warm-up).
    latency_ms: float64 (n,) end-to-end latency of each steady-state result, ms:
        sender's ``time.time_ns()`` when sending -> listener's when received.
    latency, warmup_latency, event_latency: percentile summaries in ms
        (``rtcal.engine.latency.percentiles_ms``); event latency is sender's
        timestamp -> event received, for events of steady-state frames (those of
        warm-up frames, ``n_warmup_events``, wait for the initialisation).
    stages_ms: per-stage percentile summaries of the steady state, as in
        ``rtcal bench latency`` (transport in, queue, motion, nmf, ... transport out).
    counters: the engine's counters at the end (received, processed, dropped,
        malformed_total, gap_frames, gaps, duplicates, out_of_order, events, ...).
    events_by_rule: events the listener received, per rule name.
    redetect: the engine's detector re-run figures (every_frames, runs, skipped,
        failed, added).
    redetect_frames: int64 (R,) for each finished re-run, the newest frame result
        at the listener when the control socket first reported it (polled every
        ``poll_s``, so within poll_s x fps_hz frames after it finished).
    init_seconds: the pipeline's initialisation, s; stream_s: first frame sent ->
        last result received, s.
    """

    fps_hz: float
    init_frames: int
    detect_every_frames: int
    n_sent: int
    n_sender_dropped: int
    n_results: int
    n_warmup: int
    latency_ms: np.ndarray
    latency: dict
    warmup_latency: dict
    event_latency: dict
    stages_ms: dict
    counters: dict
    events_by_rule: dict[str, int]
    n_warmup_events: int
    redetect: dict
    redetect_frames: np.ndarray
    init_seconds: float
    stream_s: float
    poll_s: float = 0.25

    def to_dict(self) -> dict:
        """JSON-serialisable (NaN as None), without the per-frame latencies."""
        d = {
            "fps_hz": self.fps_hz,
            "init_frames": self.init_frames,
            "detect_every_frames": self.detect_every_frames,
            "n_sent": self.n_sent,
            "n_sender_dropped": self.n_sender_dropped,
            "n_results": self.n_results,
            "n_warmup": self.n_warmup,
            "latency_ms": self.latency,
            "warmup_latency_ms": self.warmup_latency,
            "event_latency_ms": self.event_latency,
            "stages_ms": self.stages_ms,
            "counters": self.counters,
            "events_by_rule": self.events_by_rule,
            "n_warmup_events": self.n_warmup_events,
            "redetect": {**self.redetect, "frames": self.redetect_frames.tolist()},
            "init_seconds": self.init_seconds,
            "stream_s": self.stream_s,
        }
        return _json_safe(d)

    def tables(self) -> list[tuple[str, Rows]]:
        """Headed tables of (label, value) for the figure and the HTML page."""
        c = self.counters
        lat, warm, ev = self.latency, self.warmup_latency, self.event_latency
        malformed = ", ".join(f"{k} {v}" for k, v in c.get("malformed", {}).items() if v)
        malformed = f"({malformed})" if malformed else ""
        return [
            (
                "frames",
                [
                    ("sent by the microscope", f"{self.n_sent} ({self.n_sender_dropped} dropped)"),
                    ("received by the engine", str(c["received"])),
                    ("processed", str(c["processed"])),
                    ("results at the listener", f"{self.n_results} ({self.n_warmup} warm-up)"),
                    (
                        "dropped in the engine",
                        f"{c['dropped']} (ring {c['dropped_ring']}, warm-up {c['dropped_warmup']})",
                    ),
                    ("malformed", f"{c['malformed_total']} {malformed}".strip()),
                    ("gaps", f"{c['gaps']} ({c['gap_frames']} frames lost before the engine)"),
                    ("duplicates / out of order", f"{c['duplicates']} / {c['out_of_order']}"),
                ],
            ),
            (
                "latency: sender's timestamp -> result at the listener",
                [
                    ("steady state", _describe(lat)),
                    ("p99.9", _ms(lat["p999_ms"])),
                    ("warm-up (init window, backlog)", _describe(warm)),
                    ("events (sent -> event received)", _describe(ev)),
                    ("initialisation", f"{self.init_seconds:.1f} s"),
                ],
            ),
            (
                "detector re-runs and trigger events",
                [
                    (
                        "re-runs",
                        f"{self.redetect['runs']} every {self.detect_every_frames} frames "
                        f"({self.redetect['skipped']} skipped, {self.redetect['failed']} failed)",
                    ),
                    ("components added by re-runs", str(self.redetect["added"])),
                    ("events", f"{c['events']} ({self.n_warmup_events} in warm-up)"),
                    *((f"  rule {name!r}", str(n)) for name, n in self.events_by_rule.items()),
                ],
            ),
        ]


def eval_table(report: dict) -> tuple[str, Rows]:
    """Headed rows of an evaluation report (``rtcal.metrics.report_to_dict`` form)."""
    main, caiman = report, report["caiman"]
    corr = report["median_trace_corr"]
    return (
        "scored against the simulated truth",
        [
            ("neurons found / true", f"{report['n_est']} / {report['n_true']}"),
            (
                "F1 (IoU >= 0.5)",
                f"{main['f1']:.3f} (precision {main['precision']:.3f}, "
                f"recall {main['recall']:.3f})",
            ),
            ("F1 (CaImAn convention)", f"{caiman['f1']:.3f}"),
            (
                "median trace correlation",
                "n/a" if corr is None else f"{corr:.3f} over {report['n_trace_corr']} pairs",
            ),
        ],
    )


def _describe(summary: dict) -> str:
    if not summary["n"]:
        return "none"
    return (
        f"p50 {_ms(summary['p50_ms'])}, p99 {_ms(summary['p99_ms'])}, "
        f"max {_ms(summary['max_ms'])} ({summary['n']})"
    )


def _ms(value: float | None) -> str:
    if value is None or not math.isfinite(value):
        return "n/a"
    return f"{value:.2f} ms" if value < 100 else f"{value:.0f} ms"


def _json_safe(x):
    if isinstance(x, dict):
        return {k: _json_safe(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_json_safe(v) for v in x]
    if isinstance(x, float) and not math.isfinite(x):
        return None
    if isinstance(x, np.generic):
        return _json_safe(x.item())
    return x
