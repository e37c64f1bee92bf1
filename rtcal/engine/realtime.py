"""Real-time scheduling for the engine's latency-critical threads.

Under Linux's default scheduler (CFS, ``SCHED_OTHER``) every runnable thread on
the machine shares the cores by weight, so on a small machine a frame that
arrives while the detector, the results writer, a copy of the keyframe buffer,
the acquisition program or anything else is running can wait tens of
milliseconds for a core. In the 10-minute 512 x 512 latency bench on 2 cores
the worst frames spent 20-85 ms in motion correction (median 1.3 ms) with no
garbage collection and no stall in the engine's own code: the thread was off
the CPU. A rig's standard answer is a real-time policy for the threads on the
critical path: a ``SCHED_FIFO`` thread runs as soon as it is runnable,
before every ``SCHED_OTHER`` thread, until it blocks.

With ``[engine] realtime_priority = P`` (1-98; 0, the default, leaves
scheduling alone) the engine moves to ``SCHED_FIFO`` at priority P:

- the frame receiver and the frame loop (each moves itself when it starts), and
- ZeroMQ's I/O threads (``THREAD_SCHED_POLICY`` / ``THREAD_PRIORITY`` on the
  context; only for threads the context has not started yet, so it takes effect
  when the engine creates the context or is the first to open a socket on it).

The writer, control, detector and initialisation threads stay under CFS, and
the detector's child process stays ``nice``d. The real-time threads block on
their sockets and queues between frames, so they leave the other threads the
time the frame path does not need; while the frame loop catches up on a
backlog it keeps one core, so it is refused on a one-core machine. The
kernel's real-time throttling (``/proc/sys/kernel/sched_rt_runtime_us``, 95%
by default) is a further guard.

Permission: root, ``CAP_SYS_NICE`` (``setcap cap_sys_nice+ep $(readlink -f
$(which python))``) or an ``rtprio`` limit of at least P
(``/etc/security/limits.conf``: ``@microscope - rtprio 50``). Without it the
engine says so once on stderr and in its status and runs under CFS; it never
fails to start because of it. libzmq aborts the process when it cannot apply a
thread policy, so the context is only configured after this process has been
seen to obtain P (``can_use_fifo``).
"""

from __future__ import annotations

import os
import threading

MAX_PRIORITY = 98  # 99 is left to the kernel's own real-time threads (watchdogs, migration)


def _fifo_available() -> bool:
    return hasattr(os, "sched_setscheduler") and hasattr(os, "SCHED_FIFO")


def make_thread_realtime(priority: int) -> str:
    """Move the calling thread to ``SCHED_FIFO`` at ``priority``.

    Returns "" when done (or when priority is 0, nothing asked), otherwise why
    not, in words a user can act on. Never raises for a refusal."""
    if priority == 0:
        return ""
    if not 1 <= priority <= MAX_PRIORITY:
        raise ValueError(f"real-time priority must be 0 (off) or 1-{MAX_PRIORITY}, got {priority}")
    if not _fifo_available():
        return "SCHED_FIFO is not available on this platform (Linux only)"
    if (os.cpu_count() or 1) < 2:
        # a real-time frame loop that falls behind would have the only core to itself
        return "one CPU core: a real-time frame loop would starve the writer and control threads"
    try:
        # pid 0: the calling thread (Linux schedules threads, not processes)
        os.sched_setscheduler(0, os.SCHED_FIFO, os.sched_param(priority))
    except PermissionError:
        return (f"not permitted to use SCHED_FIFO priority {priority} (needs root, "
                f"CAP_SYS_NICE or an rtprio limit >= {priority}: see rtcal.engine.realtime)")
    except OSError as e:
        return f"SCHED_FIFO priority {priority} refused: {e}"
    return ""


def restore_default_policy() -> None:
    """Put the calling thread back under the default scheduler (always permitted)."""
    if _fifo_available():
        os.sched_setscheduler(0, os.SCHED_OTHER, os.sched_param(0))


def thread_policy() -> str:
    """The calling thread's policy and priority, e.g. "SCHED_FIFO 50" or "SCHED_OTHER"."""
    if not _fifo_available():
        return "unknown"
    policy = os.sched_getscheduler(0)
    names = {os.SCHED_OTHER: "SCHED_OTHER", os.SCHED_FIFO: "SCHED_FIFO"}
    if hasattr(os, "SCHED_RR"):
        names[os.SCHED_RR] = "SCHED_RR"
    name = names.get(policy, f"policy {policy}")
    if policy == os.SCHED_OTHER:
        return name
    return f"{name} {os.sched_getparam(0).sched_priority}"


def can_use_fifo(priority: int) -> str:
    """Whether this process may use ``SCHED_FIFO`` at ``priority``: "" if so, else
    why not. Tried on a short-lived thread, so the caller's own policy is untouched."""
    if priority == 0:
        return ""
    reason: list[str] = []
    probe = threading.Thread(target=lambda: reason.append(make_thread_realtime(priority)),
                             name="rtcal-rt-probe", daemon=True)
    probe.start()
    probe.join()
    return reason[0] if reason else "the probe thread failed"


def configure_zmq_context(context, priority: int) -> str:
    """Ask ``context`` to start its I/O threads under ``SCHED_FIFO`` at
    ``priority``; "" if set, else why not (nothing is set then). Only threads
    started after this call are affected."""
    if priority == 0:
        return ""
    reason = can_use_fifo(priority)
    if reason:
        return reason
    import zmq

    try:
        context.set(zmq.THREAD_SCHED_POLICY, os.SCHED_FIFO)
        context.set(zmq.THREAD_PRIORITY, priority)
    except (AttributeError, zmq.ZMQError) as e:  # an old libzmq
        return f"this libzmq cannot set its threads' policy ({e})"
    return ""


class RealtimeReport:
    """What each thread obtained, for the engine's status: {"receiver": "SCHED_FIFO 50",
    "frame_loop": "not permitted ...", ...}. Thread-safe; warns once on stderr."""

    def __init__(self, priority: int) -> None:
        self.priority = priority
        self._threads: dict[str, str] = {}
        self._lock = threading.Lock()
        self._warned = False

    def apply(self, name: str) -> None:
        """Make the calling thread real-time (if asked) and record the outcome."""
        reason = make_thread_realtime(self.priority)
        self.record(name, reason)

    def record(self, name: str, reason: str) -> None:
        import sys

        with self._lock:
            self._threads[name] = reason or (f"SCHED_FIFO {self.priority}" if self.priority
                                             else "SCHED_OTHER")
            warn = bool(reason) and not self._warned
            self._warned |= warn
        if warn:
            print(f"rtcal engine: real-time scheduling not applied ({name}): {reason}; "
                  "running under the default scheduler", file=sys.stderr)

    def summary(self) -> dict:
        with self._lock:
            return {"priority": self.priority, "threads": dict(self._threads)}
