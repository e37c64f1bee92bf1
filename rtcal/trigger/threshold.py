"""Threshold rules: a neuron's signal (dF/F by default) crosses a level upward."""

from __future__ import annotations

import numpy as np

from rtcal.trigger.config import SIGNALS, ThresholdRule
from rtcal.trigger.layout import NeuronLayout


class ThresholdBank:
    """All threshold rules of a set, evaluated together.

    Neuron i of rule r crosses at frame t when x_i(t) >= threshold_r and, at the
    last frame where rule r was evaluated, x_i < threshold_r (NaN counts as
    below). A neuron's first evaluated frame cannot cross: it has no "before".
    The rule fires with the neurons that crossed.
    """

    def __init__(self, rules: list[ThresholdRule]) -> None:
        self.layout = NeuronLayout([r.neurons for r in rules])
        n = self.layout.rule_of
        self.threshold = np.array([r.threshold for r in rules], np.float64)[n]  # (M,)
        self.signal = np.array([SIGNALS.index(r.signal) for r in rules], np.int64)[n]
        self.above = np.zeros(len(n), bool)  # state at the previous evaluated frame
        self.seen = np.zeros(len(n), bool)

    def step(self, signals: np.ndarray) -> list[tuple[int, np.ndarray]]:
        """signals: (3, K) rows as ``SIGNALS``. Returns (rule, neurons) for each rule
        that fires, rule being its position in this bank."""
        all_valid = self.layout.update(signals.shape[1])
        above = self.layout.gather(signals, self.signal) >= self.threshold
        cross = above & ~self.above & self.seen
        if all_valid:
            self.above = above
            self.seen[:] = True
        else:
            valid = self.layout.valid_entry
            cross &= valid
            self.above = np.where(valid, above, self.above)
            self.seen |= valid
        if not cross.any():
            return []
        rules = np.flatnonzero(np.logical_or.reduceat(cross, self.layout.starts))
        return [(int(r), self.layout.members(cross, r)) for r in rules]
