"""One-page figure of a live run: footprints on the mean image, the raster of traces
with detector re-runs marked, the end-to-end latency histogram, the counters."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from rtcal.report.figure import footprint_panel, raster_panel
from rtcal.report.live_run import LiveRun, Rows
from rtcal.store import Results


def save_live_figure(
    path: str | Path,
    results: Results,
    run: LiveRun,
    *,
    mean_image: np.ndarray,
    truth_footprints: np.ndarray | None = None,
    extra_tables: list[tuple[str, Rows]] = (),
) -> Path:
    """Write a PNG. mean_image: float (H, W) mean of the frames sent; truth_footprints:
    optional float (K_true, H, W); extra_tables: more headed rows for the text panel
    (e.g. the evaluation)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig = plt.figure(figsize=(17, 9.5))
    grid = fig.add_gridspec(2, 3, width_ratios=[1, 1, 1.15], height_ratios=[1, 0.85])
    footprint_panel(fig.add_subplot(grid[0, 0]), results.footprints, truth_footprints, mean_image)
    raster = fig.add_subplot(grid[0, 1:])
    raster_panel(raster, results)
    mark_run(raster, results, run)
    latency_panel(fig.add_subplot(grid[1, 0]), run)
    text = fig.add_subplot(grid[1, 1:])
    tables_panel(text, [*run.tables(), *extra_tables])
    fig.tight_layout()
    path = Path(path)
    fig.savefig(path, dpi=80)
    plt.close(fig)
    return path


def mark_run(ax, results: Results, run: LiveRun) -> None:
    """On a raster against time (s): the initialisation window shaded, each detector
    re-run a dashed cyan line, each component added after initialisation (by a
    re-run or the online search) a cyan marker at its first frame."""
    fps = results.fps_hz
    ax.axvspan(0, run.init_frames / fps, color="white", alpha=0.15, lw=0, label="initialisation")
    for i, frame in enumerate(run.redetect_frames.tolist()):
        ax.axvline(
            frame / fps, color="cyan", ls="--", lw=1, label="detector re-run" if i == 0 else None
        )
    if results.n_frames and results.n_components:
        born = results.frame_index[np.clip(results.born_frame, 0, results.n_frames - 1)]
        late = np.flatnonzero(born >= run.init_frames)
        ax.plot(born[late] / fps, late + 0.5, "c>", ms=4, label="component added")
    ax.legend(loc="lower left", fontsize=8, framealpha=0.7)
    ax.set_title(
        f"denoised traces of {results.n_components} components, each scaled to its max; "
        f"{run.redetect['runs']} detector re-runs (every {run.detect_every_frames} frames)"
    )


def latency_panel(ax, run: LiveRun) -> None:
    """Histogram of the steady-state end-to-end latency with p50, p99 and max marked."""
    ms = run.latency_ms
    ax.set_xlabel("ms: sender's timestamp -> result received by the listener")
    ax.set_ylabel("frames")
    if ms.size == 0:
        ax.set_title("no steady-state results")
        return
    ax.hist(ms, bins=60, color="steelblue")
    lat = run.latency
    for key, style in (("p50_ms", "-"), ("p99_ms", "--"), ("max_ms", ":")):
        ax.axvline(lat[key], color="k", ls=style, lw=1, label=f"{key[:-3]} {lat[key]:.2f} ms")
    ax.set_yscale("log")
    ax.legend(fontsize=8)
    ax.set_title(f"end-to-end latency, {ms.size} frames after warm-up")


def tables_panel(ax, tables: list[tuple[str, Rows]]) -> None:
    """Headed (label, value) tables as monospaced text, in two columns."""
    ax.set_axis_off()
    half = (len(tables) + 1) // 2
    for col, chunk in enumerate((tables[:half], tables[half:])):
        lines = []
        for heading, rows in chunk:
            lines.append(heading.upper())
            lines += [f"  {label:<32} {value}" for label, value in rows]
            lines.append("")
        ax.text(
            0.53 * col,
            1.0,
            "\n".join(lines),
            family="monospace",
            fontsize=7.5,
            va="top",
            transform=ax.transAxes,
        )
