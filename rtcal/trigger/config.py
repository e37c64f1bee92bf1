"""Trigger rule settings: one frozen dataclass per kind, built from and back to dicts.

``parse_rules(tables, fps_hz)`` is the one place that reads rule tables (from
TOML ``[[triggers]]`` or the control socket); it validates everything it can
without data and raises ``TriggerConfigError`` naming the rule and the key.
``rule_to_dict`` writes a rule back as a JSON-serialisable table that parses
to the same rule. The schema is in the ``rtcal.trigger`` docstring.
"""

from __future__ import annotations

import math
from dataclasses import MISSING, dataclass, fields

from rtcal.errors import RtcalError

SIGNALS = ("dff", "spikes", "denoised")  # TriggerSet.step's per-neuron inputs
MAX_NAME_BYTES = 64  # a rule name travels in every event (rtcal.net.events)


class TriggerConfigError(RtcalError, ValueError):
    """A trigger rule table is invalid; the message names the rule and the key."""


@dataclass(frozen=True)
class ThresholdRule:
    """Fires when ``signal`` of any of ``neurons`` crosses ``threshold`` upward
    (below at its previous step, >= now)."""

    name: str
    neurons: tuple[int, ...]
    threshold: float
    refractory_s: float = 0.0
    signal: str = "dff"
    kind = "threshold"


@dataclass(frozen=True)
class CoincidenceRule:
    """Fires when at least ``k`` of ``neurons`` have spiked (spikes > ``spike_min``)
    within the last ``window_frames`` frames, the current frame included, and one
    of them spikes in the current frame."""

    name: str
    neurons: tuple[int, ...]
    k: int
    window_frames: int
    refractory_s: float = 0.0
    spike_min: float = 0.0
    kind = "coincidence"


@dataclass(frozen=True)
class TemplateRule:
    """Fires while the cosine similarity between ``signal`` of ``neurons`` (default
    0 .. len(template) - 1) and ``template`` is >= ``threshold`` and the vector's
    norm is >= ``min_norm``."""

    name: str
    template: tuple[float, ...]
    threshold: float
    neurons: tuple[int, ...] = ()
    refractory_s: float = 0.0
    signal: str = "dff"
    min_norm: float = 0.0
    kind = "template"


Rule = ThresholdRule | CoincidenceRule | TemplateRule
KINDS: dict[str, type] = {c.kind: c for c in (ThresholdRule, CoincidenceRule, TemplateRule)}


def refractory_frames(rule: Rule, fps_hz: float) -> int:
    """The refractory period in frames, rounded up: ceil(refractory_s * fps_hz)."""
    return int(math.ceil(rule.refractory_s * fps_hz - 1e-9))


def check_fps(fps_hz: object) -> float:
    if isinstance(fps_hz, bool) or not isinstance(fps_hz, (int, float)) or not (
        math.isfinite(fps_hz) and fps_hz > 0
    ):
        raise TriggerConfigError(f"fps_hz must be a positive number, got {fps_hz!r}")
    return float(fps_hz)


def parse_rules(tables: list[dict], fps_hz: float) -> list[Rule]:
    """Validate rule tables (a list of dicts) and build their rules, in order."""
    check_fps(fps_hz)
    if not isinstance(tables, (list, tuple)):
        raise TriggerConfigError(f"trigger rules must be a list of tables, got "
                                 f"{type(tables).__name__}")
    rules = [parse_rule(t, i) for i, t in enumerate(tables)]
    names = [r.name for r in rules]
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise TriggerConfigError(f"trigger rule names must be unique; repeated: {duplicates}")
    return rules


def parse_rule(table: dict, position: int = 0) -> Rule:
    """One rule table -> its rule (see the ``rtcal.trigger`` docstring for the keys)."""
    where = f"trigger rule #{position}"
    if not isinstance(table, dict):
        raise TriggerConfigError(f"{where} must be a table (dict), got {type(table).__name__}")
    name = table.get("name")
    if not isinstance(name, str) or not name or len(name.encode()) > MAX_NAME_BYTES:
        raise TriggerConfigError(f"{where}: 'name' must be a non-empty string of at most "
                                 f"{MAX_NAME_BYTES} bytes, got {name!r}")
    where = f"trigger rule {name!r}"
    kind = table.get("kind")
    if kind not in KINDS:
        raise TriggerConfigError(f"{where}: unknown kind {kind!r}; expected one of {list(KINDS)}")
    cls = KINDS[kind]
    known = {f.name for f in fields(cls)}
    unknown = sorted(set(table) - known - {"kind"})
    if unknown:
        raise TriggerConfigError(f"{where}: unknown key(s) {unknown} for kind {kind!r}; "
                                 f"allowed: {sorted(known)}")
    required = [f.name for f in fields(cls) if f.default is MISSING]
    missing = [k for k in required if k not in table]
    if missing:
        raise TriggerConfigError(f"{where}: missing key(s) {missing} for kind {kind!r}")
    values = {k: v for k, v in table.items() if k != "kind"}
    return _CHECKS[kind](where, values)


