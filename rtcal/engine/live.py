"""The live engine: frames in over ZeroMQ, results, footprints and events out, a
results file written as it goes (see ``docs/protocol.md`` for the wire format).

Threads, each in its own module:

    receiver   (rtcal.ingest.receiver)  PULL/SUB -> preallocated ring of frame slots
    frame loop (frame_loop.py)          ring -> Pipeline -> triggers -> PUB, writer queue
    writer     (sink.py)                queue -> results file, flushed every second
    control    (control.py)             REP: status, counters, footprints, triggers, stop
    redetect   (redetect.py)            detector re-runs on keyframe snapshots
    init       (frame_loop.py)          the pipeline's initialisation, once

The engine binds every socket; clients connect. ``stop()`` (control "stop",
SIGINT/SIGTERM in ``rtcal serve``) stops receiving, lets the frame loop finish
every frame already received, closes the results file complete and stores the
counters (frames received, dropped, malformed by reason, gaps, ...) as its
attributes.
"""

from __future__ import annotations

import dataclasses
import json
import threading
import time

import zmq

from rtcal.detect.factory import describe_detector
from rtcal.detect.proposal import FootprintProposer
from rtcal.engine.config import EngineConfig
from rtcal.engine.control import ControlServer
from rtcal.engine.frame_loop import FrameLoop
from rtcal.engine.gc_pauses import GcPauses, freeze_heap
from rtcal.engine.pipeline import Pipeline, PipelineConfig
from rtcal.engine.publisher import Publisher
from rtcal.engine.realtime import RealtimeReport, configure_zmq_context
from rtcal.engine.redetect import Redetector
from rtcal.engine.sink import ResultsSink
from rtcal.engine.triggers import TriggerBox
from rtcal.errors import RtcalError
from rtcal.ingest.counters import IngestCounters
from rtcal.ingest.receiver import Receiver
from rtcal.net.control import ControlRequest
from rtcal.net.footprints import encode_footprints
from rtcal.net.frame import PROTOCOL_VERSION


class EngineError(RtcalError):
    """The engine cannot start (an endpoint in use, a bad config) or failed."""


