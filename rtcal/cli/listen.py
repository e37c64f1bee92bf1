"""``rtcal listen``: print (or save) what a running engine publishes."""

from __future__ import annotations

import argparse

DESCRIPTION = """\
Subscribe to an engine's results (ENDPOINT, its --results socket) and, with
--events, its trigger events. Prints one line per second (frames, components,
latency from the sender's timestamp to here) and one per event. --save FILE.npz
keeps everything received: per-frame sequence numbers, times, traces, spikes
and dF/F (NaN-padded to the largest component count), the last footprints and
the events. Stops after --count frames, --duration seconds, or Ctrl-C.
"""


def add_parser(sub, name: str, help_text: str) -> argparse.ArgumentParser:
    p = sub.add_parser(name, help=help_text, description=DESCRIPTION)
    p.add_argument("endpoint", metavar="ENDPOINT", help="results endpoint, tcp://127.0.0.1:5556")
    p.add_argument("--events", metavar="ENDPOINT", help="events endpoint, tcp://127.0.0.1:5557")
    p.add_argument("--save", metavar="FILE.npz", help="save what was received")
    p.add_argument("--count", type=int, metavar="N", help="stop after N frame results")
    p.add_argument("--duration", type=float, metavar="S", help="stop after S seconds")
    p.add_argument("--quiet", action="store_true", help="no per-second lines")
    return p


def run(args: argparse.Namespace) -> int:
    import time

    from rtcal.cli.listen_record import Recording
    from rtcal.client import ResultsSubscriber
    from rtcal.net import Event, FootprintUpdate, FrameResult

    rec = Recording()
    t_end = time.monotonic() + args.duration if args.duration else float("inf")
    next_line = time.monotonic() + 1.0
    with ResultsSubscriber(args.endpoint, args.events) as sub:
        try:
            while time.monotonic() < t_end and (args.count is None or rec.n_frames < args.count):
                msg = sub.recv(timeout_ms=200)
                t_ns = time.time_ns()
                if isinstance(msg, FrameResult):
                    rec.add_frame(msg, t_ns)
                elif isinstance(msg, FootprintUpdate):
                    rec.footprints = msg
                elif isinstance(msg, Event):
                    rec.add_event(msg, t_ns)
                    print(
                        f"event {msg.rule!r} frame {msg.sequence} neurons "
                        f"{msg.neurons.tolist()} {(t_ns - msg.t_sent_ns) / 1e6:.2f} ms"
                    )
                if not args.quiet and time.monotonic() >= next_line:
                    next_line += 1.0
                    print(rec.line(), flush=True)
        except KeyboardInterrupt:
            pass
    print(rec.line())
    if args.save:
        rec.save(args.save)
        print(f"wrote {args.save}")
    return 0
