"""Trigger rules: hand-made traces, refractory, window edges, templates, growing K,
config errors, and the vectorised banks against a plain per-rule reference."""

import json
import math
import pathlib
import re

import numpy as np
import pytest

from rtcal.trigger import TriggerConfigError, TriggerInputError, TriggerSet
from rtcal.trigger.random_rules import random_rules

FPS = 30.0


def _run(rules, dff=None, spikes=None, denoised=None, start=0):
    """Step a TriggerSet through (T, K) traces; return {rule: [(frame, neurons)]}."""
    base = next(a for a in (dff, spikes, denoised) if a is not None)
    zeros = np.zeros_like(base, dtype=np.float32)
    dff, spikes, denoised = (zeros if a is None else np.asarray(a, np.float32)
                             for a in (dff, spikes, denoised))
    ts = TriggerSet.from_config(rules, FPS)
    out = {r["name"]: [] for r in rules}
    for t in range(len(base)):
        for e in ts.step(start + t, 1000 * t, dff[t], spikes[t], denoised[t]):
            assert e.frame == start + t and e.t_ns == 1000 * t
            assert e.neurons.dtype == np.int64
            out[e.rule].append((e.frame, e.neurons.tolist()))
    return out, ts


def _col(values, k=0, n=3):
    """A (T, n) trace with ``values`` in column k, zeros elsewhere."""
    x = np.zeros((len(values), n), np.float32)
    x[:, k] = values
    return x


def test_threshold_fires_on_upward_crossings_only():
    dff = _col([0.6, 0.2, 0.6, 0.7, 0.3, 0.8, 0.9, np.nan, 0.6], k=1)
    rule = {"name": "up", "kind": "threshold", "neurons": [1], "threshold": 0.5}
    events, ts = _run([rule], dff)
    # frame 0 has no "before"; NaN at 7 counts as below, so 8 is a crossing.
    assert events["up"] == [(2, [1]), (5, [1]), (8, [1])]
    assert ts.status()[0]["n_fired"] == 3


def test_threshold_any_of_a_set_reports_who_crossed():
    dff = np.array([[0, 0, 0], [1, 0, 1], [1, 1, 1], [0, 0, 0], [0, 1, 1]], np.float32)
    rule = {"name": "any", "kind": "threshold", "neurons": [0, 2], "threshold": 0.5}
    events, _ = _run([rule], dff)
    assert events["any"] == [(1, [0, 2]), (4, [2])]


def test_threshold_on_another_signal():
    denoised = _col([0, 5, 0, 5])
    rule = {"name": "c", "kind": "threshold", "neurons": [0], "threshold": 4,
            "signal": "denoised"}
    events, _ = _run([rule], dff=np.zeros((4, 3)), denoised=denoised)
    assert events["c"] == [(1, [0]), (3, [0])]


@pytest.mark.parametrize(("refractory_s", "expected"), [
    (0.0, [2, 4, 6, 8]),
    (2 / FPS, [2, 4, 6, 8]),  # exactly 2 frames: the next crossing is allowed
    (2.5 / FPS, [2, 6]),  # ceil -> 3 frames
    (5 / FPS, [2, 8]),
])
def test_refractory_suppresses_repeats(refractory_s, expected):
    dff = _col([0, 0, 1, 0, 1, 0, 1, 0, 1])
    rule = {"name": "r", "kind": "threshold", "neurons": [0], "threshold": 0.5,
            "refractory_s": refractory_s}
    events, ts = _run([rule], dff)
    assert [f for f, _ in events["r"]] == expected
    assert ts.status()[0]["n_suppressed"] == 4 - len(expected)


def _spikes(T, n, at):
    """(T, n) spike trains with 1.0 at the listed (frame, neuron) pairs."""
    s = np.zeros((T, n), np.float32)
    for frame, neuron in at:
        s[frame, neuron] = 1.0
    return s


@pytest.mark.parametrize(("gap", "fires"), [(4, True), (5, False)])
def test_coincidence_window_edges(gap, fires):
    rule = {"name": "co", "kind": "coincidence", "neurons": [0, 1, 2], "k": 2,
            "window_frames": 5}
    events, _ = _run([rule], spikes=_spikes(30, 3, [(10, 0), (10 + gap, 1)]))
    assert events["co"] == ([(10 + gap, [0, 1])] if fires else [])


