"""The frame loop: ring slot -> pipeline -> triggers -> publish -> results file.

One thread owns the Pipeline. Per frame it pops the oldest waiting slot, runs
``Pipeline.push`` on the frame in place (no copy once initialised), steps the
trigger rules on the outputs, publishes results and events, and hands the
outputs to the writer thread.

Warm-up. Until the pipeline is initialised it holds frames (copies: the ring
slots are reused). The push that completes ``init_frames`` runs the
initialisation (seconds) on a separate thread; meanwhile this thread keeps
emptying the ring into a backlog (``warmup_backlog_frames``), so frames
arriving during initialisation are kept, not dropped by the ring. The
backlog is processed, oldest first, as soon as initialisation is done. The
results of the initialisation window and of the backlog are marked WARMUP and
their latency is recorded apart from the steady state.

Between frames the loop polls for a finished detector re-run and adds its new
components to the pipeline, and refreshes footprints every
``footprint_refresh_s``.
"""

from __future__ import annotations

import sys
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from rtcal.engine.components import ComponentSet, footprint_csr
from rtcal.engine.config import EngineConfig
from rtcal.engine.gc_pauses import freeze_heap
from rtcal.engine.latency import LatencyLog
from rtcal.engine.novelty import find_new
from rtcal.engine.pipeline import FrameOutput, Pipeline
from rtcal.engine.publisher import Publisher
from rtcal.engine.realtime import RealtimeReport
from rtcal.engine.redetect import RedetectJob, Redetector, RedetectResult
from rtcal.engine.sink import ResultsSink
from rtcal.engine.triggers import TriggerBox
from rtcal.errors import RtcalError
from rtcal.ingest.counters import IngestCounters
from rtcal.ingest.ring import FrameRing
from rtcal.net.events import Event
from rtcal.net.results import FrameResult

ADD_PER_FRAME = 4  # detected components added between two frames, at most
ADD_BUDGET_S = 0.010  # ... and fewer when the last additions cost more than this per frame
KEYFRAME_CATCH_UP = 4  # frames held back during a snapshot pushed per frame, besides its own


class StallLog:
    """Time the frame loop spends on work other than frames, by kind: how often,
    in all and the longest (ms). Any of these delays every frame waiting behind it."""

    def __init__(self) -> None:
        self._stats: dict[str, list[float]] = {}

    def add(self, kind: str, seconds: float) -> None:
        n, total, worst = self._stats.get(kind, (0, 0.0, 0.0))
        ms = 1e3 * seconds
        self._stats[kind] = [n + 1, total + ms, max(worst, ms)]

    def summary(self) -> dict[str, dict[str, float]]:
        return {k: {"n": int(n), "total_ms": round(t, 1), "max_ms": round(w, 1)}
                for k, (n, t, w) in sorted(self._stats.items())}


@dataclass(frozen=True)
class FrameMeta:
    """Where a frame's times come from: sender clock (t_sent_ns), engine wall clock at
    arrival (t_received_ns), engine monotonic clock at arrival and when popped."""

    sequence: int
    t_sent_ns: int
    t_received_ns: int
    t_received_mono_ns: int
    t_popped_mono_ns: int


