"""Every extraction of the residual search on simulated movies, scored against the truth.

    python tools/extractions.py DIR [DIR ...] [--config FILE.toml] [--fps HZ]
                                [--neuron-radius PX] [--mode 2p|1p] [--rows]

Each DIR holds movie.tif and truth.npz as ``rtcal simulate DIR`` writes them.
The movie runs through ``rtcal run``'s pipeline (the same configuration from
the same flags) with an observer on the residual search
(``SearchRound.observer``). Each extraction's footprint (mask >= 0.2 x its
maximum) is matched to the true cell whose mask it overlaps most (IoU; no
global offset: the registered frame and the truth agree to ~1 px on simulated
movies). An extraction is "true" at IoU >= 0.5 and "false" at IoU < 0.3. Over
all DIRs it prints:

- per verdict (accepted, the soma gate's reasons, space correlation, nothing
  at the peak), the true and false extractions;
- the space correlation's quantiles for true and false extractions that the
  soma gate let through;
- the true extractions refused for their space correlation, and the distinct
  cells they were;
- for each band of space correlation under the threshold, the true and false
  extractions whose footprints cover >= F x pi r^2 pixels (F = 0.75, 1.0, 1.1,
  1.3): what ``[nmf] new_large_area_frac`` would let in (README, "An option,
  off by default").

``--rows`` also prints every extraction.
"""

from __future__ import annotations

import argparse
from collections import Counter
from pathlib import Path

import numpy as np

from rtcal.config import load_config
from rtcal.engine.pipeline import Pipeline
from rtcal.io import open_movie
from rtcal.nmf.residual import Extraction


def _true_masks(truth: Path) -> np.ndarray:
    footprints = np.load(truth)["footprints"]
    return footprints >= 0.2 * footprints.max(axis=(1, 2), keepdims=True)


def run_movie(directory: Path, args: argparse.Namespace) -> tuple[list[dict], float, float]:
    """Extractions of one movie, each a dict with its verdict, space correlation,
    area and best true match; and the run's soma radius and space threshold."""
    with open_movie(directory / "movie.tif") as movie:
        config = load_config(
            args.config, fps_hz=args.fps, radius_px=args.neuron_radius, mode=args.mode,
            fallback_fps_hz=movie.fps_hz or 30.0,
        ).pipeline
        true = _true_masks(directory / "truth.npz")
        seen: list[Extraction] = []
        pipeline = Pipeline(config)
        for index, frame in enumerate(movie):
            pipeline.push(index, frame)
            search = pipeline.search
            if search is not None and search.observer is None:
                search.observer = seen.append
        pipeline.finish()
    rows = []
    for e in seen:
        row = {"dir": directory.name, "frame": e.frame, "row": e.row, "col": e.col,
               "score": e.score, "verdict": e.verdict, "r": e.space_corr, "area": 0,
               "cell": -1, "iou": 0.0}
        if e.footprint is not None:
            mask = np.zeros(true.shape[1:], bool)
            mask[e.box] = e.footprint >= 0.2
            inter = (true & mask).sum(axis=(1, 2))
            iou = inter / np.maximum((true | mask).sum(axis=(1, 2)), 1)
            k = int(np.argmax(iou))
            row.update(area=int(mask.sum()), cell=k, iou=float(iou[k]))
        rows.append(row)
    return rows, config.radius_px, config.nmf.new_min_space_corr


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("dirs", nargs="+", type=Path, help="directories from rtcal simulate")
    p.add_argument("--config", type=Path)
    p.add_argument("--fps", type=float)
    p.add_argument("--neuron-radius", type=float)
    p.add_argument("--mode", choices=("2p", "1p"))
    p.add_argument("--rows", action="store_true", help="print every extraction")
    args = p.parse_args()

    rows: list[dict] = []
    for d in args.dirs:
        found, radius, threshold = run_movie(d, args)
        rows += found
        print(f"{d}: {len(found)} extractions", flush=True)
    if args.rows:
        print("| movie | frame | peak | score | verdict | r | area | cell | IoU |")
        print("| --- | ---: | --- | ---: | --- | ---: | ---: | ---: | ---: |")
        for r in rows:
            print(f"| {r['dir']} | {r['frame']} | ({r['row']}, {r['col']}) | {r['score']:.1f} "
                  f"| {r['verdict']} | {r['r']:.3f} | {r['area']} | {r['cell']} "
                  f"| {r['iou']:.2f} |")
    is_true = [r["iou"] >= 0.5 for r in rows]
    is_false = [r["iou"] < 0.3 for r in rows]

    print(f"\n{len(rows)} extractions; true = IoU >= 0.5 with a true cell, false = IoU < 0.3")
    print("| verdict | true | false |")
    print("| --- | ---: | ---: |")
    verdicts = Counter(_gate_kind(r["verdict"]) for r in rows)
    for v, _ in verdicts.most_common():
        of_v = [i for i, r in enumerate(rows) if _gate_kind(r["verdict"]) == v]
        print(f"| {v} | {sum(is_true[i] for i in of_v)} | {sum(is_false[i] for i in of_v)} |")
    gated = [i for i, r in enumerate(rows) if np.isfinite(r["r"])]
    for name, sel in (("true", is_true), ("false", is_false)):
        r = np.array([rows[i]["r"] for i in gated if sel[i]])
        if r.size:
            q = np.percentile(r, [10, 25, 50, 75, 90])
            print(f"space correlation, {name} extractions through the gate ({r.size}): "
                  f"10/25/50/75/90% {' / '.join(f'{x:.3f}' for x in q)}")
    refused = [rows[i] for i in gated if is_true[i] and rows[i]["verdict"] == "space correlation"]
    cells = {(r["dir"], r["cell"]) for r in refused}
    n_true = sum(1 for i in gated if is_true[i])
    print(f"true extractions refused for r < {threshold}: {len(refused)} of {n_true} "
          f"through the gate ({len(cells)} distinct cells)")
    disc = np.pi * radius**2
    print(f"\nfootprints covering >= F pi r^2 px (r = {radius:g}), by space correlation: "
          "true / false")
    fracs = (0.75, 1.0, 1.1, 1.3)
    print("| r band | " + " | ".join(f"F {f}" for f in fracs) + " |")
    print("| --- |" + " ---: |" * len(fracs))
    edges = [e for e in (0.5, 0.6, 0.7, 0.75, 0.8) if e < threshold] + [threshold]
    for lo, hi in zip(edges[:-1], edges[1:], strict=True):
        cells_ = []
        for f in fracs:
            band = [i for i in gated if lo <= rows[i]["r"] < hi and rows[i]["area"] >= f * disc]
            cells_.append(f"{sum(is_true[i] for i in band)} / {sum(is_false[i] for i in band)}")
        print(f"| {lo:.3g}-{hi:.3g} | " + " | ".join(cells_) + " |")


def _gate_kind(verdict: str) -> str:
    """A verdict without its numbers: 'area 79 px < 85' -> 'area', 'elongation 2.1 > 2'
    -> 'elongation'."""
    for word in ("area", "elongation"):
        if verdict.startswith(word):
            return word
    return verdict


if __name__ == "__main__":
    main()
