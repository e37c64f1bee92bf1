"""Compare a simulated 2p movie with the real Neurofinder crop, side by side.

    python tools/compare_real.py [--real-dir DIR] [--figure PATH] [--seed S]

Loads the real crop (600 frames, 256 x 256, ~7 Hz, GCaMP6s, 138 labelled ROIs;
never copied into the repository), simulates a movie with matched settings
(7 Hz, 256 x 256, 600 frames, 138 neurons, radius ~4.6 px, no motion: the real
data are registered) and prints a Markdown table of statistics for both; writes
a figure with rows real / simulated and columns mean, max and local-correlation
image.

Statistics:
- pixel percentiles of the raw movie;
- noise std: median over pixels of std(Y[t+1] - Y[t]) / sqrt(2);
- noise vs mean: least-squares var = slope * mean + intercept over pixels
  (shot noise: slope = effective gain, counts per photon);
- local correlation image (mean correlation of each pixel's time course with its
  8 neighbours): mean, 99th percentile and max;
- ROI traces (real: labelled ROIs; simulated: truth footprints > 0.2 max): F = mean
  over the ROI, F0 = 20th percentile of F, sd = robust std of dF / sqrt(2);
  an event is an upward crossing of F0 + 3 sd by F smoothed over 3 frames;
  events per cell per minute, median peak dF/F = max (F - F0) / F0, fraction of
  cells without event; contrast = mean image inside ROIs / outside;
- frame-mean trace: relative std and lag-1 autocorrelation.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
from scipy.ndimage import uniform_filter1d

REAL_DIR = Path(__file__).resolve().parents[1] / ".." / "shared" / "data" / "real" / (
    "neurofinder_subset")
REAL_MOVIE = "movie_crop_r224_c64_256x256_600f.tif"
REAL_FPS_HZ = 7.0


def local_correlation(movie: np.ndarray) -> np.ndarray:
    """(H, W) mean Pearson correlation of each pixel with its 8 neighbours (edges: fewer)."""
    z = movie.astype(np.float32) - movie.mean(axis=0, dtype=np.float64).astype(np.float32)
    z /= np.maximum(z.std(axis=0), 1e-6)
    t, h, w = z.shape
    acc, cnt = np.zeros((h, w)), np.zeros((h, w))
    for dy in (-1, 0, 1):
        for dx in (-1, 0, 1):
            if dy == 0 and dx == 0:
                continue
            ys, yd = slice(max(dy, 0), h + min(dy, 0)), slice(max(-dy, 0), h + min(-dy, 0))
            xs, xd = slice(max(dx, 0), w + min(dx, 0)), slice(max(-dx, 0), w + min(-dx, 0))
            acc[yd, xd] += np.einsum("tij,tij->ij", z[:, ys, xs], z[:, yd, xd]) / t
            cnt[yd, xd] += 1
    return acc / cnt


def roi_masks_real(real_dir: Path, shape: tuple[int, int]) -> list[np.ndarray]:
    """Flat pixel indices of each labelled ROI clipped to the crop."""
    regions = json.loads((real_dir / "regions_crop.json").read_text())
    masks = []
    for region in regions:
        rc = np.asarray(region["coordinates"])
        ok = (rc[:, 0] >= 0) & (rc[:, 0] < shape[0]) & (rc[:, 1] >= 0) & (rc[:, 1] < shape[1])
        masks.append(rc[ok, 0] * shape[1] + rc[ok, 1])
    return masks


def roi_masks_sim(footprints: np.ndarray) -> list[np.ndarray]:
    """Flat pixel indices of each truth footprint binarised at 0.2 x its max."""
    return [np.flatnonzero(a.ravel() > 0.2 * a.max()) for a in footprints]


def roi_event_stats(movie: np.ndarray, masks: list[np.ndarray], fps_hz: float) -> dict:
    """Events per cell per minute, median peak dF/F, fraction without events."""
    flat = movie.reshape(movie.shape[0], -1).astype(np.float32)
    events, peaks = [], []
    for idx in masks:
        f = flat[:, idx].mean(axis=1)
        f0 = np.percentile(f, 20)
        d = np.diff(f)
        sd = 1.4826 * np.median(np.abs(d - np.median(d))) / np.sqrt(2)
        above = uniform_filter1d(f, 3) > f0 + 3 * sd
        events.append(int(above[0]) + int(np.sum(above[1:] & ~above[:-1])))
        peaks.append((f.max() - f0) / f0)
    minutes = movie.shape[0] / fps_hz / 60
    events = np.asarray(events)
    return {
        "events_per_min": float(np.mean(events) / minutes),
        "peak_dff_median": float(np.median(peaks)),
        "frac_no_event": float(np.mean(events == 0)),
    }


def movie_stats(movie: np.ndarray, masks: list[np.ndarray], fps_hz: float) -> dict:
    """All statistics of the module docstring for one movie (T, H, W)."""
    y = movie.astype(np.float32)
    mean = y.mean(axis=0)
    noise_sd = (np.diff(y, axis=0).std(axis=0) / np.sqrt(2)).astype(np.float64)
    slope, intercept = np.polyfit(mean.ravel(), (noise_sd**2).ravel(), 1)
    corr = local_correlation(y)
    inside = np.zeros(mean.size, bool)
    for idx in masks:
        inside[idx] = True
    frame_mean = y.mean(axis=(1, 2))
    fm = frame_mean - frame_mean.mean()
    stats = {
        f"p{q:g}": float(v)
        for q, v in zip((1, 5, 25, 50, 75, 95, 99, 99.9),
                        np.percentile(y, (1, 5, 25, 50, 75, 95, 99, 99.9)), strict=True)
    }
    stats.update(
        mean=float(y.mean()), noise_sd=float(np.median(noise_sd)),
        noise_slope=float(slope), noise_intercept=float(intercept),
        corr_mean=float(corr.mean()), corr_p99=float(np.percentile(corr, 99)),
        corr_max=float(corr.max()),
        roi_contrast=float(mean.ravel()[inside].mean() / mean.ravel()[~inside].mean()),
        frame_mean_rel_sd=float(frame_mean.std() / frame_mean.mean()),
        frame_mean_ac1=float(np.mean(fm[1:] * fm[:-1]) / np.mean(fm * fm)),
    )
    stats.update(roi_event_stats(y, masks, fps_hz))
    return stats, (mean, y.max(axis=0), corr)


def simulate_matched(seed: int):
    """A 2p simulation with the real crop's settings: (movie, truth footprints)."""
    from rtcal.sim import Simulation, make_config

    cfg = make_config(
        "2p", height=256, width=256, n_frames=600, n_neurons=138, fps_hz=REAL_FPS_HZ,
        radius_min_px=2.8, radius_max_px=4.6, motion_px=0.0, seed=seed,
    )
    sim = Simulation(cfg)
    movie = np.concatenate([chunk.images for chunk in sim.chunks()])
    return movie, sim.footprints