def test_coincidence_fires_when_completed_and_lists_the_spikers():
    rule = {"name": "co", "kind": "coincidence", "neurons": [1, 3, 4, 6], "k": 3,
            "window_frames": 10}
    at = [(2, 1), (5, 3), (8, 5), (9, 4), (10, 6), (30, 1), (30, 3), (30, 4)]
    events, _ = _run([rule], spikes=_spikes(40, 8, at))
    # 9 completes {1, 3, 4}; 10 adds 6 (a new completion); 5 is not in the set;
    # 30: three spike together.
    assert events["co"] == [(9, [1, 3, 4]), (10, [1, 3, 4, 6]), (30, [1, 3, 4])]


def test_coincidence_spike_min_and_refractory():
    s = _spikes(20, 2, [(3, 0), (3, 1), (5, 0), (5, 1)])
    s[12] = [0.05, 0.05]
    rule = {"name": "co", "kind": "coincidence", "neurons": [0, 1], "k": 2,
            "window_frames": 1, "spike_min": 0.1, "refractory_s": 3 / FPS}
    events, ts = _run([rule], spikes=s)
    assert events["co"] == [(3, [0, 1])]  # 5 is refractory; 12 is below spike_min
    assert ts.status()[0]["n_suppressed"] == 1


def test_template_match():
    x = np.array([[1, 0.1, 0.9], [0, 1, 0], [0, 0, 0], [2, 0, 2], [0.1, 0, 0.1]], np.float32)
    rule = {"name": "tp", "kind": "template", "template": [1, 0, 1], "threshold": 0.95}
    events, _ = _run([rule], x)
    assert [f for f, _ in events["tp"]] == [0, 3, 4]
    assert events["tp"][0][1] == [0, 1, 2]
    rule["min_norm"] = 0.5  # frame 4's vector is too small
    events, _ = _run([rule], x)
    assert [f for f, _ in events["tp"]] == [0, 3]
    ts = TriggerSet.from_config([rule], FPS)
    cos, norm = ts._banks[0][0].similarity(np.stack([x[0], x[0], x[0]]))
    want = (1 + 0.9) / (math.sqrt(2) * math.sqrt(1 + 0.01 + 0.81))
    assert cos[0] == pytest.approx(want, rel=1e-6)


def test_template_on_chosen_neurons_with_refractory():
    x = np.zeros((10, 6), np.float32)
    x[2:8, 5] = 1.0  # a lasting match of neuron 5 alone, neuron 1 silent
    rule = {"name": "tp", "kind": "template", "neurons": [5, 1], "template": [1, 0],
            "threshold": 0.99, "refractory_s": 4 / FPS}
    events, _ = _run([rule], x)
    assert [f for f, _ in events["tp"]] == [2, 6]
    assert events["tp"][0][1] == [5, 1]


def test_growing_components_skip_then_resume():
    rules = [
        {"name": "th", "kind": "threshold", "neurons": [0, 4], "threshold": 0.5},
        {"name": "co", "kind": "coincidence", "neurons": [1, 5], "k": 2, "window_frames": 3},
        {"name": "tp", "kind": "template", "template": [0, 0, 0, 0, 1], "threshold": 0.9},
    ]
    ts = TriggerSet.from_config(rules, FPS)
    fired = []
    for t in range(10):
        # no components at all at first: an initialisation that found none (a rule
        # naming neuron 0 crashed the engine's frame loop with an IndexError)
        K = 0 if t < 2 else 3 if t < 6 else 8
        dff = np.zeros(K, np.float32)
        spikes = np.zeros(K, np.float32)
        if K and t in (4, 5, 8):
            dff[:] = 1.0 if t != 8 else 0.0
            dff[4 % K] = 1.0
        if t == 7:
            dff[:] = 0.0
        if t in (4, 8):
            spikes[1] = 1.0
            spikes[min(5, K - 1)] = 1.0
        events = ts.step(t, t, dff, spikes, dff)
        fired += [(e.rule, e.frame) for e in events]
        if t == 5:
            status = {s["name"]: s for s in ts.status()}
            assert all(status[n]["n_skipped"] == 6 for n in ("th", "co", "tp"))
            assert "neuron 5 does not exist (only 3 components)" in status["co"]["problem"]
    # After K grew to 8: th is above at 6 (first seen, no crossing), below at 7, up at 8;
    # co completes at 8; tp matches at 8 (only neuron 4 active among 0..4).
    assert fired == [("th", 8), ("co", 8), ("tp", 8)]
    assert all(s["problem"] == "" for s in ts.status())


