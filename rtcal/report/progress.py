"""What ``rtcal demo`` prints (rich): the live progress panel, from one snapshot of
the run, and the final tables."""

from __future__ import annotations

import math
from dataclasses import dataclass


@dataclass(frozen=True)
class LiveProgress:
    """One snapshot. state: the engine's (initialising, catching up, running, ...);
    n_total: frames the microscope will send; latency p50/p99 (ms, NaN before any
    steady-state result): sender -> listener, so far; the rest are counts so far."""

    elapsed_s: float
    state: str
    n_total: int
    n_sent: int
    n_sender_dropped: int
    n_processed: int
    n_results: int
    n_components: int
    p50_ms: float
    p99_ms: float
    n_dropped: int
    n_gap_frames: int
    n_malformed: int
    redetect_runs: int
    redetect_added: int
    n_events: int


def progress_table(p: LiveProgress):
    """A two-column rich Table of the snapshot."""
    from rich.table import Table

    table = Table(title=f"rtcal demo: live engine on loopback, {p.elapsed_s:.0f} s", min_width=60)
    table.add_column("", style="bold")
    table.add_column("", justify="left")
    table.add_row("engine", p.state)
    table.add_row(
        "frames",
        f"{p.n_sent}/{p.n_total} sent, {p.n_processed} processed, "
        f"{p.n_results} results at the listener",
    )
    table.add_row("neurons found", str(p.n_components))
    if math.isnan(p.p50_ms):
        table.add_row("latency", "warming up")
    else:
        table.add_row("latency", f"p50 {p.p50_ms:.2f} ms, p99 {p.p99_ms:.2f} ms so far")
    table.add_row(
        "drops",
        f"{p.n_dropped} in the engine, {p.n_sender_dropped} at the sender, "
        f"{p.n_gap_frames} lost, {p.n_malformed} malformed",
    )
    table.add_row("detector re-runs", f"{p.redetect_runs} ({p.redetect_added} components added)")
    table.add_row("trigger events", str(p.n_events))
    return table


def print_tables(console, tables) -> None:
    """Headed (label, value) tables (``LiveRun.tables``) as rich tables."""
    from rich.table import Table

    for heading, rows in tables:
        table = Table(title=heading, show_header=False, title_justify="left", min_width=60)
        table.add_column(style="bold")
        table.add_column()
        for label, value in rows:
            table.add_row(label, value)
        console.print(table)
