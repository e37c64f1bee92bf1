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

A pool is (v, w, d, length, start): value at its first frame, weight
sum_k g^(2k), decay to its last frame d = g^(length-1), length, first frame. Keeping d (updated by
multiplication on a merge) instead of calling pow() makes a frame O(1) and
keeps the Numba kernel and the plain reference bit-identical.

The pool push (:func:`push_sample` and :class:`Ar1Pools`) is shared by the
batch solver here and the streaming one in :mod:`rtcal.deconv.online`: pools
live in rows of a (K, max_pools) ring of ``POOL_DTYPE`` records; the batch solver is the streaming
one with a single row and room for every frame.

A non-finite sample is a missing observation: it adds a frame of zero weight
to the last pool (the calcium keeps decaying, nothing is pulled), which is the
exact least-squares treatment of a gap.
"""

from __future__ import annotations

import math

import numba
import numpy as np

from rtcal.errors import RtcalError

# Spikes below this are rounding noise of c_t - g c_{t-1}, reported as 0.
SPIKE_FLOOR = 1e-9


# One OASIS pool: value at its first frame, weight, decay to its last frame, length, first frame.
POOL_DTYPE = np.dtype(
    [("v", "f8"), ("w", "f8"), ("d", "f8"), ("length", "i8"), ("start", "i8")]
)


class DeconvError(RtcalError, ValueError):
    """Bad argument or configuration for spike inference / dF/F."""


class Ar1Pools:
    """Plain-Python OASIS pools of one component; keeps at most ``max_pools`` recent pools.

    The readable reference for :func:`push_sample`. ``shift`` = lam (1 - g).
    """

    def __init__(self, g: float, s_min: float, shift: float, max_pools: int) -> None:
        self.g, self.s_min, self.shift, self.max_pools = g, s_min, shift, max_pools
        self.pools: list[list[float]] = []  # [v, w, d, l, start]
        self.n_frames = 0

    def push(self, y: float) -> tuple[float, float]:
        """Add one frame; return (c, s) of this frame under the current pools."""
        t, g = self.n_frames, self.g
        self.n_frames += 1
        if not math.isfinite(y):
            if not self.pools:
                self.pools.append([0.0, 0.0, 1.0, 1, t])
            else:
                self.pools[-1][2] *= g
                self.pools[-1][3] += 1
            v, _, d, _, _ = self.pools[-1]
            return max(v, 0.0) * d, 0.0
        if len(self.pools) == self.max_pools:
            self.pools.pop(0)  # the oldest pool is final: no later merge may reach it
        self.pools.append([y - self.shift, 1.0, 1.0, 1, t])
        while len(self.pools) > 1:
            v1, w1, d1, l1, t1 = self.pools[-2]
            v2, w2, d2, l2, _ = self.pools[-1]
            gl = g * d1
            if v2 >= gl * v1 + self.s_min:
                break
            ww = w1 + gl * gl * w2
            self.pools[-2] = [(w1 * v1 + gl * w2 * v2) / ww, ww, gl * d2, l1 + l2, t1]
            self.pools.pop()
        v, _, d, length, _ = self.pools[-1]
        c = max(v, 0.0) * d
        if length > 1:
            return c, 0.0
        prev = 0.0
        if len(self.pools) > 1:
            pv, _, pd, _, _ = self.pools[-2]
            prev = max(pv, 0.0) * pd
        s = c - g * prev
        return c, (s if s > SPIKE_FLOOR else 0.0)

    def denoised(self) -> tuple[int, np.ndarray]:
        """(first frame, c float64) over the frames the retained pools cover."""
        if not self.pools:
            return self.n_frames, np.zeros(0)
        first = int(self.pools[0][4])
        c = np.zeros(self.n_frames - first)
        for v, _, _, length, start in self.pools:
            c[int(start) - first : int(start) - first + int(length)] = _decay_run(
                max(v, 0.0), self.g, int(length)
            )
        return first, c


def _decay_run(v: float, g: float, length: int) -> np.ndarray:
    out = np.empty(length)
    for k in range(length):
        out[k] = v
        v *= g
    return out


@numba.njit(cache=True, inline="always")
def _ring(i, P):  # pragma: no cover - compiled
    # i in [0, 2P): a compare is much cheaper than an integer modulo
    return i - P if i >= P else i


@numba.njit(cache=True, inline="always")
def push_sample(y, k, g, s_min, shift, pools, ring):  # pragma: no cover - compiled
    """Numba twin of :meth:`Ar1Pools.push` for row k of ring-buffered pools.

    pools: POOL_DTYPE (K, P), a ring per component; ring: int64 (K, 3) holding
    (index of the oldest pool, number of pools, frames seen). Returns (c, s) float64.
    The fields of a pool sit together, so a frame touches one or two cache lines
    per component.
    """
    P = pools.shape[1]
    head, n, t = ring[k, 0], ring[k, 1], ring[k, 2]
    ring[k, 2] = t + 1
    if not math.isfinite(y):
        if n == 0:
            p2 = pools[k, head]
            p2.v, p2.w, p2.d, p2.length, p2.start = 0.0, 0.0, 1.0, 1, t
            ring[k, 1] = 1
        else:
            p2 = pools[k, _ring(head + n - 1, P)]
            p2.d *= g
            p2.length += 1
        return max(p2.v, 0.0) * p2.d, 0.0
    if n == P:
        head, n = _ring(head + 1, P), n - 1
    p2 = pools[k, _ring(head + n, P)]
    p2.v, p2.w, p2.d, p2.length, p2.start = y - shift, 1.0, 1.0, 1, t
    n += 1
    while n > 1:
        p1 = pools[k, _ring(head + n - 2, P)]
        gl = g * p1.d
        if p2.v >= gl * p1.v + s_min:
            break
        ww = p1.w + gl * gl * p2.w
        p1.v = (p1.w * p1.v + gl * p2.w * p2.v) / ww
        p1.w = ww
        p1.d = gl * p2.d
        p1.length += p2.length
        n -= 1
        p2 = p1
    ring[k, 0], ring[k, 1] = head, n
    c = max(p2.v, 0.0) * p2.d
    if p2.length > 1:
        return c, 0.0
    prev = 0.0
    if n > 1:
        p1 = pools[k, _ring(head + n - 2, P)]
        prev = max(p1.v, 0.0) * p1.d
    s = c - g * prev
    return c, (s if s > SPIKE_FLOOR else 0.0)


def _spikes(c: np.ndarray, g: float) -> np.ndarray:
    s = np.empty_like(c)
    s[0] = c[0]
    s[1:] = c[1:] - g * c[:-1]
    s[s < SPIKE_FLOOR] = 0.0
    return s


def oasis_ar1_reference(
    y: np.ndarray, g: float, lam: float = 0.0, s_min: float = 0.0
) -> tuple[np.ndarray, np.ndarray]:
    """Plain-Python OASIS AR(1). y: (T,) -> (c, s), float32 (T,) each."""
    y = np.asarray(y, dtype=np.float64)
    pools = Ar1Pools(g, s_min, lam * (1 - g), max_pools=max(len(y), 1))
    for yt in y:
        pools.push(float(yt))
    _, c = pools.denoised()
    if c.size == 0:
        return np.zeros(0, np.float32), np.zeros(0, np.float32)
    return c.astype(np.float32), _spikes(c, g).astype(np.float32)


@numba.njit(cache=True)
def _oasis_numba(y, g, lam, s_min):  # pragma: no cover - compiled
    T = y.shape[0]
    pools = np.zeros((1, max(T, 1)), POOL_DTYPE)
    ring = np.zeros((1, 3), np.int64)
    shift = lam * (1 - g)
    for t in range(T):
        push_sample(y[t], 0, g, s_min, shift, pools, ring)
    c = np.zeros(T)
    for j in range(ring[0, 1]):
        p = pools[0, j]
        vj = max(p.v, 0.0)
        for i in range(p.start, p.start + p.length):
            c[i] = vj
            vj *= g
    s = np.zeros(T)
    if T > 0:
        s[0] = c[0]
    for t in range(1, T):
        dt = c[t] - g * c[t - 1]
        s[t] = dt if dt > SPIKE_FLOOR else 0.0
    return c.astype(np.float32), s.astype(np.float32)


def oasis_ar1(
    y: np.ndarray, g: float, lam: float = 0.0, s_min: float = 0.0
) -> tuple[np.ndarray, np.ndarray]:
    """Numba OASIS AR(1); same contract as :func:`oasis_ar1_reference`."""
    check_decay(g)
    return _oasis_numba(
        np.ascontiguousarray(y, dtype=np.float64), float(g), float(lam), float(s_min)
    )


def check_decay(g: float | np.ndarray, name: str = "g") -> None:
    """Raise :class:`DeconvError` unless every AR(1) coefficient is in (0, 1)."""
    g = np.asarray(g, dtype=np.float64)
    bad = ~((g > 0.0) & (g < 1.0))
    if bad.any():
        raise DeconvError(f"AR(1) coefficient {name} must be in (0, 1), got {g[bad].ravel()[:5]}")


def decay_factor(tau_decay_s: float, fps_hz: float) -> float:
    """g = exp(-1 / (tau_decay_s * fps_hz)): the per-frame calcium decay."""
    return float(np.exp(-1.0 / (tau_decay_s * fps_hz)))
