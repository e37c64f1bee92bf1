"""Applying a smooth shift field: piecewise-rigid registration's resampling.

The patch shifts D_p = (dy, dx) sit at the patch centres (a regular grid,
:mod:`rtcal.motion.patches`). The dense field D(y, x) interpolates them
bilinearly, and is constant beyond the outermost centres (as NoRMCorre upsamples
its shift grid to the frame). A frame whose content is displaced by D is
registered by resampling it, bilinearly with edges replicated, at

    out[y, x] = frame(y + D_y(y, x), x + D_x(y, x)),

which for a constant D is :func:`rtcal.motion.rigid.apply_shift` with (-dy, -dx).
The Numba kernel builds D one row at a time and never stores it;
:func:`unwarp_reference` (dense field + scipy ``map_coordinates``) is the plain
version it is tested against.
"""

from __future__ import annotations

import numba
import numpy as np
from scipy import ndimage


def shift_field(
    patch_shifts: np.ndarray,
    centres_y: np.ndarray,
    centres_x: np.ndarray,
    shape: tuple[int, int],
) -> np.ndarray:
    """Dense field float32 (2, H, W) (dy, dx) from patch shifts (n_y, n_x, 2) at the centres.

    Bilinear between centres (float px, increasing), constant beyond them.
    """
    H, W = shape
    rows, cols = np.arange(H, dtype=np.float64), np.arange(W, dtype=np.float64)
    field = np.empty((2, H, W), np.float32)
    for a in range(2):
        grid = np.asarray(patch_shifts[..., a], np.float64)  # (n_y, n_x)
        along_y = np.stack([np.interp(rows, centres_y, grid[:, j]) for j in range(grid.shape[1])],
                           axis=1)  # (H, n_x)
        field[a] = np.stack([np.interp(cols, centres_x, r) for r in along_y])
    return field


def unwarp_reference(frame: np.ndarray, field: np.ndarray) -> np.ndarray:
    """out[y, x] = frame(y + field[0, y, x], x + field[1, y, x]), bilinear, edges replicated.

    frame (H, W), field (2, H, W) -> float32 (H, W). Plain scipy version.
    """
    H, W = frame.shape
    rows, cols = np.mgrid[:H, :W].astype(np.float64)
    coords = np.stack([np.clip(rows + field[0], 0, H - 1), np.clip(cols + field[1], 0, W - 1)])
    out = ndimage.map_coordinates(frame.astype(np.float64), coords, order=1, mode="nearest")
    return out.astype(np.float32)


@numba.njit(cache=True)
def _grid_taps(n, centres):  # pragma: no cover - compiled
    """Per pixel index i: the two grid centres around i and the weight of the upper one."""
    m = centres.shape[0]
    j0 = np.empty(n, np.int64)
    j1 = np.empty(n, np.int64)
    w1 = np.empty(n, np.float64)
    j = 0
    for i in range(n):
        while j < m - 2 and centres[j + 1] <= i:
            j += 1
        if m == 1 or i <= centres[0]:
            j0[i], j1[i], w1[i] = 0, 0, 0.0
        elif i >= centres[m - 1]:
            j0[i], j1[i], w1[i] = m - 1, m - 1, 0.0
        else:
            j0[i], j1[i] = j, j + 1
            w1[i] = (i - centres[j]) / (centres[j + 1] - centres[j])
    return j0, j1, w1


@numba.njit(cache=True, fastmath=True)
def _unwarp(frame, grid_dy, grid_dx, centres_y, centres_x, out):  # pragma: no cover - compiled
    H, W = frame.shape
    n_x = grid_dy.shape[1]
    flat = frame.ravel()
    gy0, gy1, gwy = _grid_taps(H, centres_y)
    gx0, gx1, gwx = _grid_taps(W, centres_x)
    row_dy = np.empty(n_x, np.float32)  # the field along one row, at the grid columns
    row_dx = np.empty(n_x, np.float32)
    field_dy = np.empty(W, np.float32)  # ... and at every column
    field_dx = np.empty(W, np.float32)
    one, zero = np.float32(1.0), np.float32(0.0)
    y_max, x_max = np.float32(H - 1), np.float32(W - 1)
    # Unsigned flat indices: no negative-index handling in the gather loop.
    w_u, h_last, w_last = np.uint64(W), np.uint64(H - 1), np.uint64(W - 1)
    for y in range(H):
        for j in range(n_x):
            row_dy[j] = (1 - gwy[y]) * grid_dy[gy0[y], j] + gwy[y] * grid_dy[gy1[y], j]
            row_dx[j] = (1 - gwy[y]) * grid_dx[gy0[y], j] + gwy[y] * grid_dx[gy1[y], j]
        for x in range(W):
            field_dy[x] = (1 - gwx[x]) * row_dy[gx0[x]] + gwx[x] * row_dy[gx1[x]]
            field_dx[x] = (1 - gwx[x]) * row_dx[gx0[x]] + gwx[x] * row_dx[gx1[x]]
        o = out[y]
        for x in range(W):
            sy = min(max(np.float32(y) + field_dy[x], zero), y_max)
            sx = min(max(np.float32(x) + field_dx[x], zero), x_max)
            y0 = np.uint64(sy)
            x0 = np.uint64(sx)
            fy = sy - np.float32(y0)
            fx = sx - np.float32(x0)
            y1 = min(y0 + np.uint64(1), h_last)
            x1 = min(x0 + np.uint64(1), w_last)
            r0, r1 = y0 * w_u, y1 * w_u
            top = (one - fx) * np.float32(flat[r0 + x0]) + fx * np.float32(flat[r0 + x1])
            bottom = (one - fx) * np.float32(flat[r1 + x0]) + fx * np.float32(flat[r1 + x1])
            o[x] = (one - fy) * top + fy * bottom
    return out


def unwarp(
    frame: np.ndarray,
    patch_shifts: np.ndarray,
    centres_y: np.ndarray,
    centres_x: np.ndarray,
    out: np.ndarray | None = None,
) -> np.ndarray:
    """Register a frame by the field of its patch shifts (Numba).

    frame (H, W) float32 or integer dtype; patch_shifts (n_y, n_x, 2) px;
    centres float px (n_y,), (n_x,). Same result as
    ``unwarp_reference(frame, shift_field(patch_shifts, centres_y, centres_x, shape))``.
    -> float32 (H, W).
    """
    if out is None:
        out = np.empty(frame.shape, np.float32)
    if frame.dtype.kind not in "ui" and frame.dtype != np.float32:
        frame = frame.astype(np.float32)
    shifts = np.asarray(patch_shifts, np.float32)
    return _unwarp(
        np.ascontiguousarray(frame),
        np.ascontiguousarray(shifts[..., 0]),
        np.ascontiguousarray(shifts[..., 1]),
        np.asarray(centres_y, np.float64),
        np.asarray(centres_x, np.float64),
        out,
    )
