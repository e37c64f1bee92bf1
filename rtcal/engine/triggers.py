"""The trigger rules as the engine holds them: one TriggerSet behind a lock, stepped
by the frame loop and replaced or cleared by the control thread."""

from __future__ import annotations

import threading

import numpy as np


class TriggerBox:
    """rules: list of rule tables (see ``rtcal.trigger``); fps_hz: for rule windows."""

    def __init__(self, rules: list[dict], fps_hz: float) -> None:
        from rtcal.trigger import TriggerSet

        self._set = TriggerSet.from_config(list(rules), fps_hz)
        self._lock = threading.Lock()

    def step(
        self, index: int, t_ns: int, dff: np.ndarray, spikes: np.ndarray, denoised: np.ndarray
    ) -> list:
        """Events (``rtcal.trigger.TriggerEvent``) fired by this frame."""
        with self._lock:
            return self._set.step(index, t_ns, dff, spikes, denoised)

    def set_rules(self, rules: list[dict]) -> list[dict]:
        """Replace all rules (TriggerConfigError, an RtcalError, if any is bad)."""
        with self._lock:
            self._set.set_rules(list(rules))
            return self._set.describe()

    def clear(self) -> None:
        with self._lock:
            self._set.clear()

    def describe(self) -> list[dict]:
        with self._lock:
            return self._set.describe()

    def status(self) -> list[dict]:
        """Per rule: fired, suppressed (refractory), skipped and why (``TriggerSet.status``)."""
        with self._lock:
            return self._set.status()
