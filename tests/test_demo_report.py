"""Pieces of `rtcal demo`: the engine config it writes, the HTML report, the live
summary and the progress panel (the whole demo runs in test_cli_run_demo.py)."""

import base64
import io
import json
import math
import sys

import numpy as np
import pytest
from rich.console import Console

from rtcal.cli.demo import engine_toml, trigger_rules
from rtcal.config import load_config
from rtcal.engine.config import EngineConfig
from rtcal.engine.latency import percentiles_ms
from rtcal.report.html import write_html_report
from rtcal.report.live_run import LiveRun, eval_table
from rtcal.report.progress import LiveProgress, progress_table
from rtcal.trigger import TriggerSet

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib


@pytest.mark.parametrize("n_neurons", [1, 6, 60, 500])
def test_engine_config_file_round_trips_and_its_rules_are_valid(tmp_path, n_neurons):
    results = tmp_path / 'odd "name" \\ dir' / "results.h5"
    rules = trigger_rules(n_neurons, 30.0)
    path = tmp_path / "engine.toml"
    path.write_text(engine_toml(results, rules))
    data = tomllib.loads(path.read_text())
    assert data["triggers"] == rules
    assert EngineConfig.from_section(data["engine"]).results_path == str(results)
    loaded = load_config(path)  # what `rtcal serve --config` reads
    assert loaded.sections["triggers"] == rules
    assert {"coincidence", "threshold"} == {r["kind"] for r in rules}
    assert len(TriggerSet.from_config(rules, 30.0).rules) == len(rules)  # valid rules


def test_the_ensemble_rule_fires_when_k_members_spike_together():
    rules = trigger_rules(60, 30.0)
    ens = rules[0]
    triggers = TriggerSet.from_config([ens], 30.0)
    K = 12
    quiet = np.zeros(K, np.float32)
    assert triggers.step(0, 0, quiet, quiet, quiet) == []
    spikes = quiet.copy()
    spikes[ens["neurons"][: ens["k"]]] = 1.0
    events = triggers.step(1, 0, quiet, spikes, quiet)
    assert [e.rule for e in events] == ["ensemble"]


def _run(latency_ms, n_warmup=3) -> LiveRun:
    ns = (np.asarray(latency_ms) * 1e6).astype(np.int64)
    counters = {
        "received": 10, "processed": 10, "dropped": 0, "dropped_ring": 0, "dropped_warmup": 0,
        "malformed": {"bad magic": 2}, "malformed_total": 2, "gap_frames": 1, "gaps": 1,
        "duplicates": 0, "out_of_order": 0, "events": 1,
    }  # fmt: skip
    return LiveRun(
        fps_hz=30.0,
        init_frames=3,
        detect_every_frames=50,
        n_sent=11,
        n_sender_dropped=1,
        n_results=10,
        n_warmup=n_warmup,
        latency_ms=np.asarray(latency_ms, np.float64),
        latency=percentiles_ms(ns),
        warmup_latency=percentiles_ms(np.array([5e8], np.int64)),
        event_latency=percentiles_ms(np.zeros(0, np.int64)),
        stages_ms={},
        counters=counters,
        events_by_rule={"ensemble": 1},
        n_warmup_events=1,
        redetect={"runs": 1, "skipped": 0, "failed": 0, "added": 2},
        redetect_frames=np.array([7]),
        init_seconds=0.5,
        stream_s=1.0,
    )


def test_live_run_json_has_no_nan_and_tables_say_what_happened():
    run = _run([], n_warmup=10)  # no steady-state result at all
    d = json.loads(json.dumps(run.to_dict(), allow_nan=False))
    assert d["latency_ms"]["n"] == 0 and d["latency_ms"]["p99_ms"] is None
    assert d["redetect"]["frames"] == [7]
    rows = dict(row for _, table in run.tables() for row in table)
    assert rows["steady state"] == "none"
    assert rows["malformed"] == "2 (bad magic 2)"
    assert rows["gaps"].startswith("1 (1 frames lost")
    assert rows["events"] == "1 (1 in warm-up)"
    run = _run([1.0, 2.0, 3.0, 40.0])
    rows = dict(row for _, table in run.tables() for row in table)
    assert (
        rows["steady state"].startswith("p50 2.50 ms")
        and "max 40.00 ms (4)" in rows["steady state"]
    )
    assert rows["warm-up (init window, backlog)"].startswith("p50 500 ms")


def test_html_report_embeds_the_figure_and_escapes_text(tmp_path):
    png = tmp_path / "fig.png"
    png.write_bytes(b"\x89PNG fake bytes")
    report = {
        "n_est": 3, "n_true": 4, "f1": 0.5, "precision": 0.6, "recall": 0.4,
        "caiman": {"f1": 0.55}, "median_trace_corr": None, "n_trace_corr": 0,
    }  # fmt: skip
    page = write_html_report(
        tmp_path / "r.html",
        title="a <b> & c",
        figure_png=png,
        tables=[("t", [("<script>", "x & y")]), eval_table(report)],
        notes=["note <i>"],
    ).read_text()
    assert "<script>" not in page and "&lt;script&gt;" in page and "x &amp; y" in page
    assert "a &lt;b&gt; &amp; c" in page and "note &lt;i&gt;" in page
    data = page.split("data:image/png;base64,")[1].split('"')[0]
    assert base64.b64decode(data) == png.read_bytes()
    assert "0.500 (precision 0.600, recall 0.400)" in page and "n/a" in page
    assert 'src="http' not in page and "<link" not in page  # nothing external


def test_progress_panel_renders_before_and_after_warm_up():
    def render(p50):
        p = LiveProgress(
            elapsed_s=3.0, state="initialising", n_total=100, n_sent=40, n_sender_dropped=0,
            n_processed=10, n_results=10, n_components=0, p50_ms=p50, p99_ms=2 * p50,
            n_dropped=0, n_gap_frames=0, n_malformed=1, redetect_runs=0, redetect_added=0,
            n_events=0,
        )  # fmt: skip
        out = io.StringIO()
        Console(file=out, width=120).print(progress_table(p))
        return out.getvalue()

    assert "warming up" in render(math.nan)
    text = render(1.5)
    assert "p50 1.50 ms, p99 3.00 ms" in text and "40/100 sent" in text and "1 malformed" in text
