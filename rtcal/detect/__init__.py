"""Footprint detectors: propose(window) -> footprints.

``rtcal.detect.seed`` is the classical greedy seed detector (CNMF-E style);
the learned detector plugs into the same ``FootprintProposer`` interface.
"""

from rtcal.detect.proposal import FootprintProposer, Proposal

__all__ = ["FootprintProposer", "Proposal"]
