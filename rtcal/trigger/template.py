"""Template rules: the population vector of a set of neurons matches a pattern."""

from __future__ import annotations

import numpy as np

from rtcal.trigger.config import SIGNALS, TemplateRule
from rtcal.trigger.layout import NeuronLayout


class TemplateBank:
    """All template rules of a set, evaluated together.

    With x the rule's signal over its neurons at frame t and u its template,
    cos = x . u / (|x| |u|). The rule fires at every frame where cos >= threshold
    and |x| >= min_norm (|x| > 0 always; a NaN in x never matches); the
    refractory period keeps a lasting match from firing on every frame. The
    event lists all the rule's neurons.
    """

    def __init__(self, rules: list[TemplateRule]) -> None:
        self.layout = NeuronLayout([r.neurons for r in rules])
        n = self.layout.rule_of
        unit = [np.asarray(r.template, np.float64) / np.linalg.norm(r.template) for r in rules]
        self.unit = np.concatenate(unit) if rules else np.zeros(0)  # (M,) |u_r| = 1
        self.signal = np.array([SIGNALS.index(r.signal) for r in rules], np.int64)[n]
        self.threshold = np.array([r.threshold for r in rules], np.float64)  # (R,)
        self.min_norm = np.array([r.min_norm for r in rules], np.float64)  # (R,)
        self._everyone = np.ones(len(n), bool)

    def similarity(self, signals: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Cosine similarity (R,) and norm |x| (R,) of every rule at this frame
        (0 where |x| = 0, NaN where a value is NaN or the rule is skipped)."""
        self.layout.update(signals.shape[1])
        x = self.layout.gather(signals, self.signal).astype(np.float64)
        starts = self.layout.starts
        dot = np.add.reduceat(x * self.unit, starts)
        norm = np.sqrt(np.add.reduceat(x * x, starts))
        cos = dot / np.where(norm > 0, norm, np.inf)  # no errstate: it costs microseconds
        cos[~self.layout.valid_rule] = np.nan
        return cos, norm

    def step(self, signals: np.ndarray) -> list[tuple[int, np.ndarray]]:
        """signals: (3, K). Returns (rule, neurons) for each rule that fires."""
        cos, norm = self.similarity(signals)
        fire = (cos >= self.threshold) & (norm >= self.min_norm) & (norm > 0)
        return [(int(r), self.layout.members(self._everyone, r)) for r in np.flatnonzero(fire)]
