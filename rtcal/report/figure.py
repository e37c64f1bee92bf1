"""One-page report figure of a results file: footprints, traces, per-frame time."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from rtcal.report.timing import frame_times_ms
from rtcal.store import Results


def save_demo_figure(
    path: str | Path, results: Results, *, truth_footprints: np.ndarray | None = None
) -> Path:
    """Write a PNG: footprint outlines (estimates red, truth green), a raster of
    traces (each scaled to its own max), and a histogram of per-frame
    processing time. truth_footprints: optional float (K_true, H, W)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 3, figsize=(16, 5.2), gridspec_kw={"width_ratios": [1, 1.6, 0.9]})
    footprint_panel(axes[0], results.footprints, truth_footprints)
    raster_panel(axes[1], results)
    _timing_panel(axes[2], results)
    fig.tight_layout()
    path = Path(path)
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path


def footprint_panel(
    ax, footprints: np.ndarray, truth: np.ndarray | None, background: np.ndarray | None = None
) -> None:
    """Outlines (each footprint binarised at 0.2 x its max, as the evaluation does) of
    footprints (K, H, W) in red and truth (K_true, H, W) in green, on ``background``
    (H, W), e.g. the mean image; default: the footprints' maximum."""
    if background is None:
        background = footprints.max(axis=0) if len(footprints) else np.zeros((2, 2))
    lo, hi = np.percentile(background, [1, 99.5])
    ax.imshow(background, cmap="gray", vmin=lo, vmax=max(hi, lo + 1e-9))
    for fp in truth if truth is not None else ():
        ax.contour(fp >= 0.2 * fp.max(), [0.5], colors="lime", linewidths=0.7)
    for fp in footprints:
        if fp.max() > 0:
            ax.contour(fp >= 0.2 * fp.max(), [0.5], colors="red", linewidths=0.7)
    ax.set_title(
        f"{len(footprints)} footprints (red)" + (", truth green" if truth is not None else "")
    )
    ax.set_axis_off()


def raster_panel(ax, results: Results) -> None:
    """Denoised traces (K, T), each scaled to its max, against the frames' time in s
    (frame index / fps: a live run's first frame may not be frame 0)."""
    ax.set_xlabel("time (s)")
    ax.set_ylabel("component")
    ax.set_title("denoised traces, each scaled to its max")
    traces = np.nan_to_num(results.traces)
    if traces.size == 0:
        return
    scale = np.maximum(traces.max(axis=1, keepdims=True), 1e-9)
    first, last = results.frame_index[0], results.frame_index[-1] + 1
    ax.imshow(
        traces / scale,
        aspect="auto",
        cmap="magma",
        interpolation="nearest",
        extent=(first / results.fps_hz, last / results.fps_hz, traces.shape[0], 0),
    )


def _timing_panel(ax, results: Results) -> None:
    skip = int(results.attrs.get("init_frames", 0))
    ms = frame_times_ms(results.t_received_ns, results.t_done_ns, skip)
    if ms.size:
        ax.hist(ms, bins=60, color="steelblue")
        ax.axvline(np.median(ms), color="k", ls="--", lw=1)
        ax.set_title(f"ms per frame after init\nmedian {np.median(ms):.2f}, "
                     f"p99 {np.percentile(ms, 99):.2f}")
    ax.set_xlabel("ms")
    ax.set_yscale("log")
