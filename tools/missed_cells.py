"""Which simulated cells a run missed, and what they look like.

    python tools/missed_cells.py RESULTS.h5 TRUTH.npz

For every true cell that ``rtcal eval`` counts as missed (main convention,
IoU >= 0.5 after the global offset), prints its spike count in the movie, its
single-spike SNR, its resting brightness over the local background, its
contrast in the resting image (band-passed as the seed detector band-passes
the mean image, in robust standard deviations: what a detector reading resting
fluorescence sees; negative = darker than its surroundings), whether it has a
dark nucleus, and the best IoU any estimated component ever reached with it
(retired components included). Ends with the resting contrast of found and
missed cells side by side. Needs a truth file from ``rtcal simulate``.
"""

from __future__ import annotations

import argparse

import numpy as np

from rtcal.detect.bandpass import dog_filter
from rtcal.metrics.evaluate import evaluate
from rtcal.metrics.truth import load_truth
from rtcal.store.reader import read_results


def _masks(footprints: np.ndarray) -> np.ndarray:
    peak = footprints.max(axis=(1, 2), keepdims=True)
    return (footprints >= 0.2 * peak) & (peak > 0)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("results")
    p.add_argument("truth", help="truth.npz written by rtcal simulate")
    args = p.parse_args()

    res = read_results(args.results)
    t = np.load(args.truth)
    matching = evaluate(res, load_truth(args.truth, res.height, res.width)).matching
    found = np.zeros(len(t["snr"]), bool)
    found[matching.true_index[matching.is_tp]] = True

    radius = float(np.median(t["radius_px"]))
    band = dog_filter(t["resting_image"].astype(np.float32), 0.35 * radius, 1.5 * radius)
    sigma = 1.4826 * np.median(np.abs(band - np.median(band)))
    rc = np.round(t["centers"]).astype(int).clip(0, np.array(band.shape) - 1)
    contrast = band[rc[:, 0], rc[:, 1]] / sigma
    local = t["background_mean"][rc[:, 0], rc[:, 1]]

    true_m = _masks(t["footprints"]).reshape(len(found), -1).astype(np.float32)
    est_m = _masks(res.footprints).reshape(len(res.footprints), -1).astype(np.float32)
    inter = true_m @ est_m.T
    union = true_m.sum(1)[:, None] + est_m.sum(1)[None] - inter
    best_iou = (inter / np.maximum(union, 1)).max(axis=1) if len(est_m) else np.zeros(len(found))
    spikes = (t["spikes"] > 0).sum(axis=1)

    print(f"{found.sum()} of {len(found)} cells found; missed:")
    print("| cell | centre | spikes | SNR | rest / background | resting contrast (z) | donut "
          "| best IoU |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- |")
    for k in np.flatnonzero(~found):
        cy, cx = t["centers"][k]
        print(f"| {k} | ({cy:.0f}, {cx:.0f}) | {spikes[k]} | {t['snr'][k]:.1f} | "
              f"{t['baseline'][k] / max(local[k], 1e-9):.2f} | {contrast[k]:+.1f} | "
              f"{bool(t['is_donut'][k])} | {best_iou[k]:.2f} |")
    for name, sel in (("found", found), ("missed", ~found)):
        if sel.any():
            print(f"resting contrast, {name}: median {np.median(contrast[sel]):+.1f}, "
                  f"{(contrast[sel] < 0).sum()} of {sel.sum()} darker than their surroundings")
    silent = spikes == 0
    print(f"cells that never spike: {silent.sum()}, found {found[silent].sum()}")


if __name__ == "__main__":
    main()
