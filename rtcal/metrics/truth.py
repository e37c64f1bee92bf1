"""Ground truth for evaluation: simulated ``truth.npz`` or Neurofinder ``regions.json``.

Both load into one :class:`Truth`. Footprints are kept as a sparse matrix
(K_true, H*W) with pixel index ``row * width + col`` (C order, DESIGN.md), so a
1024x1024 field with 1500 cells costs memory in proportion to the cells' area,
not K * H * W.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import scipy.sparse as sp

from rtcal.errors import RtcalError


class TruthError(RtcalError):
    """A truth file is missing, unreadable or does not fit the results."""


@dataclass(frozen=True)
class Truth:
    """Ground-truth neurons.

    footprints: scipy.sparse.csr_array float32 (K, H*W), non-negative; each row
        is one neuron's footprint A_k, pixel index row * width + col
    height, width: frame size in px
    calcium: float32 (K, T_true) true calcium (dF/F) per movie frame, or None
        (regions.json has none)
    snr: float32 (K,) single-spike SNR per neuron, or None
    spikes: bool (K, T_true) whether each neuron spiked in each movie frame, or None
    ids: int64 (K,) neuron ids (row number for npz, ``id`` for regions.json)
    kind: "npz", "regions" or "arrays"
    n_clipped_px: regions.json coordinates outside the frame (dropped)
    n_dropped_regions: regions left with no pixel inside the frame (dropped)
    """

    footprints: sp.csr_array
    height: int
    width: int
    calcium: np.ndarray | None = None
    snr: np.ndarray | None = None
    spikes: np.ndarray | None = None
    ids: np.ndarray | None = None
    kind: str = "arrays"
    n_clipped_px: int = 0
    n_dropped_regions: int = 0

    @property
    def n_neurons(self) -> int:
        return int(self.footprints.shape[0])


def dense_to_csr(footprints: np.ndarray, chunk: int = 64) -> sp.csr_array:
    """Dense (K, H, W) footprints -> csr_array float32 (K, H*W), ``chunk`` rows at a time.

    Chunking bounds the temporary memory to ``chunk * H * W`` elements, so a
    results file with K = 1500 at 1024x1024 converts without a second dense copy.
    """
    fp = np.asarray(footprints)
    if fp.ndim != 3:
        raise TruthError(f"footprints must be (K, H, W), got shape {fp.shape}")
    k, h, w = fp.shape
    blocks = [
        sp.csr_array(np.asarray(fp[i : i + chunk], dtype=np.float32).reshape(-1, h * w))
        for i in range(0, k, chunk)
    ]
    if not blocks:
        return sp.csr_array((0, h * w), dtype=np.float32)
    return sp.csr_array(sp.vstack(blocks, format="csr"), dtype=np.float32)


def truth_from_arrays(
    footprints: np.ndarray,
    calcium: np.ndarray | None = None,
    snr: np.ndarray | None = None,
    kind: str = "arrays",
    spikes: np.ndarray | None = None,
) -> Truth:
    """Build a Truth from dense footprints (K, H, W) and optional calcium (K, T), snr (K,)
    and spikes (K, T) (counts or amplitudes; > 0 where a neuron spiked)."""
    fp = np.asarray(footprints)
    if fp.ndim != 3:
        raise TruthError(f"truth footprints must be (K, H, W), got shape {fp.shape}")
    k, h, w = fp.shape
    if calcium is not None:
        calcium = np.asarray(calcium, dtype=np.float32)
        if calcium.ndim != 2 or calcium.shape[0] != k:
            raise TruthError(f"truth calcium must be (K={k}, T), got shape {calcium.shape}")
    if snr is not None:
        snr = np.asarray(snr, dtype=np.float32)
        if snr.shape != (k,):
            raise TruthError(f"truth snr must be (K={k},), got shape {snr.shape}")
    if spikes is not None:
        spikes = np.asarray(spikes)
        if spikes.ndim != 2 or spikes.shape[0] != k:
            raise TruthError(f"truth spikes must be (K={k}, T), got shape {spikes.shape}")
        spikes = spikes > 0
    return Truth(
        footprints=dense_to_csr(fp),
        height=h,
        width=w,
        calcium=calcium,
        snr=snr,
        spikes=spikes,
        ids=np.arange(k, dtype=np.int64),
        kind=kind,
    )


def load_npz(path: Path, height: int, width: int) -> Truth:
    """Read a simulator ``truth.npz``; only ``footprints`` is required.

    Raises TruthError unless the footprints are (K, height, width).
    """
    try:
        with np.load(path, allow_pickle=False) as npz:
            data = {key: npz[key] for key in ("footprints", "calcium", "snr", "spikes")
                    if key in npz}
    except (OSError, ValueError) as err:
        raise TruthError(f"cannot read truth file {path}: {err}") from err
    if "footprints" not in data:
        raise TruthError(f"truth file {path} has no 'footprints' array")
    shape = data["footprints"].shape
    if len(shape) != 3 or shape[1:] != (height, width):
        raise TruthError(
            f"truth footprints in {path} have shape {shape}, but the results frame is "
            f"{height}x{width}; expected (K, {height}, {width})"
        )
    return truth_from_arrays(data["footprints"], data.get("calcium"), data.get("snr"), "npz",
                             spikes=data.get("spikes"))


def _region_pixels(coords: list, height: int, width: int) -> tuple[np.ndarray, int]:
    """Flat pixel indices of one region's [[row, col], ...] inside the frame, and the
    number of coordinates that fell outside (clipped away)."""
    rc = np.asarray(coords, dtype=np.int64).reshape(-1, 2)
    inside = (rc[:, 0] >= 0) & (rc[:, 0] < height) & (rc[:, 1] >= 0) & (rc[:, 1] < width)
    flat = np.unique(rc[inside, 0] * width + rc[inside, 1])
    return flat, int(np.count_nonzero(~inside))


def load_regions(path: Path, height: int, width: int) -> Truth:
    """Read Neurofinder ``regions.json``: ``[{"id": .., "coordinates": [[row, col], ..]}]``.

    Each region becomes a binary footprint (1.0 on its pixels). Coordinates
    outside the height x width frame are dropped and counted; a region with no
    pixel left is dropped and counted too.
    """
    try:
        regions = json.loads(Path(path).read_text())
    except (OSError, ValueError) as err:
        raise TruthError(f"cannot read regions file {path}: {err}") from err
    if not isinstance(regions, list):
        raise TruthError(f"{path}: expected a JSON list of regions")
    rows, cols, ids = [], [], []
    n_clipped = n_dropped = 0
    for region in regions:
        if not isinstance(region, dict) or "coordinates" not in region:
            raise TruthError(f"{path}: every region needs a 'coordinates' list")
        flat, clipped = _region_pixels(region["coordinates"], height, width)
        n_clipped += clipped
        if flat.size == 0:
            n_dropped += 1
            continue
        rows.append(np.full(flat.size, len(ids), dtype=np.int64))
        cols.append(flat)
        ids.append(int(region.get("id", len(ids))))
    k = len(ids)
    r = np.concatenate(rows) if rows else np.zeros(0, np.int64)
    c = np.concatenate(cols) if cols else np.zeros(0, np.int64)
    fp = sp.csr_array(
        (np.ones(r.size, np.float32), (r, c)), shape=(k, height * width), dtype=np.float32
    )
    return Truth(
        footprints=fp,
        height=height,
        width=width,
        ids=np.asarray(ids, dtype=np.int64),
        kind="regions",
        n_clipped_px=n_clipped,
        n_dropped_regions=n_dropped,
    )


def load_truth(path: str | Path, height: int, width: int) -> Truth:
    """Load truth from ``.npz`` (simulator) or ``.json`` (Neurofinder regions).

    height, width: the results' frame size; npz truth must match it, regions
    are clipped to it.
    """
    path = Path(path)
    if not path.is_file():
        raise TruthError(f"truth file not found: {path}")
    suffix = path.suffix.lower()
    if suffix == ".npz":
        return load_npz(path, height, width)
    if suffix == ".json":
        return load_regions(path, height, width)
    raise TruthError(f"unknown truth format {suffix!r} for {path}; expected .npz or .json")