@pytest.mark.parametrize(("table", "message"), [
    ({"name": "a", "kind": "burst", "neurons": [0]}, "unknown kind 'burst'"),
    ({"name": "a", "kind": "threshold", "neurons": [0], "threshold": 1, "thresh": 2},
     r"unknown key\(s\) \['thresh'\]"),
    ({"name": "a", "kind": "threshold", "neurons": [0]}, r"missing key\(s\) \['threshold'\]"),
    ({"name": "a", "kind": "threshold", "neurons": [0], "threshold": 1, "refractory_s": -1},
     "'refractory_s' must be a finite number in"),
    ({"name": "a", "kind": "coincidence", "neurons": [0, 1], "k": 3, "window_frames": 2},
     "k=3 exceeds the 2 neurons"),
    ({"name": "a", "kind": "coincidence", "neurons": [0, 1], "k": 0, "window_frames": 2},
     "'k' must be an integer >= 1"),
    ({"name": "a", "kind": "coincidence", "neurons": [0, 1], "k": 1, "window_frames": 0},
     "'window_frames' must be an integer >= 1"),
    ({"name": "a", "kind": "threshold", "neurons": [], "threshold": 1}, "non-empty list"),
    ({"name": "a", "kind": "threshold", "neurons": [2, 2], "threshold": 1}, "twice"),
    ({"name": "a", "kind": "threshold", "neurons": [-1], "threshold": 1}, "integer >= 0"),
    ({"name": "a", "kind": "threshold", "neurons": [True], "threshold": 1}, "integer >= 0"),
    ({"name": "a", "kind": "threshold", "neurons": [0], "threshold": float("nan")},
     "'threshold' must be a finite number"),
    ({"name": "a", "kind": "threshold", "neurons": [0], "threshold": 1, "signal": "raw"},
     "'signal' must be one of"),
    ({"name": "a", "kind": "template", "template": [0, 0], "threshold": 0.5}, "all zeros"),
    ({"name": "a", "kind": "template", "template": [1, 0], "neurons": [1], "threshold": 0.5},
     "has 2 values but 'neurons' lists 1"),
    ({"name": "a", "kind": "template", "template": [1, 0], "threshold": 1.5},
     r"in \[-1.0, 1.0\]"),
    ({"name": "", "kind": "threshold", "neurons": [0], "threshold": 1}, "non-empty string"),
    ({"name": "x" * 65, "kind": "threshold", "neurons": [0], "threshold": 1}, "64 bytes"),
    (["not", "a", "table"], "must be a table"),
])
def test_config_errors_name_the_problem(table, message):
    with pytest.raises(TriggerConfigError, match=message):
        TriggerSet.from_config([table], FPS)


def test_set_level_config_errors():
    rule = {"name": "a", "kind": "threshold", "neurons": [0], "threshold": 1}
    with pytest.raises(TriggerConfigError, match=r"unique; repeated: \['a'\]"):
        TriggerSet.from_config([rule, dict(rule)], FPS)
    with pytest.raises(TriggerConfigError, match="fps_hz"):
        TriggerSet.from_config([rule], 0.0)
    with pytest.raises(TriggerConfigError, match="list of tables"):
        TriggerSet.from_config(rule, FPS)
    ts = TriggerSet.from_config([rule], FPS)
    with pytest.raises(TriggerConfigError):
        ts.set_rules([{"name": "b", "kind": "threshold"}])
    assert ts.describe()[0]["name"] == "a"  # a failed replacement changes nothing
    ts.clear()
    assert ts.describe() == [] and ts.step(0, 0, *(np.zeros(2),) * 3) == []


def test_step_input_errors():
    ts = TriggerSet.from_config([], FPS)
    with pytest.raises(TriggerInputError, match="one value per component"):
        ts.step(0, 0, np.zeros(3), np.zeros(2), np.zeros(3))
    with pytest.raises(TriggerInputError, match="1-D numeric"):
        ts.step(0, 0, np.zeros((3, 1)), np.zeros(3), np.zeros(3))
    ts.step(5, 0, np.zeros(3), np.zeros(3), np.zeros(3))
    with pytest.raises(TriggerInputError, match="does not follow 5"):
        ts.step(5, 0, np.zeros(3), np.zeros(3), np.zeros(3))


