"""The neurons of several rules of one kind, laid end to end, so that one frame's
values for all of them come from a single gather.

Entry e is neuron ``index[e]`` of rule ``rule_of[e]``; rule r owns entries
``starts[r] .. ends[r] - 1``. A rule whose largest neuron index is not
below the current component count K is *skipped* for that frame.
"""

from __future__ import annotations

import numpy as np


class NeuronLayout:
    """neuron_lists: one non-empty sequence of component indices per rule."""

    def __init__(self, neuron_lists: list[tuple[int, ...]]) -> None:
        lengths = np.array([len(n) for n in neuron_lists], np.int64)
        self.n_rules = len(neuron_lists)
        self.index = np.array([i for n in neuron_lists for i in n], np.int64)  # (M,)
        self.rule_of = np.repeat(np.arange(self.n_rules), lengths)  # (M,)
        self.ends = np.cumsum(lengths).astype(np.int64)  # (R,)
        self.starts = self.ends - lengths  # (R,)
        self.max_index = np.array([max(n) for n in neuron_lists], np.int64)  # (R,)
        self._highest = int(self.max_index.max()) if self.n_rules else -1
        self._k = -1
        self._valid_rule = np.ones(self.n_rules, bool)
        self._valid_entry = np.ones(len(self.index), bool)
        self._safe_index = self.index

    def update(self, n_components: int) -> bool:
        """Set the component count K; True if every rule can be evaluated."""
        if n_components != self._k:
            self._k = n_components
            self._valid_rule = self.max_index < n_components
            self._valid_entry = self._valid_rule[self.rule_of]
            self._safe_index = np.minimum(self.index, max(n_components - 1, 0))
        return self._highest < n_components

    @property
    def valid_rule(self) -> np.ndarray:
        """(R,) bool: rules whose neurons all exist at the current K."""
        return self._valid_rule

    @property
    def valid_entry(self) -> np.ndarray:
        """(M,) bool: entries of valid rules."""
        return self._valid_entry

    def gather(self, signals: np.ndarray, which: np.ndarray | int) -> np.ndarray:
        """(M,) values of the entries from signals (S, K); which: signal row per entry
        (or one for all). Entries of skipped rules get an arbitrary existing value,
        or NaN while there are no components at all."""
        if signals.shape[1] == 0:
            return np.full(len(self.index), np.nan)
        return signals[which, self._safe_index]

    def members(self, mask: np.ndarray, rule: int) -> np.ndarray:
        """int64 component indices of rule ``rule``'s entries where ``mask`` holds."""
        lo, hi = self.starts[rule], self.ends[rule]
        return self.index[lo:hi][mask[lo:hi]]
