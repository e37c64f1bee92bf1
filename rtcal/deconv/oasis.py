"""OASIS: fast non-negative deconvolution for AR(1) calcium dynamics.

Friedrich, Zhou & Paninski 2017 (PLoS Comput Biol 13:e1005423). For a trace y
and decay factor g = exp(-1 / (tau_decay_s * fps_hz)) it solves

    min_c  1/2 || c - y ||^2 + lam || s ||_1
    s.t.   s_t = c_t - g c_{t-1} >= s_min  or  s_t = 0,   c >= 0

with the pool-adjacent-violators idea: each pool is a run of frames whose
calcium decays freely from one value v, c = v g^k. A new frame opens a pool;
while it violates the constraint with its predecessor the two merge, and the
merged value is the weighted least-squares solution. One pass, O(T).

The L1 penalty enters by shifting the data: y_t <- y_t - lam (1 - g) (the exact
form also treats the last frame specially; we use the stationary form so that
the batch and the online solver agree).
"""

from __future__ import annotations

import numba
import numpy as np


def oasis_ar1_reference(
    y: np.ndarray, g: float, lam: float = 0.0, s_min: float = 0.0
) -> tuple[np.ndarray, np.ndarray]:
    """Plain-Python OASIS AR(1). y: (T,) -> (c, s), float32 (T,) each."""
    pools: list[list[float]] = []  # [v, w, t, l]
    for t, yt in enumerate(np.asarray(y, dtype=np.float64)):
        pools.append([yt - lam * (1 - g), 1.0, t, 1])
        while len(pools) > 1:
            v1, w1, t1, l1 = pools[-2]
            v2, w2, _, l2 = pools[-1]
            gl = g**l1
            if v2 >= gl * v1 + s_min:
                break
            pools[-2] = [
                (w1 * v1 + gl * w2 * v2) / (w1 + gl * gl * w2),
                w1 + gl * gl * w2,
                t1,
                l1 + l2,
            ]
            pools.pop()
    c = np.zeros(len(y))
    for v, _, t, l in pools:
        c[int(t) : int(t) + int(l)] = max(v, 0.0) * g ** np.arange(l)
    s = np.zeros_like(c)
    s[0] = c[0]
    s[1:] = c[1:] - g * c[:-1]
    s[s < 1e-9] = 0.0
    return c.astype(np.float32), s.astype(np.float32)


@numba.njit(cache=True)
def _oasis_numba(y, g, lam, s_min):  # pragma: no cover - compiled
    T = y.shape[0]
    v = np.empty(T)
    w = np.empty(T)
    start = np.empty(T, np.int64)
    length = np.empty(T, np.int64)
    n = 0
    shift = lam * (1 - g)
    for t in range(T):
        v[n] = y[t] - shift
        w[n] = 1.0
        start[n] = t
        length[n] = 1
        n += 1
        while n > 1:
            gl = g ** length[n - 2]
            if v[n - 1] >= gl * v[n - 2] + s_min:
                break
            ww = w[n - 2] + gl * gl * w[n - 1]
            v[n - 2] = (w[n - 2] * v[n - 2] + gl * w[n - 1] * v[n - 1]) / ww
            w[n - 2] = ww
            length[n - 2] += length[n - 1]
            n -= 1
    c = np.zeros(T)
    for j in range(n):
        vj = max(v[j], 0.0)
        for k in range(length[j]):
            c[start[j] + k] = vj * g**k
    s = np.zeros(T)
    s[0] = c[0]
    for t in range(1, T):
        d = c[t] - g * c[t - 1]
        s[t] = d if d > 1e-9 else 0.0
    return c.astype(np.float32), s.astype(np.float32)


def oasis_ar1(
    y: np.ndarray, g: float, lam: float = 0.0, s_min: float = 0.0
) -> tuple[np.ndarray, np.ndarray]:
    """Numba OASIS AR(1); same contract as :func:`oasis_ar1_reference`."""
    if not 0.0 < g < 1.0:
        raise ValueError(f"AR(1) coefficient g must be in (0, 1), got {g}")
    return _oasis_numba(
        np.ascontiguousarray(y, dtype=np.float64), float(g), float(lam), float(s_min)
    )


def decay_factor(tau_decay_s: float, fps_hz: float) -> float:
    """g = exp(-1 / (tau_decay_s * fps_hz)): the per-frame calcium decay."""
    return float(np.exp(-1.0 / (tau_decay_s * fps_hz)))
