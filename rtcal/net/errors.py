"""The error a malformed message raises, with a short reason to count it by."""

from __future__ import annotations

from rtcal.errors import RtcalError


class ProtocolError(RtcalError):
    """A message that does not follow ``docs/protocol.md``.

    reason: a short fixed phrase ("bad magic", "size mismatch", ...) that the
    engine counts malformed messages by; the message text adds the details.
    """

    def __init__(self, reason: str, detail: str = "") -> None:
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason
