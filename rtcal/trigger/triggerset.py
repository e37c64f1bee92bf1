"""The stepper: a set of trigger rules turned into events frame by frame."""

from __future__ import annotations

import numpy as np

from rtcal.errors import RtcalError
from rtcal.trigger.coincidence import CoincidenceBank
from rtcal.trigger.config import (
    Rule,
    check_fps,
    parse_rules,
    refractory_frames,
    rule_to_dict,
)
from rtcal.trigger.event import TriggerEvent
from rtcal.trigger.template import TemplateBank
from rtcal.trigger.threshold import ThresholdBank

_NEVER = -(2**62)


class TriggerInputError(RtcalError, ValueError):
    """``TriggerSet.step`` was given inconsistent per-frame outputs."""


class TriggerSet:
    """Rules and their state. ``step`` once per frame, in frame order.

    Refractory period: after rule r fires at frame index f it cannot fire at
    indices below f + ceil(refractory_s * fps_hz) (what would have fired is
    dropped and counted, not postponed). A rule that names a component index
    >= K at some frame is skipped for that frame, counted, and its problem is
    reported by ``status()``; it resumes by itself once K has grown.
    """

    def __init__(self, rules: list[Rule], fps_hz: float) -> None:
        self.fps_hz = check_fps(fps_hz)
        self._install(list(rules))

    @classmethod
    def from_config(cls, rules: list[dict], fps_hz: float) -> TriggerSet:
        """Build from rule tables (TOML ``[[triggers]]``; schema in ``rtcal.trigger``)."""
        return cls(parse_rules(rules, fps_hz), fps_hz)

    def _install(self, rules: list[Rule]) -> None:
        self.rules = rules
        n = len(rules)
        self._refractory = np.array([refractory_frames(r, self.fps_hz) for r in rules], np.int64)
        self._last_fire = np.full(n, _NEVER, np.int64)
        self.n_fired = np.zeros(n, np.int64)
        self.n_suppressed = np.zeros(n, np.int64)  # fired inside the refractory period
        self.n_skipped = np.zeros(n, np.int64)  # frames skipped: neuron index >= K
        self._problem = [""] * n
        self._any_problem = False
        self._last_index: int | None = None
        self._banks = []
        for cls, kind in ((ThresholdBank, "threshold"), (CoincidenceBank, "coincidence"),
                          (TemplateBank, "template")):
            where = np.array([i for i, r in enumerate(rules) if r.kind == kind], np.int64)
            if len(where):
                self._banks.append((cls([rules[i] for i in where]), where))

    def __len__(self) -> int:
        return len(self.rules)

    def set_rules(self, rules: list[dict]) -> None:
        """Replace every rule (all state is reset). Nothing changes if any table is bad."""
        self._install(parse_rules(rules, self.fps_hz))

    def clear(self) -> None:
        """Remove every rule."""
        self._install([])

    def describe(self) -> list[dict]:
        """The rules as tables: JSON-serialisable, and ``from_config`` rebuilds them."""
        return [rule_to_dict(r) for r in self.rules]

    def status(self) -> list[dict]:
        """Per rule: name, n_fired, n_suppressed, n_skipped, problem ("" when none)."""
        return [
            {"name": r.name, "n_fired": int(self.n_fired[i]),
             "n_suppressed": int(self.n_suppressed[i]), "n_skipped": int(self.n_skipped[i]),
             "problem": self._problem[i]}
            for i, r in enumerate(self.rules)
        ]

    def step(self, index: int, t_ns: int, dff: np.ndarray, spikes: np.ndarray,
             denoised: np.ndarray) -> list[TriggerEvent]:
        """Evaluate every rule on frame ``index`` (increasing; gaps allowed).

        dff, spikes, denoised: (K,) float arrays of the current components, K may
        grow between frames. Returns the events of this frame in rule order.
        """
        signals = self._check(index, dff, spikes, denoised)
        if not self.rules:
            return []
        fired: list[tuple[int, np.ndarray]] = []
        for bank, where in self._banks:
            if isinstance(bank, CoincidenceBank):
                hits = bank.step(index, signals)
            else:
                hits = bank.step(signals)
            fired.extend((int(where[r]), neurons) for r, neurons in hits)
            if not bank.layout.update(signals.shape[1]):
                self._note_skipped(bank, where, signals.shape[1])
            elif self._any_problem:
                for g in where:
                    self._problem[g] = ""
        self._any_problem = any(self._problem)
        events = []
        for g, neurons in sorted(fired, key=lambda item: item[0]):
            if index - self._last_fire[g] < self._refractory[g]:
                self.n_suppressed[g] += 1
                continue
            self._last_fire[g] = index
            self.n_fired[g] += 1
            events.append(TriggerEvent(self.rules[g].name, index, t_ns, neurons))
        return events

    def _note_skipped(self, bank, where: np.ndarray, n_components: int) -> None:
        valid = bank.layout.valid_rule
        for r in np.flatnonzero(~valid):
            g = int(where[r])
            self.n_skipped[g] += 1
            self._problem[g] = (f"neuron {int(bank.layout.max_index[r])} does not exist "
                                f"(only {n_components} components); rule skipped")
        for r in np.flatnonzero(valid):
            self._problem[int(where[r])] = ""

    def _check(self, index: int, dff: np.ndarray, spikes: np.ndarray,
               denoised: np.ndarray) -> np.ndarray:
        if self._last_index is not None and index <= self._last_index:
            raise TriggerInputError(f"frame index {index} does not follow {self._last_index}")
        arrays = (dff, spikes, denoised)
        for name, a in zip(("dff", "spikes", "denoised"), arrays, strict=True):
            if not isinstance(a, np.ndarray) or a.ndim != 1 or a.dtype.kind not in "fiu":
                raise TriggerInputError(f"{name} must be a 1-D numeric array, got "
                                        f"{getattr(a, 'shape', type(a).__name__)}")
        if not dff.shape == spikes.shape == denoised.shape:
            raise TriggerInputError(f"dff, spikes, denoised must have one value per component, "
                                    f"got lengths {len(dff)}, {len(spikes)}, {len(denoised)}")
        self._last_index = int(index)
        return np.stack(arrays)