def plot(images: dict[str, tuple], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    titles = ("mean image", "max image", "local correlation")
    fig, axes = plt.subplots(len(images), 3, figsize=(13, 4.4 * len(images)))
    for row, (name, imgs) in enumerate(images.items()):
        for col, (img, title) in enumerate(zip(imgs, titles, strict=True)):
            lo, hi = np.percentile(img, (0.5, 99.7)) if col < 2 else (0.0, 0.35)
            ax = axes[row, col]
            ax.imshow(img, cmap="gray", vmin=lo, vmax=hi)
            ax.set_title(f"{name}: {title}")
            ax.set_xticks([])
            ax.set_yticks([])
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=80)


ROWS = [
    ("pixel p1 / p5 / p50 / p95 / p99 / p99.9",
     ("p1", "p5", "p50", "p95", "p99", "p99.9"), "{:.0f}"),
    ("pixel mean", ("mean",), "{:.0f}"),
    ("noise std (frame diff / sqrt 2), median", ("noise_sd",), "{:.0f}"),
    ("noise var vs mean: slope (counts/photon), intercept",
     ("noise_slope", "noise_intercept"), "{:.0f}"),
    ("local corr: mean / p99 / max", ("corr_mean", "corr_p99", "corr_max"), "{:.3f}"),
    ("mean image inside ROIs / outside", ("roi_contrast",), "{:.2f}"),
    ("ROI events (> 3 sd) per cell per min", ("events_per_min",), "{:.1f}"),
    ("ROI median peak dF/F", ("peak_dff_median",), "{:.2f}"),
    ("fraction of ROIs with no event", ("frac_no_event",), "{:.2f}"),
    ("frame mean: relative std / lag-1 autocorr", ("frame_mean_rel_sd", "frame_mean_ac1"),
     "{:.3f}"),
]


def table(real: dict, sim: dict) -> str:
    lines = ["| statistic | real (Neurofinder crop) | simulated |", "| --- | --- | --- |"]
    for label, keys, fmt in ROWS:
        cells = [" / ".join(fmt.format(s[k]) for k in keys) for s in (real, sim)]
        lines.append(f"| {label} | {cells[0]} | {cells[1]} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    import tifffile

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--real-dir", type=Path, default=REAL_DIR)
    ap.add_argument("--figure", type=Path, default=Path("docs/figures/sim_vs_real.png"))
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)
    real_movie = tifffile.imread(args.real_dir / REAL_MOVIE)
    real, real_imgs = movie_stats(real_movie, roi_masks_real(args.real_dir, real_movie.shape[1:]),
                                  REAL_FPS_HZ)
    del real_movie
    sim_movie, footprints = simulate_matched(args.seed)
    sim, sim_imgs = movie_stats(sim_movie, roi_masks_sim(footprints), REAL_FPS_HZ)
    print(table(real, sim))
    plot({"real": real_imgs, "simulated": sim_imgs}, args.figure)
    print(f"wrote {args.figure}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