def test_describe_round_trips_through_json():
    rules = [
        {"name": "th", "kind": "threshold", "neurons": [3, 1], "threshold": 0.4,
         "refractory_s": 0.5},
        {"name": "co", "kind": "coincidence", "neurons": [1, 2, 3], "k": 2, "window_frames": 4},
        {"name": "tp", "kind": "template", "template": [0.5, -1, 2], "threshold": 0.8,
         "signal": "denoised", "min_norm": 0.1},
    ]
    ts = TriggerSet.from_config(rules, FPS)
    described = json.loads(json.dumps(ts.describe()))
    again = TriggerSet.from_config(described, FPS)
    assert again.describe() == described
    assert [r["kind"] for r in described] == ["threshold", "coincidence", "template"]
    assert described[2]["neurons"] == [0, 1, 2]  # the default, made explicit


def test_docs_example_parses():
    tomllib = pytest.importorskip("tomllib")
    doc = pathlib.Path(__file__).parents[1] / "docs" / "triggers.md"
    block = re.search(r"```toml\n(.*?)```", doc.read_text(), re.S).group(1)
    tables = tomllib.loads(block)["triggers"]
    ts = TriggerSet.from_config(tables, FPS)
    assert len(ts) == len(tables) >= 3


# --- the vectorised banks against a plain per-rule reference ---------------------------


def _reference(rules, signals_by_frame):
    """Plain, rule-by-rule semantics of the rtcal.trigger docstring."""
    names = {"dff": 0, "spikes": 1, "denoised": 2}
    events = []
    state = [dict(last=-(10**9), above={}, spiked={}) for _ in rules]
    for t, sig in enumerate(signals_by_frame):
        K = sig.shape[1]
        for rule, st in zip(rules, state, strict=True):
            neurons = rule.get("neurons", list(range(len(rule.get("template", [])))))
            if max(neurons) >= K:
                continue
            hit = None
            if rule["kind"] == "threshold":
                x = sig[names[rule.get("signal", "dff")]]
                up = [i for i in neurons if i in st["above"] and not st["above"][i]
                      and x[i] >= rule["threshold"]]
                for i in neurons:
                    st["above"][i] = bool(x[i] >= rule["threshold"])
                hit = up or None
            elif rule["kind"] == "coincidence":
                now = [i for i in neurons if sig[1, i] > rule.get("spike_min", 0.0)]
                for i in now:
                    st["spiked"][i] = t
                recent = [i for i in neurons
                          if t - st["spiked"].get(i, -(10**9)) < rule["window_frames"]]
                hit = recent if now and len(recent) >= rule["k"] else None
            else:
                x = sig[names[rule.get("signal", "dff")]][neurons].astype(np.float64)
                u = np.asarray(rule["template"], np.float64)
                nx = np.linalg.norm(x)
                if nx > 0 and nx >= rule.get("min_norm", 0.0):
                    if x @ u / (nx * np.linalg.norm(u)) >= rule["threshold"]:
                        hit = list(neurons)
            refractory = math.ceil(rule.get("refractory_s", 0.0) * FPS - 1e-9)
            if hit is not None and t - st["last"] >= refractory:
                st["last"] = t
                events.append((rule["name"], t, sorted(hit)))
    return events




def test_banks_match_plain_reference():
    rng = np.random.default_rng(7)
    rules = random_rules(rng, 30, 40)
    frames = []
    for t in range(400):
        K = 25 if t < 150 else 40  # some rules wait for their neurons
        sig = rng.random((3, K)).astype(np.float32)
        sig[1] = np.where(rng.random(K) < 0.1, rng.random(K), 0.0)
        frames.append(sig)
    ts = TriggerSet.from_config(rules, FPS)
    got = []
    for t, sig in enumerate(frames):
        got += [(e.rule, e.frame, sorted(e.neurons.tolist()))
                for e in ts.step(t, t, sig[0], sig[1], sig[2])]
    want = _reference(rules, frames)
    assert len(want) > 200
    assert sorted(got, key=lambda e: (e[1], int(e[0][1:]))) == want
