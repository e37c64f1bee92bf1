"""Sequence numbers: gaps (frames lost before the engine), duplicates, frames out of order."""

from __future__ import annotations

OK, DUPLICATE, OUT_OF_ORDER = "ok", "duplicate", "out of order"


class SequenceTracker:
    """Classify each arriving sequence number against the last accepted one.

    A number above last + 1 is accepted and leaves a gap of (number - last - 1)
    frames; the last number again is a duplicate; a smaller one is out of order.
    Neither of the last two is processed: results are kept in sequence order,
    so a sender that restarts its numbering needs a new engine run.
    """

    def __init__(self) -> None:
        self.last: int | None = None

    def step(self, sequence: int) -> tuple[str, int]:
        """(verdict, missing frames before this one)."""
        if self.last is None:
            self.last = sequence
            return OK, 0
        if sequence == self.last:
            return DUPLICATE, 0
        if sequence < self.last:
            return OUT_OF_ORDER, 0
        missing = sequence - self.last - 1
        self.last = sequence
        return OK, missing