class FrameLoop(threading.Thread):
    def __init__(
        self,
        *,
        config: EngineConfig,
        pipeline: Pipeline,
        ring_source,
        publisher: Publisher,
        sink_factory: Callable[[int, int], ResultsSink] | None,
        triggers: TriggerBox,
        counters: IngestCounters,
        redetector: Redetector | None,
        stop: threading.Event,
        realtime: RealtimeReport | None = None,
    ) -> None:
        super().__init__(name="rtcal-frame-loop", daemon=True)
        self.realtime = realtime  # RealtimeReport applied when the thread starts, or None
        self.config = config
        self.pipeline = pipeline
        self.ring_source = ring_source  # has .ring and .ring_ready (the Receiver)
        self.publisher = publisher
        self.sink_factory = sink_factory  # (height, width) -> ResultsSink, at the first frame
        self.sink: ResultsSink | None = None
        self.triggers = triggers
        self.counters = counters
        self.redetector = redetector
        self.stop_event = stop
        self.components = ComponentSet()
        self.latency_steady = LatencyLog()
        self.latency_warmup = LatencyLog()
        self.n_processed = 0
        self.n_events = 0
        self.n_redetect_added = 0
        self.n_redetect_add_failed = 0  # detected but refused by the pipeline (counted, not lost)
        self.redetect_seconds: list[float] = []
        self.keyframes = None
        self.error: BaseException | None = None
        self._pending: dict[int, FrameMeta] = {}
        self._backlog: deque[tuple[FrameMeta, np.ndarray]] = deque()
        self._n_pushed = 0
        self._init_thread: threading.Thread | None = None
        self._init_outputs: list[FrameOutput] = []
        self._warmup = True
        self._since_detect = 0
        self._next_refresh = 0.0
        self._deferred: list[tuple[int, np.ndarray]] = []  # keyframes held during a snapshot
        self._taken: threading.Event | None = None
        self._to_add: deque[np.ndarray] = deque()  # detected components not added yet
        self._to_add_window: np.ndarray | None = None
        self._add_seconds_each = 0.0  # what the last addition cost per component
        self._last_sequence = 0
        self.stalls = StallLog()

    # ------------------------------------------------------------- state
    @property
    def state(self) -> str:
        if not self.pipeline.initialised or self._init_thread is not None:
            return "initialising"
        return "catching up" if self._backlog else "running"

    # -------------------------------------------------------------- loop
    def run(self) -> None:
        if self.realtime is not None:
            self.realtime.apply("frame_loop")
        try:
            ring = self._wait_for_ring()
            while ring is not None:
                self._between_frames()
                if self._backlog and self._init_thread is None:
                    meta, frame = self._backlog.popleft()
                    self._process(meta, frame, None, ring)
                    continue
                if self._warmup and self._caught_up(ring):
                    self._warmup = False
                    if self.config.freeze_gc:  # the initialised pipeline too
                        t0 = time.perf_counter()
                        freeze_heap()
                        self.stalls.add("gc_freeze", time.perf_counter() - t0)
                slot = ring.pop(0.02)
                if slot is not None:
                    self._take(ring, slot)
                elif self.stop_event.is_set() and self._init_thread is None and not self._backlog:
                    break
            self._finish()
        except BaseException as e:  # reported by the engine; the other threads stop cleanly
            self.error = e
            self.stop_event.set()
            if self.ring_source.ring is not None:
                self.ring_source.ring.close()  # a receiver blocked on a full ring gets out
            raise

    def _caught_up(self, ring: FrameRing) -> bool:
        """Initialised, backlog done and no frame waiting: warm-up is over."""
        return (
            self.pipeline.initialised
            and self._init_thread is None
            and not self._backlog
            and ring.n_waiting == 0
        )

    def _wait_for_ring(self) -> FrameRing | None:
        while not self.ring_source.ring_ready.wait(0.05):
            if self.stop_event.is_set():
                return None
        ring = self.ring_source.ring
        if self.sink_factory is not None:
            self.sink = self.sink_factory(ring.height, ring.width)
        return ring

    def _take(self, ring: FrameRing, slot: int) -> None:
        meta = FrameMeta(
            int(ring.sequence[slot]),
            int(ring.t_sent_ns[slot]),
            int(ring.t_received_ns[slot]),
            int(ring.t_received_mono_ns[slot]),
            time.monotonic_ns(),
        )
        if self.pipeline.initialised and self._init_thread is None:
            self._process(meta, ring.frame(slot), slot, ring)
            return
        frame = ring.frame(slot).copy()  # held by the pipeline or the backlog
        ring.release(slot)
        if self._init_thread is not None:
            self._hold(meta, frame)
        else:
            self._process(meta, frame, None, ring)

    def _hold(self, meta: FrameMeta, frame: np.ndarray) -> None:
        self._backlog.append((meta, frame))
        if len(self._backlog) > self.config.warmup_backlog_frames:
            self._backlog.popleft()
            self.counters.add("dropped_warmup")

    def _process(self, meta: FrameMeta, frame: np.ndarray, slot, ring: FrameRing) -> None:
        p = self.pipeline
        self._pending[meta.sequence] = meta
        n_good = self._n_pushed - sum(p.skipped.values())
        self._n_pushed += 1
        if not p.initialised and n_good + 1 >= p.config.init_frames:
            self._start_init(meta, frame)
            return
        try:
            outputs = p.push(meta.sequence, frame, meta.t_received_mono_ns)
        finally:
            if slot is not None:
                ring.release(slot)
        if not outputs and p.initialised:
            self._pending.pop(meta.sequence, None)  # skipped as a bad frame
        self._emit(outputs, warmup=self._warmup)

    def _start_init(self, meta: FrameMeta, frame: np.ndarray) -> None:
        def initialise() -> None:
            self._init_outputs = self.pipeline.push(meta.sequence, frame, meta.t_received_mono_ns)

        self._init_thread = threading.Thread(target=initialise, name="rtcal-init", daemon=True)
        self._init_thread.start()

    # ------------------------------------------------------ between frames
    def _between_frames(self) -> None:
        if self._init_thread is not None and not self._init_thread.is_alive():
            self._init_thread = None
            outputs, self._init_outputs = self._init_outputs, []
            self._emit(outputs, warmup=True)
            if self.pipeline.initialised:
                held = [s for s in self._pending if s < (outputs[-1].index if outputs else 0)]
                for s in held:  # frames the pipeline skipped while holding
                    self._pending.pop(s)
        if self.redetector is not None:
            result = self.redetector.poll()
            if result is not None:
                t0 = time.perf_counter()
                self._add_detected(result)
                self.stalls.add("redetect_result", time.perf_counter() - t0)
            if self._to_add:
                t0 = time.perf_counter()
                self._add_some()
                self.stalls.add("add_components", time.perf_counter() - t0)
        if self.pipeline.initialised and time.monotonic() >= self._next_refresh:
            self._next_refresh = time.monotonic() + self.config.footprint_refresh_s
            if self.components.n_components:
                t0 = time.perf_counter()
                self._send_footprints(self._last_sequence, new_set=False, to_file=False)
                self.stalls.add("footprint_refresh", time.perf_counter() - t0)

    def _add_detected(self, r: RedetectResult) -> None:
        self.redetect_seconds.append(r.seconds)
        fp = r.footprints
        now = footprint_csr(self.pipeline)
        if len(fp) and now.shape[0] > r.n_existing:  # components added since the snapshot
            fp = fp[find_new(fp, now[r.n_existing :]).new]
        self._to_add.extend(fp)
        self._to_add_window = r.window

    def _add_some(self) -> None:
        """Add a few detected components: each addition stalls the frame loop
        (first measured at 256 x 256, K ~ 30: ~10 ms + 2.5 ms per component; at
        512 x 512, K ~ 250: ~105 ms for 4; in the 10-minute 512 x 512 latency bench
        of 2026-11-25, K ~ 270: 7 ms per call on average, 32 ms at most). As many as
        the last additions say fit in ADD_BUDGET_S, at least one, at most
        ADD_PER_FRAME."""
        per_component = self._add_seconds_each
        fit = int(ADD_BUDGET_S / per_component) if per_component > 0 else 1
        n = max(1, min(ADD_PER_FRAME, fit, len(self._to_add)))
        batch = np.stack([self._to_add.popleft() for _ in range(n)])
        t0 = time.perf_counter()
        try:
            added = self.pipeline.add_components(batch, self._to_add_window)
        except RtcalError as e:  # the pipeline is left as it was: count, say, go on
            self.n_redetect_add_failed += n
            print(f"rtcal engine: {n} detected component(s) not added: {e}", file=sys.stderr)
            return
        self._add_seconds_each = (time.perf_counter() - t0) / n
        self.n_redetect_added += len(added)

    # ------------------------------------------------------------- output
    def _emit(self, outputs: list[FrameOutput], warmup: bool) -> None:
        for out in outputs:
            meta = self._pending.pop(out.index)
            if self.components.changed(len(out.traces), len(out.added), out.retired):
                t0 = time.perf_counter()
                self._send_footprints(out.index, new_set=True)
                self.stalls.add("new_component_set", time.perf_counter() - t0)
            t0 = time.perf_counter_ns()
            events = self.triggers.step(
                out.index, time.time_ns(), out.dff, out.spikes, out.denoised
            )
            t_trigger = time.perf_counter_ns() - t0
            self._publish(out, meta, events, t_trigger, warmup)
            if self.sink is not None:
                self.sink.put_frame(out, events)
            self._keyframe(out)
            self.n_processed += 1
            self._last_sequence = out.index

    def _publish(self, out: FrameOutput, meta: FrameMeta, events, t_trigger: int, warmup: bool):
        version = self.components.version
        t_done = meta.t_received_ns + (out.t_done_ns - meta.t_received_mono_ns)
        queue_ns = meta.t_popped_mono_ns - meta.t_received_mono_ns
        t_pub = time.time_ns()
        self.publisher.frame(
            FrameResult(
                meta.sequence,
                version,
                out.traces,
                out.denoised,
                out.spikes,
                out.dff,
                (float(out.shift[0]), float(out.shift[1])),
                meta.t_sent_ns,
                meta.t_received_ns,
                t_done,
                t_pub,
                (queue_ns, *out.stage_ns, t_trigger),
                warmup,
            )
        )
        for e in events:
            self.publisher.event(
                Event(
                    e.rule,
                    meta.sequence,
                    e.neurons,
                    version,
                    meta.t_sent_ns,
                    meta.t_received_ns,
                    e.t_ns,
                )
            )
        self.n_events += len(events)
        log = self.latency_warmup if warmup else self.latency_steady
        log.add(t_pub - meta.t_received_ns)

    def _send_footprints(self, sequence: int, *, new_set: bool, to_file: bool = True) -> None:
        """Publish the footprints; to the file too unless to_file is False. The file
        gets new components at once and refined shapes only at the end: rewriting
        K compressed (H, W) rows holds the writer thread, and with it the GIL, for
        long (hundreds of ms at 512 x 512 x 300)."""
        u = self.components.update(self.pipeline, sequence, new_set=new_set)
        self.publisher.footprints(u)
        if self.sink is not None and to_file:
            self.sink.put_footprints(u, refresh=not new_set)

    # ------------------------------------------------ keyframes, detector
    def _keyframe(self, out: FrameOutput) -> None:
        corrected = out.corrected
        if corrected is None or self.redetector is None:
            return
        if not isinstance(corrected, np.ndarray):  # a device array (backend "cuda")
            corrected = corrected.get()
        if self.keyframes is None:
            from rtcal.buffer.keyframe import KeyframeBuffer

            H, W = corrected.shape
            c = self.config
            self.keyframes = KeyframeBuffer(H, W, c.keyframe_frames, c.keyframe_n_key)
        self._deferred.append((out.index, corrected))
        if self._taken is not None and not self._taken.is_set():
            return  # the detector's worker is copying the buffer: push these later
        # frames held back while the detector's worker copied the buffer go in a few
        # per frame (in order), not all at once: at 512 x 512 a push costs ~0.8 ms
        n = min(len(self._deferred), 1 + KEYFRAME_CATCH_UP)
        t0 = time.perf_counter()
        for index, frame in self._deferred[:n]:
            self.keyframes.push(index, frame)
        if n > 1:
            self.stalls.add("keyframe_catch_up", time.perf_counter() - t0)
        del self._deferred[:n]
        self._taken = None
        self._since_detect += 1
        if self._since_detect >= self.config.detect_every_frames and not self.redetector.busy:
            self._since_detect = 0
            t_submit = time.perf_counter()
            existing = footprint_csr(self.pipeline).copy()
            self._taken = threading.Event()
            job = RedetectJob(out.index, self.keyframes.snapshot, existing, self._taken)
            self.redetector.submit(job)
            self.stalls.add("redetect_submit", time.perf_counter() - t_submit)

    # ------------------------------------------------------------ the end
    def _finish(self) -> None:
        if not self.pipeline.initialised:
            self._emit(self.pipeline.finish(), warmup=True)
        if self.pipeline.n_held:  # too few frames to initialise on: counted, not lost
            n = self.pipeline.n_held
            self.counters.add("dropped_warmup", n)
            for seq in list(self._pending):
                self._pending.pop(seq)
            print(f"rtcal engine: the stream ended after {n} good frames, too few to "
                  "initialise on; they are counted as dropped (warm-up)", file=sys.stderr)
        if self.components.n_components:
            self._send_footprints(self._last_sequence, new_set=False)
