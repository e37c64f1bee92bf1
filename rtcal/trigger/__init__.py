"""Closed-loop trigger rules: per-frame outputs in, events out.

``TriggerSet.from_config(rules, fps_hz)`` builds the rules from tables (the
``[[triggers]]`` tables of a TOML config, or JSON objects over the control
socket); ``step(index, t_ns, dff, spikes, denoised)`` runs once per frame and
returns the ``TriggerEvent``s that frame fired. Components are indexed as the
engine publishes them (0 .. K-1; K may grow, indices never change).

Rule tables. Every rule has:

    name          string, unique in the set, at most 64 bytes (it travels in events)
    kind          "threshold" | "coincidence" | "template"
    refractory_s  seconds after firing during which the rule cannot fire again
                  (default 0; ceil(refractory_s * fps_hz) frames)

kind = "threshold": a neuron's signal crosses a level upward.

    neurons       [i, ...]  fires when any of them crosses (event: those that crossed)
    threshold     level (dF/F units for signal "dff")
    signal        "dff" (default) | "denoised" | "spikes"

kind = "coincidence": k of a set of neurons spike within a window of frames.

    neurons       [i, ...]  the set (n neurons)
    k             1 <= k <= n
    window_frames the window, frames (t - window_frames, t]; fires at the frame that
                  completes the coincidence (event: the neurons that spiked in it)
    spike_min     a neuron spikes when its inferred spike > spike_min (default 0)

kind = "template": the population vector matches a pattern.

    template      [u_0, ...] the pattern (not all zero)
    neurons       [i, ...]  same length as template (default 0 .. len(template) - 1)
    threshold     cosine similarity in [-1, 1]; fires on every frame where
                  cos(x, template) >= threshold (use refractory_s against repeats)
    signal        "dff" (default) | "denoised" | "spikes"
    min_norm      the vector's norm must also be >= min_norm (default 0)

Bad tables raise ``TriggerConfigError`` (unknown kind or key, missing key,
negative refractory, k > n, ...). A neuron index that does not exist yet is
not a config error: the rule is skipped on such frames and ``status()`` says
why. See docs/triggers.md for a TOML example.
"""

from rtcal.trigger.config import (
    CoincidenceRule,
    TemplateRule,
    ThresholdRule,
    TriggerConfigError,
)
from rtcal.trigger.event import TriggerEvent
from rtcal.trigger.triggerset import TriggerInputError, TriggerSet

__all__ = [
    "CoincidenceRule",
    "TemplateRule",
    "ThresholdRule",
    "TriggerConfigError",
    "TriggerEvent",
    "TriggerInputError",
    "TriggerSet",
]
