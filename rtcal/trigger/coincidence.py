"""Coincidence rules: k of a set of neurons spike within a window of frames."""

from __future__ import annotations

import numpy as np

from rtcal.trigger.config import SIGNALS, CoincidenceRule
from rtcal.trigger.layout import NeuronLayout

_NEVER = -(2**62)  # "last spiked" of a neuron that has not spiked yet

_SPIKES = SIGNALS.index("spikes")


class CoincidenceBank:
    """All coincidence rules of a set, evaluated together.

    A neuron has spiked at frame t when spikes_i(t) > spike_min. At frame t rule r
    fires when at least k of its neurons spiked at some frame in
    (t - window_frames, t] and at least one of them spiked at t (so it fires when a
    coincidence is completed, not on every frame while one lasts). The event lists
    the neurons that spiked within the window. Frames where the rule is skipped
    (a neuron index not yet in use) record no spikes for it.
    """

    def __init__(self, rules: list[CoincidenceRule]) -> None:
        self.layout = NeuronLayout([r.neurons for r in rules])
        n = self.layout.rule_of
        self.spike_min = np.array([r.spike_min for r in rules], np.float64)[n]  # (M,)
        self.window = np.array([r.window_frames for r in rules], np.int64)[n]  # (M,)
        self.k = np.array([r.k for r in rules], np.int64)  # (R,)
        self.last_spike = np.full(len(n), _NEVER, np.int64)  # (M,) frame index

    def step(self, index: int, signals: np.ndarray) -> list[tuple[int, np.ndarray]]:
        """Frame ``index``, signals (3, K). Returns (rule, neurons) for each rule that
        fires, rule being its position in this bank."""
        all_valid = self.layout.update(signals.shape[1])
        spiked = self.layout.gather(signals, _SPIKES) > self.spike_min
        if not all_valid:
            spiked &= self.layout.valid_entry
        if not spiked.any():
            return []
        self.last_spike[spiked] = index
        recent = (index - self.last_spike) < self.window
        starts = self.layout.starts
        count = np.add.reduceat(recent, starts)
        now = np.add.reduceat(spiked, starts) > 0
        fire = (count >= self.k) & now & self.layout.valid_rule
        return [(int(r), self.layout.members(recent, r)) for r in np.flatnonzero(fire)]
