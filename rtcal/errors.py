"""The one base class for errors rtcal raises on purpose.

Each stage defines its own subclasses next to the code that raises them, so a
caller can catch ``RtcalError`` for "bad input or impossible config, explained"
and let everything else propagate as a bug.
"""


class RtcalError(Exception):
    """An error whose message names the problem for the person at the rig."""
