"""A preallocated ring of frame slots between the receiver and the frame loop.

The receiver owns one slot at a time and receives the next frame's pixels
straight into it (``recv_into``: no allocation per frame); ``commit`` hands it to
the frame loop and gives the receiver a free slot. The frame loop ``pop``s the
oldest waiting slot, reads it in place, and ``release``s it.

When every slot is waiting, the drop policy decides (see ``EngineConfig``):
"oldest" evicts the oldest waiting frame, "newest" discards the one just
received, "block" makes ``commit`` wait for the frame loop. Dropped frames are
counted in ``counters.dropped_ring``.
"""

from __future__ import annotations

import threading
from collections import deque

import numpy as np

from rtcal.ingest.counters import IngestCounters
from rtcal.net.frame import MAX_ITEMSIZE, FrameHeader


class FrameRing:
    """n_slots slots of height x width pixels of any wire dtype.

    Per slot the header fields and arrival times are kept: sequence, t_sent_ns
    (sender clock), t_received_ns (engine ``time.time_ns()``) and
    t_received_mono_ns (engine ``time.monotonic_ns()``).
    """

    def __init__(
        self, n_slots: int, height: int, width: int, policy: str, counters: IngestCounters
    ) -> None:
        self.height, self.width = int(height), int(width)
        self.policy = policy
        self.counters = counters
        self.slot_bytes = self.height * self.width * MAX_ITEMSIZE
        self._pixels = np.empty((n_slots, self.slot_bytes), np.uint8)
        self._dtype: list[np.dtype | None] = [None] * n_slots
        self.sequence = np.zeros(n_slots, np.int64)
        self.t_sent_ns = np.zeros(n_slots, np.int64)
        self.t_received_ns = np.zeros(n_slots, np.int64)
        self.t_received_mono_ns = np.zeros(n_slots, np.int64)
        self._cond = threading.Condition()
        self._free = deque(range(1, n_slots))
        self._waiting: deque[int] = deque()
        self._closed = False
        self.receiving = 0  # the slot the receiver writes into next
        self.dropped_sequences: deque[int] = deque(maxlen=1000)

    def buffer(self, slot: int) -> np.ndarray:
        """The slot's whole byte buffer (receive into it)."""
        return self._pixels[slot]

    def frame(self, slot: int) -> np.ndarray:
        """The slot's frame, (height, width) of its dtype; a view, valid until release."""
        n = self.height * self.width
        return self._pixels[slot].view(self._dtype[slot])[:n].reshape(self.height, self.width)

    def commit(self, header: FrameHeader, t_received_ns: int, t_received_mono_ns: int) -> None:
        """The receiving slot holds a complete frame: queue it, take the next free slot."""
        slot = self.receiving
        self._dtype[slot] = header.dtype
        self.sequence[slot] = header.sequence
        self.t_sent_ns[slot] = header.t_sent_ns
        self.t_received_ns[slot] = t_received_ns
        self.t_received_mono_ns[slot] = t_received_mono_ns
        with self._cond:
            if not self._free:
                if self.policy == "newest":
                    self._drop(slot)  # keep receiving into the same slot
                    return
                if self.policy == "oldest":
                    victim = self._waiting.popleft()
                    self._drop(victim)
                    self._free.append(victim)
                else:  # block
                    while not self._free and not self._closed:
                        self._cond.wait(0.1)
                    if self._closed:
                        return
            self._waiting.append(slot)
            self.receiving = self._free.popleft()
            self._cond.notify_all()

    def _drop(self, slot: int) -> None:
        self.counters.add("dropped_ring")
        self.dropped_sequences.append(int(self.sequence[slot]))

    def pop(self, timeout_s: float) -> int | None:
        """The oldest waiting slot, or None after ``timeout_s`` with none waiting."""
        with self._cond:
            if not self._waiting:
                self._cond.wait(timeout_s)
            return self._waiting.popleft() if self._waiting else None

    def release(self, slot: int) -> None:
        """The frame loop is done with ``slot``."""
        with self._cond:
            self._free.append(slot)
            self._cond.notify_all()

    @property
    def n_waiting(self) -> int:
        with self._cond:
            return len(self._waiting)

    def close(self) -> None:
        """Wake a receiver blocked in ``commit`` (policy "block") so it can exit."""
        with self._cond:
            self._closed = True
            self._cond.notify_all()