def _number(where: str, key: str, value: object, low: float = -math.inf,
            high: float = math.inf) -> float:
    ok = not isinstance(value, bool) and isinstance(value, (int, float))
    if not ok or not math.isfinite(value) or not low <= value <= high:
        bounds = f" in [{low}, {high}]" if math.isfinite(low) or math.isfinite(high) else ""
        raise TriggerConfigError(f"{where}: {key!r} must be a finite number{bounds}, "
                                 f"got {value!r}")
    return float(value)


def _integer(where: str, key: str, value: object, low: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < low:
        raise TriggerConfigError(f"{where}: {key!r} must be an integer >= {low}, got {value!r}")
    return int(value)


def _neurons(where: str, value: object) -> tuple[int, ...]:
    if not isinstance(value, (list, tuple)) or not value:
        raise TriggerConfigError(f"{where}: 'neurons' must be a non-empty list of component "
                                 f"indices, got {value!r}")
    out = tuple(_integer(where, "neurons", v, 0) for v in value)
    if len(set(out)) != len(out):
        raise TriggerConfigError(f"{where}: 'neurons' lists a component twice: {list(out)}")
    return out


def _signal(where: str, value: object) -> str:
    if value not in SIGNALS:
        raise TriggerConfigError(f"{where}: 'signal' must be one of {list(SIGNALS)}, "
                                 f"got {value!r}")
    return str(value)


def _refractory(where: str, values: dict) -> float:
    return _number(where, "refractory_s", values.get("refractory_s", 0.0), low=0.0)


def _threshold(where: str, v: dict) -> ThresholdRule:
    return ThresholdRule(
        name=v["name"],
        neurons=_neurons(where, v["neurons"]),
        threshold=_number(where, "threshold", v["threshold"]),
        refractory_s=_refractory(where, v),
        signal=_signal(where, v.get("signal", "dff")),
    )


def _coincidence(where: str, v: dict) -> CoincidenceRule:
    neurons = _neurons(where, v["neurons"])
    k = _integer(where, "k", v["k"], 1)
    if k > len(neurons):
        raise TriggerConfigError(f"{where}: k={k} exceeds the {len(neurons)} neurons listed")
    return CoincidenceRule(
        name=v["name"],
        neurons=neurons,
        k=k,
        window_frames=_integer(where, "window_frames", v["window_frames"], 1),
        refractory_s=_refractory(where, v),
        spike_min=_number(where, "spike_min", v.get("spike_min", 0.0), low=0.0),
    )


def _template(where: str, v: dict) -> TemplateRule:
    raw = v["template"]
    if not isinstance(raw, (list, tuple)) or not raw:
        raise TriggerConfigError(f"{where}: 'template' must be a non-empty list of numbers, "
                                 f"got {raw!r}")
    template = tuple(_number(where, "template", x) for x in raw)
    if not any(template):
        raise TriggerConfigError(f"{where}: 'template' is all zeros (no direction to match)")
    neurons = _neurons(where, v["neurons"]) if "neurons" in v else tuple(range(len(template)))
    if len(neurons) != len(template):
        raise TriggerConfigError(f"{where}: 'template' has {len(template)} values but "
                                 f"'neurons' lists {len(neurons)}")
    return TemplateRule(
        name=v["name"],
        template=template,
        threshold=_number(where, "threshold", v["threshold"], low=-1.0, high=1.0),
        neurons=neurons,
        refractory_s=_refractory(where, v),
        signal=_signal(where, v.get("signal", "dff")),
        min_norm=_number(where, "min_norm", v.get("min_norm", 0.0), low=0.0),
    )


_CHECKS = {"threshold": _threshold, "coincidence": _coincidence, "template": _template}


def rule_to_dict(rule: Rule) -> dict:
    """The rule as a JSON-serialisable table that ``parse_rule`` turns back into it."""
    out: dict = {"name": rule.name, "kind": rule.kind}
    for f in fields(rule):
        value = getattr(rule, f.name)
        out[f.name] = list(value) if isinstance(value, tuple) else value
    return out
