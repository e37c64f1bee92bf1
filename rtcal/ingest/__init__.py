"""Frames in: the receiver thread, the preallocated ring of frame slots it fills,
sequence checking, and the counters of everything that did not get through."""

from rtcal.ingest.counters import IngestCounters
from rtcal.ingest.receiver import Receiver
from rtcal.ingest.ring import FrameRing
from rtcal.ingest.sequence import SequenceTracker

__all__ = ["FrameRing", "IngestCounters", "Receiver", "SequenceTracker"]