class Engine:
    """config: sockets, ring, drop policy, detector period, results file;
    pipeline_config: the per-frame pipeline; trigger_rules: initial rules (tables
    as in the ``[triggers]`` section); detector: footprint proposer for the
    initialisation and the re-runs (default: the pipeline's seed detector);
    context: ZeroMQ context (share it with clients to use ``inproc://``)."""

    def __init__(
        self,
        config: EngineConfig,
        pipeline_config: PipelineConfig,
        trigger_rules: list[dict] | None = None,
        *,
        detector: FootprintProposer | None = None,
        context: zmq.Context | None = None,
    ) -> None:
        self.config = config
        self.pipeline_config = pipeline_config
        self.context = context or zmq.Context.instance()
        self.counters = IngestCounters()
        self.stop_event = threading.Event()
        self._closed = threading.Event()
        self.pipeline = Pipeline(pipeline_config, detector)
        self.triggers = TriggerBox(trigger_rules or [], pipeline_config.fps_hz)
        self.endpoints: dict[str, str] = {}
        self._t_start = 0.0
        self._started = False
        self.warm_seconds = 0.0
        self.gc_pauses = GcPauses()
        self.realtime = RealtimeReport(config.realtime_priority)
        self.summary: dict = {}

    # ----------------------------------------------------------- sockets
    def _bind(self, name: str, kind: int, endpoint: str, **opts) -> zmq.Socket:
        sock = self.context.socket(kind)
        for opt, value in opts.items():
            sock.setsockopt(getattr(zmq, opt), value)
        try:
            sock.bind(endpoint)
        except zmq.ZMQError as e:
            sock.close(linger=0)
            raise EngineError(f"cannot bind the {name} socket to {endpoint}: {e}") from e
        self.endpoints[name] = sock.getsockopt_string(zmq.LAST_ENDPOINT)
        return sock

    def start(self) -> Engine:
        """Bind the sockets and start the threads; returns self (``self.endpoints``
        holds the bound addresses, with the real port for "tcp://HOST:*")."""
        if self._started:
            raise EngineError("engine already started")
        c = self.config
        if c.warm_kernels:  # before binding: no frame waits on Numba's compiler
            from rtcal.engine.warmup import warm_kernels

            self.warm_seconds = warm_kernels(self.pipeline_config, keyframe_n_key=c.keyframe_n_key)
        if c.freeze_gc:  # modules, kernels, the detector: out of the collector's reach
            freeze_heap()
        if c.realtime_priority:  # before the first socket starts the context's I/O threads
            self.realtime.record("zmq_io", configure_zmq_context(self.context, c.realtime_priority))
        kind = zmq.PULL if c.frames_pattern == "pull" else zmq.SUB
        socks = []
        try:
            socks.append(self._bind("frames", kind, c.frames_endpoint, RCVHWM=c.frames_hwm))
            if kind == zmq.SUB:
                socks[-1].setsockopt(zmq.SUBSCRIBE, b"")
            socks.append(self._bind("results", zmq.PUB, c.results_endpoint, SNDHWM=c.results_hwm))
            socks.append(self._bind("events", zmq.PUB, c.events_endpoint, SNDHWM=c.results_hwm))
            socks.append(self._bind("control", zmq.REP, c.control_endpoint))
        except EngineError:
            for s in socks:
                s.close(linger=0)
            raise
        frames, results, events, control = socks
        self.receiver = Receiver(
            frames, self.counters, n_slots=c.ring_slots, policy=c.drop_policy, stop=self.stop_event,
            realtime=self.realtime if c.realtime_priority else None,
        )
        self.redetector = None
        if c.detect_every_frames:  # with DeviceNMF too (its add_components; tested)
            self.redetector = Redetector(
                self.pipeline.detector,
                confirm_runs=c.detect_confirm_runs,
                in_process=c.detect_in_process,
            )
            self.redetector.start()
        self.publisher = Publisher(results, events)
        self.loop = FrameLoop(
            config=c,
            pipeline=self.pipeline,
            ring_source=self.receiver,
            publisher=self.publisher,
            sink_factory=self._make_sink if c.results_path else None,
            triggers=self.triggers,
            counters=self.counters,
            redetector=self.redetector,
            stop=self.stop_event,
            realtime=self.realtime if c.realtime_priority else None,
        )
        self.control = ControlServer(control, self.handle, self.counters, self._closed)
        self.gc_pauses.install()  # from here on (the freeze's own collection is not a pause)
        self._t_start = time.monotonic()
        for t in (self.control, self.loop, self.receiver):
            t.start()
        self._started = True
        return self

    def _make_sink(self, height: int, width: int) -> ResultsSink:
        p = self.pipeline_config
        attrs = {
            "pipeline": "online-live",
            "init_frames": p.init_frames,
            "radius_px": p.radius_px,
            "detector": describe_detector(self.pipeline.detector),
            "protocol_version": PROTOCOL_VERSION,
            "engine_config": json.dumps(dataclasses.asdict(self.config)),
        }
        sink = ResultsSink(
            self.config.results_path,
            height=height,
            width=width,
            fps_hz=p.fps_hz,
            flush_interval_s=self.config.flush_interval_s,
            attrs=attrs,
        )
        sink.start()
        return sink

    # ---------------------------------------------------------- lifetime
    def stop(self) -> None:
        """Ask the engine to stop (safe from any thread and from a signal handler)."""
        self.stop_event.set()

    def wait(self, timeout_s: float | None = None) -> bool:
        """Wait until stopped; then finish the results file and close. True if done."""
        if not self.stop_event.wait(timeout_s):
            return False
        self.close()
        return True

    def close(self) -> dict:
        """Stop, let the frame loop finish what was received, close the results file
        (complete, with the counters as attributes), close the sockets. Idempotent;
        returns the final status."""
        if not self._started or self._closed.is_set():
            return self.summary
        self.stop_event.set()
        self.receiver.join()
        self.loop.join()
        if self.redetector is not None:
            self.redetector.close()
            self.redetector.join(10)  # a re-run in progress may finish first
        self.summary = self.status()
        if self.loop.sink is not None:
            self.loop.sink.finish(self._file_attrs(self.summary))
            self.summary["write_errors"] = self.loop.sink.n_errors
        self.publisher.close()
        self._closed.set()
        self.control.join()
        self.gc_pauses.remove()
        if self.loop.error is not None:
            raise EngineError(f"the frame loop failed: {self.loop.error!r}") from self.loop.error
        return self.summary

    def __enter__(self) -> Engine:
        return self if self._started else self.start()

    def __exit__(self, *exc) -> None:
        self.close()

    @staticmethod
    def _file_attrs(status: dict) -> dict:
        c = status["counters"]
        attrs = {f"engine_{k}": int(v) for k, v in c.items() if isinstance(v, int)}
        attrs["engine_malformed"] = json.dumps(c["malformed"])
        attrs["engine_latency_ms"] = json.dumps(status["latency_ms"])
        attrs["engine_drop_policy"] = status["ring"]["policy"]
        return attrs

    # ------------------------------------------------------------ status
    def status(self) -> dict:
        """Everything the control socket reports (JSON-serialisable)."""
        loop, p = self.loop, self.pipeline
        counters = self.counters.snapshot()
        counters["processed"] = loop.n_processed
        counters["events"] = loop.n_events
        counters["skipped_bad_frames"] = sum(dict(p.skipped).values())
        ring = self.receiver.ring
        red = self.redetector
        if self._closed.is_set() or not loop.is_alive():
            state = "stopped"
        else:
            state = "stopping" if self.stop_event.is_set() else loop.state
        return {
            "state": state,
            "uptime_s": time.monotonic() - self._t_start,
            "protocol_version": PROTOCOL_VERSION,
            "endpoints": dict(self.endpoints),
            "counters": counters,
            "n_components": loop.components.n_components,
            "component_version": loop.components.version,
            "init_seconds": p.init_seconds,
            "warm_kernels_seconds": self.warm_seconds,
            "latency_ms": {
                "steady": loop.latency_steady.summary(),
                "warmup": loop.latency_warmup.summary(),
            },
            "ring": {
                "slots": self.config.ring_slots,
                "waiting": ring.n_waiting if ring is not None else 0,
                "policy": self.config.drop_policy,
            },
            "redetect": {
                "every_frames": self.config.detect_every_frames,
                "runs": red.n_runs if red else 0,
                "skipped": red.n_skipped if red else 0,
                "failed": red.n_failed if red else 0,
                "added": loop.n_redetect_added,
                "add_failed": loop.n_redetect_add_failed,
                "seconds": list(loop.redetect_seconds[-20:]),
            },
            "stalls": loop.stalls.summary(),
            "realtime": self.realtime.summary(),
            "gc": self.gc_pauses.summary(),
            "triggers": self.triggers.status(),
            "results_path": self.config.results_path,
        }

    # ----------------------------------------------------------- control
    def handle(self, request: ControlRequest) -> tuple[dict, tuple]:
        """Answer one control request (runs on the control thread)."""
        cmd = request.cmd
        if cmd == "ping":
            return {"version": PROTOCOL_VERSION}, ()
        if cmd == "status":
            return self.status(), ()
        if cmd == "counters":
            return self.status()["counters"], ()
        if cmd == "footprints":
            latest = self.loop.components.latest
            if latest is None:
                raise EngineError("no footprints yet (the pipeline is initialising)")
            return {"component_version": latest.component_version}, tuple(encode_footprints(latest))
        if cmd == "get_triggers":
            return {"rules": self.triggers.describe()}, ()
        if cmd == "set_triggers":
            return {"rules": self.triggers.set_rules(request.args["rules"])}, ()
        if cmd == "clear_triggers":
            self.triggers.clear()
            return {"rules": []}, ()
        if cmd == "stop":
            self.stop()
            return {}, ()
        raise EngineError(f"unhandled command {cmd!r}")
