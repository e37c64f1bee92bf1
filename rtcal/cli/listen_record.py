"""What ``rtcal listen`` (and the latency bench) keeps of the messages it receives."""

from __future__ import annotations

import numpy as np

from rtcal.net import Event, FootprintUpdate, FrameResult


class Recording:
    """Frame results and events as received; latency = receipt - sender's timestamp."""

    def __init__(self) -> None:
        self.frames: list[FrameResult] = []
        self.t_arrived_ns: list[int] = []
        self.events: list[Event] = []
        self.event_arrived_ns: list[int] = []
        self.footprints: FootprintUpdate | None = None

    @property
    def n_frames(self) -> int:
        return len(self.frames)

    def add_frame(self, r: FrameResult, t_arrived_ns: int) -> None:
        self.frames.append(r)
        self.t_arrived_ns.append(t_arrived_ns)

    def add_event(self, e: Event, t_arrived_ns: int) -> None:
        self.events.append(e)
        self.event_arrived_ns.append(t_arrived_ns)

    def latency_ms(self, include_warmup: bool = False) -> np.ndarray:
        """float64 (n,) end-to-end latency of each frame result, ms."""
        return np.array(
            [
                (t - r.t_sent_ns) / 1e6
                for r, t in zip(self.frames, self.t_arrived_ns, strict=True)
                if include_warmup or not r.warmup
            ]
        )

    def line(self) -> str:
        lat = self.latency_ms()
        k = self.frames[-1].n_components if self.frames else 0
        text = f"{self.n_frames} frames, {k} components, {len(self.events)} events"
        if lat.size:
            text += f", latency p50 {np.median(lat):.2f} ms, p99 {np.percentile(lat, 99):.2f} ms"
        return text

    def save(self, path: str) -> None:
        """An .npz of plain arrays (no pickled objects)."""
        T = self.n_frames
        K = max((r.n_components for r in self.frames), default=0)
        arrays = {name: np.full((T, K), np.nan, np.float32) for name in ("traces", "spikes", "dff")}
        for t, r in enumerate(self.frames):
            arrays["traces"][t, : r.n_components] = r.denoised
            arrays["spikes"][t, : r.n_components] = r.spikes
            arrays["dff"][t, : r.n_components] = r.dff
        ev = self.events
        neurons = [e.neurons for e in ev]
        np.savez(
            path,
            sequence=np.array([r.sequence for r in self.frames], np.int64),
            t_sent_ns=np.array([r.t_sent_ns for r in self.frames], np.int64),
            t_arrived_ns=np.array(self.t_arrived_ns, np.int64),
            warmup=np.array([r.warmup for r in self.frames], bool),
            footprints=self.footprints.dense() if self.footprints else np.zeros((0, 0, 0)),
            event_sequence=np.array([e.sequence for e in ev], np.int64),
            event_rule=np.array([e.rule for e in ev], dtype="U64"),
            event_neurons=np.concatenate(neurons) if neurons else np.zeros(0, np.int64),
            event_offset=np.r_[0, np.cumsum([len(n) for n in neurons])].astype(np.int64),
            event_arrived_ns=np.array(self.event_arrived_ns, np.int64),
            **arrays,
        )
