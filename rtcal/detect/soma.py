"""Is a footprint shaped like a soma? Area and elongation of its 0.2 x max mask.

Somata are compact: the simulator's true masks (the evaluation convention:
pixels >= 0.2 x the footprint's maximum) cover about 0.8 to 2 x pi r^2 and
their principal axes differ by at most a factor of 1.68 (360 cells, two
movies). What else turns up as a rank-1 transient is not compact: neurite
segments are thin and long (axis ratio 2-4), noise blobs are a few dozen
pixels. On the simulated 2p test movie (256 x 256, 60 cells, 180 neurites) all
37 true positives of ``rtcal run`` had an axis ratio <= 1.39 and an area >= 112
px, while 16 of its 25 false positives had an axis ratio > 2 or an area < 0.5
pi r^2.

The gate decides every birth in the online core (the seed detector, the
residual search; a detector re-run's proposals come from the seed detector or,
with the learned detector, pass its own area filter), and the curator retires
a component whose refined footprint has grown more elongated than the gate
allows (its area is not re-checked: refined footprints of real cells sharpen
or spread). Set ``max_elongation`` to infinity to keep dendrites and other
elongated sources.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from rtcal.errors import RtcalError


class SomaGateError(RtcalError):
    pass


def mask_shape(rows: np.ndarray, cols: np.ndarray) -> tuple[int, float]:
    """Area (pixel count) and elongation of a mask given by its pixel coordinates.

    Elongation is sqrt(lambda_max / lambda_min) of the coordinates' covariance,
    the ratio of the principal axes (1 for a disc or a ring, ~L / w for a rod of
    length L and width w); the covariance gets 1/12 px^2 on its diagonal (the
    variance of a uniform pixel), so a one-pixel line has a finite elongation.
    """
    n = int(rows.size)
    if n == 0:
        return 0, math.inf
    y = rows.astype(np.float64) - rows.mean()
    x = cols.astype(np.float64) - cols.mean()
    syy = float(y @ y) / n + 1.0 / 12
    sxx = float(x @ x) / n + 1.0 / 12
    sxy = float(y @ x) / n
    half_trace = 0.5 * (syy + sxx)
    root = math.sqrt(max(0.25 * (syy - sxx) ** 2 + sxy * sxy, 0.0))
    lam_max, lam_min = half_trace + root, half_trace - root
    return n, math.sqrt(lam_max / max(lam_min, 1e-12))


def mask_shape_reference(mask: np.ndarray) -> tuple[int, float]:
    """Plain version of :func:`mask_shape` from a bool (H, W) mask (numpy eigvalsh)."""
    ys, xs = np.nonzero(mask)
    if ys.size == 0:
        return 0, math.inf
    cov = np.cov(np.stack([ys, xs]).astype(np.float64), bias=True) + np.eye(2) / 12
    lam = np.linalg.eigvalsh(cov)
    return int(ys.size), float(np.sqrt(lam[1] / lam[0]))


@dataclass(frozen=True)
class SomaGate:
    """Accepts footprints whose 0.2 x max mask has area in
    [min_area_frac, max_area_frac] x pi radius_px^2 and elongation <= max_elongation."""

    radius_px: float = 6.0
    min_area_frac: float = 0.5
    max_area_frac: float = 3.0
    max_elongation: float = 2.0

    def __post_init__(self) -> None:
        if not self.radius_px > 0:
            raise SomaGateError(f"radius_px must be > 0, got {self.radius_px}")
        if not 0 <= self.min_area_frac < self.max_area_frac:
            raise SomaGateError(
                f"need 0 <= min_area_frac < max_area_frac, got "
                f"{self.min_area_frac}, {self.max_area_frac}"
            )
        if not self.max_elongation >= 1:
            raise SomaGateError(f"max_elongation must be >= 1, got {self.max_elongation}")

    @property
    def area_range_px(self) -> tuple[float, float]:
        area = math.pi * self.radius_px**2
        return self.min_area_frac * area, self.max_area_frac * area

    def why_not(self, rows: np.ndarray, cols: np.ndarray) -> str | None:
        """None if the mask with these pixel coordinates passes, else the reason."""
        area, elongation = mask_shape(rows, cols)
        low, high = self.area_range_px
        if area < low:
            return f"area {area} px < {low:.0f}"
        if area > high:
            return f"area {area} px > {high:.0f}"
        if elongation > self.max_elongation:
            return f"elongation {elongation:.2f} > {self.max_elongation:g}"
        return None

    def why_not_patch(self, patch: np.ndarray) -> str | None:
        """As :meth:`why_not` for a dense footprint (h, w) (mask at 0.2 x its max)."""
        peak = float(patch.max()) if patch.size else 0.0
        if peak <= 0:
            return "empty footprint"
        return self.why_not(*np.nonzero(patch >= 0.2 * peak))

    def why_not_flat(self, index: np.ndarray, values: np.ndarray, width: int) -> str | None:
        """As :meth:`why_not` for a sparse footprint: flat pixel indices (row * width
        + col) and their values."""
        peak = float(values.max()) if values.size else 0.0
        if peak <= 0:
            return "empty footprint"
        on = index[values >= 0.2 * peak]
        return self.why_not(on // width, on % width)
