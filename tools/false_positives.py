"""Why each false positive of a run is one.

    python tools/false_positives.py RESULTS.h5 TRUTH

TRUTH is anything ``rtcal eval`` reads (truth.npz from ``rtcal simulate``, a
regions JSON). For every live component that ``rtcal eval`` counts as a false
positive (main convention: IoU >= 0.5 after the global offset), prints the
frame it was born on, its mask area (pixels >= 0.2 x its maximum), the true
cell its mask overlaps most, their IoU, the fraction of its mask inside that
cell and of the cell's mask it covers, the centroid distance, and a kind:

    no cell     IoU < 0.1 with every true cell (background, neuropil, a neurite)
    duplicate   the cell it overlaps most is matched to another component
    too small   >= 0.8 of it inside the cell, covering < 0.5 of the cell
    too large   covering >= 0.8 of the cell, < 0.5 of it inside
    misplaced   anything else (shifted, or shaped differently)

Then the count of each kind. The 1p initialisation of 2026-11-25 started from
this breakdown: on a simulated 1p movie, most false positives were duplicates
of found cells (born later, from the residual) and components that overlapped
no cell or spread far beyond one (470-760 px where the cells have 300-570).
"""

from __future__ import annotations

import argparse
from collections import Counter

import numpy as np

from rtcal.metrics import binarise, evaluate, load_truth, shift_footprints
from rtcal.metrics.truth import dense_to_csr
from rtcal.store.reader import read_results


def kind(iou: float, inside: float, covered: float, duplicate: bool) -> str:
    """The kind of one false positive (module docstring)."""
    if iou < 0.1:
        return "no cell"
    if duplicate:
        return "duplicate"
    if inside >= 0.8 and covered < 0.5:
        return "too small"
    if covered >= 0.8 and inside < 0.5:
        return "too large"
    return "misplaced"


def _centroids(masks: np.ndarray, width: int) -> np.ndarray:
    rows, cols = np.divmod(np.arange(masks.shape[1]), width)
    n = np.maximum(masks.sum(axis=1), 1)
    return np.stack([masks @ rows / n, masks @ cols / n], axis=1)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("results")
    p.add_argument("truth", help="truth.npz or regions JSON, as for rtcal eval")
    args = p.parse_args()

    res = read_results(args.results)
    truth = load_truth(args.truth, res.height, res.width)
    report = evaluate(res, truth)
    m = report.matching
    alive = np.flatnonzero(res.retired_frame < 0)  # the components rtcal eval scores
    est = dense_to_csr(res.footprints[alive])
    est = shift_footprints(est, res.height, res.width, -report.offset.dy, -report.offset.dx)
    E = binarise(est).toarray().astype(np.float64)
    T = binarise(truth.footprints).toarray().astype(np.float64)
    inter = E @ T.T
    union = E.sum(1)[:, None] + T.sum(1)[None] - inter
    iou = inter / np.maximum(union, 1)
    dist = np.hypot(*(_centroids(E, res.width)[:, None] - _centroids(T, res.width)[None]).T).T
    tp_est = set(m.est_index[m.is_tp].tolist())
    tp_true = set(m.true_index[m.is_tp].tolist())

    n_fp = len(alive) - len(tp_est)
    print(f"{n_fp} false positives of {len(alive)} components ({len(T)} true cells)")
    print("| component | born | area | cell | IoU | inside | covers | distance | kind |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    kinds = Counter()
    for k in range(len(alive)):
        if k in tp_est:
            continue
        j = int(np.argmax(iou[k])) if len(T) else -1
        area = E[k].sum()
        shared = inter[k, j] if j >= 0 else 0.0
        inside = shared / area if area else 0.0
        covered = shared / T[j].sum() if j >= 0 else 0.0
        what = kind(iou[k, j] if j >= 0 else 0.0, inside, covered, j in tp_true)
        kinds[what] += 1
        print(f"| {alive[k]} | {res.born_frame[alive[k]]} | {area:.0f} | {j} | {iou[k, j]:.2f} | "
              f"{inside:.2f} | {covered:.2f} | {dist[k, j]:.1f} | {what} |")
    print("kinds: " + (", ".join(f"{name} {n}" for name, n in kinds.most_common()) or "none"))


if __name__ == "__main__":
    main()
