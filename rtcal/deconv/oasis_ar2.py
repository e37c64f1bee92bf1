"""OASIS for AR(2) calcium dynamics (a rise and a decay): pools, batch solver, references.

Friedrich, Zhou & Paninski 2017 (PLoS Comput Biol 13:e1005423), the AR(2)
variant of OASIS. The calcium follows

    c_t = g1 c_{t-1} + g2 c_{t-2} + s_t,   g1 = d + r,  g2 = -d r,

with d = exp(-1 / (tau_decay_s fps_hz)) and r = exp(-1 / (tau_rise_s fps_hz)),
0 <= r < d < 1 (see :func:`ar2_roots`). For a trace y it solves, greedily,

    min_c  1/2 || c - y ||^2 + lam || s ||_1
    s.t.   s_t = c_t - g1 c_{t-1} - g2 c_{t-2} >= s_min  or  s_t = 0.

A pool is a run of frames from one spike to the next. A pool that starts at
frame t, after a pool whose last value is w', evolves freely:

    c_{t+k} = h_k v + g2 h_{k-1} w',   h_k = (d^(k+1) - r^(k+1)) / (d - r),  h_{-1} = 0,

with v = c_t. Given w', the least-squares v is

    v = (sum_k h_k y_{t+k} - w' g2 sum_k h_k h_{k-1}) / sum_k h_k^2.

Each new frame opens a pool; while its value is below the previous pool's
continuation plus s_min, the two merge and the merged pool is refitted, with
its predecessor's w' held fixed. For AR(2) this greedy pass is not guaranteed
to reach the optimum (it is for AR(1)); the paper, and
tests/test_deconv_oasis_ar2.py against a dense NNLS, find it very close.
The first pool of a trace has no predecessor and decays purely, c = v d^k.

Sufficient statistics (so that a merge needs no raw data, O(1) per merge):
a pool keeps Dy = sum_k d^(k+1) y_{t+k}, Ry = sum_k r^(k+1) y_{t+k},
pd = d^(l-1) and pr = r^(l-1) for its length l. Then
sum_k h_k y_{t+k} = (Dy - Ry) / (d - r), and sum_k h_k^2 and sum_k h_k h_{k-1}
are geometric sums in d^2, d r and r^2 (:func:`_h_sums`). Merging a pool of
length l1 with the next: Dy = Dy1 + d^l1 Dy2, Ry = Ry1 + r^l1 Ry2,
pd = d pd1 pd2, pr = r pr1 pr2.

The L1 penalty shifts the data by lam (1 - g1 - g2) (the stationary form, as
in :mod:`rtcal.deconv.oasis`). A non-finite sample is a missing observation:
it is replaced by the last pool's own prediction, which adds a zero residual
and leaves the pool's fit unchanged; its spike is 0.

:class:`Ar2Pools` is the plain reference: it keeps the (shifted) data and
computes every sum directly from h_k. :func:`push_sample_ar2` is the Numba
kernel on the sufficient statistics, shared by :func:`oasis_ar2` and the
streaming :class:`rtcal.deconv.online_ar2.OnlineAr2Deconvolver`.
:func:`deconv_nnls_reference` solves the same problem (lam = s_min = 0)
exactly by dense NNLS, for short traces.
"""

from __future__ import annotations

import math

import numba
import numpy as np
from scipy.optimize import nnls

from rtcal.deconv.oasis import SPIKE_FLOOR, DeconvError

# d - r at least this: the closed-form sums divide by (d - r)^2.
MIN_ROOT_GAP = 0.02
# Coefficients built at exactly MIN_ROOT_GAP (the clamps in rtcal.deconv.ar and the
# pipeline's priors) come back from (g1, g2) a few ulps short of it: accepted.
_GAP_SLACK = 1e-9

# One AR(2) pool: first value, last value, the two discounted data sums, d^(l-1),
# r^(l-1), length, first frame. 64 bytes: one cache line.
POOL2_DTYPE = np.dtype(
    [
        ("v", "f8"),
        ("w", "f8"),
        ("dy", "f8"),
        ("ry", "f8"),
        ("pd", "f8"),
        ("pr", "f8"),
        ("length", "i8"),
        ("start", "i8"),
    ]
)


def ar2_roots(g: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(d, r) float64 (K,) from g float (K, 2) = (g1, g2); DeconvError unless real,
    0 <= r < d < 1 and d - r >= MIN_ROOT_GAP."""
    g = np.asarray(g, np.float64)
    if g.ndim != 2 or g.shape[1] != 2:
        raise DeconvError(f"AR(2) coefficients must be (K, 2), got shape {g.shape}")
    disc = g[:, 0] ** 2 + 4 * g[:, 1]
    root = np.sqrt(np.maximum(disc, 0.0))
    d, r = (g[:, 0] + root) / 2, (g[:, 0] - root) / 2
    ok = np.isfinite(disc) & (disc >= 0) & (r >= 0) & (d < 1) & (d - r >= MIN_ROOT_GAP - _GAP_SLACK)
    if not ok.all():
        raise DeconvError(
            "AR(2) coefficients (g1, g2) must have real roots 0 <= r < d < 1 with "
            f"d - r >= {MIN_ROOT_GAP}; got {g[~ok][:3].tolist()}"
        )
    return d, r


def ar2_from_roots(d: np.ndarray, r: np.ndarray) -> np.ndarray:
    """g float64 (K, 2) = (d + r, -d r)."""
    d, r = np.asarray(d, np.float64), np.asarray(r, np.float64)
    return np.stack([d + r, -d * r], axis=-1)


# ------------------------------------------------------------------ reference
class Ar2Pools:
    """Plain-Python OASIS AR(2) pools of one component, at most ``max_pools`` kept.

    The readable reference for :func:`push_sample_ar2`: it keeps the shifted
    data and sums h_k y directly. ``shift`` = lam (1 - g1 - g2).
    """

    def __init__(self, g1: float, g2: float, s_min: float, shift: float, max_pools: int):
        (d,), (r,) = ar2_roots(np.array([[g1, g2]]))
        self.g1, self.g2, self.d, self.r = g1, g2, float(d), float(r)
        self.s_min, self.shift, self.max_pools = s_min, shift, max_pools
        self.y: list[float] = []  # shifted data (imputed where missing), all frames
        self.pools: list[list] = []  # [v, w, start, length]
        self.first = True  # pools[0] is the trace's first pool (no predecessor)
        self.w_before = 0.0  # last value of the pool before pools[0], once dropped
        self.n_frames = 0

    def h(self, k: int) -> float:
        if k < 0:
            return 0.0
        return (self.d ** (k + 1) - self.r ** (k + 1)) / (self.d - self.r)

    def _w_prev(self, i: int) -> float:
        return self.pools[i - 1][1] if i > 0 else self.w_before

    def _fit(self, i: int) -> None:
        """Least-squares value of pool i given its predecessor's last value."""
        pool = self.pools[i]
        start, length = pool[2], pool[3]
        y = self.y[start : start + length]
        if i == 0 and self.first:
            num = sum(self.d**k * yk for k, yk in enumerate(y))
            v = max(num / sum(self.d ** (2 * k) for k in range(length)), 0.0)
            pool[0], pool[1] = v, v * self.d ** (length - 1)
            return
        wp = self._w_prev(i)
        hy = sum(self.h(k) * yk for k, yk in enumerate(y))
        hh = sum(self.h(k) ** 2 for k in range(length))
        hh1 = sum(self.h(k) * self.h(k - 1) for k in range(length))
        v = (hy - wp * self.g2 * hh1) / hh
        pool[0] = v
        pool[1] = self.h(length - 1) * v + self.g2 * self.h(length - 2) * wp

    def _next_value(self, i: int) -> float:
        """Pool i's free continuation one frame past its end."""
        v, w, _, length = self.pools[i]
        if i == 0 and self.first:
            return w * self.d
        return self.h(length) * v + self.g2 * self.h(length - 1) * self._w_prev(i)

    def push(self, y: float) -> tuple[float, float]:
        """Add one frame; return (c, s) of this frame under the current pools."""
        t = self.n_frames
        self.n_frames += 1
        if not math.isfinite(y):
            if not self.pools:
                self.y.append(0.0)
                self.pools.append([0.0, 0.0, t, 1])
            else:
                self.y.append(self._next_value(len(self.pools) - 1))
                self.pools[-1][3] += 1
                self._fit(len(self.pools) - 1)
            return max(self.pools[-1][1], 0.0), 0.0
        if len(self.pools) == self.max_pools:
            self.w_before = self.pools[0][1]  # the oldest pool is final
            self.first = False
            self.pools.pop(0)
        self.y.append(y - self.shift)
        self.pools.append([0.0, 0.0, t, 1])
        self._fit(len(self.pools) - 1)
        while len(self.pools) > 1:
            i = len(self.pools) - 1
            if self.pools[i][0] >= self._next_value(i - 1) + self.s_min:
                break
            self.pools[i - 1][3] += self.pools[i][3]
            self.pools.pop()
            self._fit(i - 1)
        v, w, _, length = self.pools[-1]
        c = max(w, 0.0)
        if length > 1:
            return c, 0.0
        if len(self.pools) == 1:
            return c, (c if c > SPIKE_FLOOR else 0.0)
        s = v - self._next_value(len(self.pools) - 2)
        return c, (s if s > SPIKE_FLOOR else 0.0)

    def denoised(self) -> tuple[int, np.ndarray]:
        """(first frame, c float64 >= 0) over the frames the retained pools cover."""
        if not self.pools:
            return self.n_frames, np.zeros(0)
        first = self.pools[0][2]
        c = np.zeros(self.n_frames - first)
        for i, (v, _, start, length) in enumerate(self.pools):
            if i == 0 and self.first:
                values = [v * self.d**k for k in range(length)]
            else:
                wp = self._w_prev(i)
                values = [self.h(k) * v + self.g2 * self.h(k - 1) * wp for k in range(length)]
            c[start - first : start - first + length] = values
        return first, np.maximum(c, 0.0)


def spikes_ar2(c: np.ndarray, g1: float, g2: float) -> np.ndarray:
    """s_t = c_t - g1 c_{t-1} - g2 c_{t-2} (c_{-1} = c_{-2} = 0), rounding noise as 0."""
    c = np.asarray(c, np.float64)
    s = c.copy()
    s[1:] -= g1 * c[:-1]
    s[2:] -= g2 * c[:-2]
    s[s < SPIKE_FLOOR] = 0.0
    return s


def oasis_ar2_reference(
    y: np.ndarray, g: np.ndarray, lam: float = 0.0, s_min: float = 0.0
) -> tuple[np.ndarray, np.ndarray]:
    """Plain-Python OASIS AR(2). y: (T,), g: (g1, g2) -> (c, s), float32 (T,) each."""
    g1, g2 = (float(x) for x in g)
    pools = Ar2Pools(g1, g2, s_min, lam * (1 - g1 - g2), max_pools=max(len(y), 1))
    for yt in np.asarray(y, np.float64):
        pools.push(float(yt))
    _, c = pools.denoised()
    return c.astype(np.float32), spikes_ar2(c, g1, g2).astype(np.float32)


def deconv_nnls_reference(y: np.ndarray, g: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Exact min ||c - y||^2 with s >= 0 (lam = s_min = 0) by dense NNLS; short traces only.

    c = K s + a d^t: K the (T, T) lower-triangular AR(2) impulse response
    (K[t, u] = h_(t-u)), a >= 0 the initial calcium decaying with d (as OASIS's
    first pool). Returns (c, s) float64 (T,), s without the initial term.
    """
    y = np.asarray(y, np.float64)
    T = y.size
    if T > 2000:
        raise DeconvError(f"deconv_nnls_reference is dense O(T^2) memory; T={T} is too long")
    (d,), (r,) = ar2_roots(np.atleast_2d(g))
    k = np.arange(T)
    h = (d ** (k + 1) - r ** (k + 1)) / (d - r)
    lag = k[:, None] - k[None, :]
    design = np.where(lag >= 0, h[np.maximum(lag, 0)], 0.0)
    design = np.column_stack([design, d**k])
    x, _ = nnls(design, y, maxiter=50 * T)
    return design @ x, x[:T]


# --------------------------------------------------------------------- Numba
@numba.njit(cache=True, inline="always")
def _h_sums(d, r, pd, pr):  # pragma: no cover - compiled
    """(sum_{k<l} h_k^2, sum_{0<k<l} h_k h_{k-1}) for a pool with d^(l-1) = pd, r^(l-1) = pr."""
    dl, rl = d * pd, r * pr  # d^l, r^l
    s_dd = (1.0 - dl * dl) / (1.0 - d * d)
    s_dr = (1.0 - dl * rl) / (1.0 - d * r)
    s_rr = (1.0 - rl * rl) / (1.0 - r * r)
    scale = 1.0 / ((d - r) * (d - r))
    hh = (d * d * s_dd - 2.0 * d * r * s_dr + r * r * s_rr) * scale
    hh1 = (d * (s_dd - 1.0) - (d + r) * (s_dr - 1.0) + r * (s_rr - 1.0)) * scale
    return hh, hh1


@numba.njit(cache=True, inline="always")
def _fit_pool(p, wp, first, d, r, g2):  # pragma: no cover - compiled
    """Least-squares v and last value w of pool p (in place); wp: predecessor's last value."""
    if first:
        s_dd = (1.0 - (d * p.pd) ** 2) / (1.0 - d * d)
        v = p.dy / d / s_dd
        p.v = v if v > 0.0 else 0.0
        p.w = p.v * p.pd
        return
    hh, hh1 = _h_sums(d, r, p.pd, p.pr)
    p.v = ((p.dy - p.ry) / (d - r) - wp * g2 * hh1) / hh
    p.w = (p.v * (p.pd * d - p.pr * r) + g2 * wp * (p.pd - p.pr)) / (d - r)


@numba.njit(cache=True, inline="always")
def _next_value(p, wp, first, d, r, g2):  # pragma: no cover - compiled
    """Pool p's free continuation one frame past its end."""
    if first:
        return p.w * d
    dl, rl = d * p.pd, r * p.pr
    return (p.v * (d * dl - r * rl) + g2 * wp * (dl - rl)) / (d - r)


@numba.njit(cache=True, inline="always")
def _ring(i, P):  # pragma: no cover - compiled
    return i - P if i >= P else i


@numba.njit(cache=True)
def push_sample_ar2(y, k, params, pools, ring, w_before):  # pragma: no cover - compiled
    """Numba twin of :meth:`Ar2Pools.push` for row k of ring-buffered pools.

    params: float64 (K, 6) = (g1, g2, d, r, s_min, shift); pools: POOL2_DTYPE (K, P);
    ring: int64 (K, 4) = (oldest pool, number of pools, frames seen, 1 while the
    oldest pool is the trace's first); w_before: float64 (K,) last value of the
    pool dropped before the oldest. Returns (c, s) float64.
    """
    g2, d, r = params[k, 1], params[k, 2], params[k, 3]
    s_min, shift = params[k, 4], params[k, 5]
    P = pools.shape[1]
    head, n, t = ring[k, 0], ring[k, 1], ring[k, 2]
    ring[k, 2] = t + 1
    if not math.isfinite(y):
        if n == 0:
            p = pools[k, head]
            p.v, p.w, p.dy, p.ry, p.pd, p.pr, p.length, p.start = 0.0, 0.0, 0.0, 0.0, 1.0, 1.0, 1, t
            ring[k, 1] = 1
            return 0.0, 0.0
        last = n - 1
        p = pools[k, _ring(head + last, P)]
        first = last == 0 and ring[k, 3] == 1
        wp = w_before[k] if last == 0 else pools[k, _ring(head + last - 1, P)].w
        x = _next_value(p, wp, first, d, r, g2)  # the pool's own prediction
        dl, rl = d * p.pd, r * p.pr
        p.dy += dl * d * x
        p.ry += rl * r * x
        p.pd, p.pr, p.length = dl, rl, p.length + 1
        _fit_pool(p, wp, first, d, r, g2)
        return max(p.w, 0.0), 0.0
    if n == P:  # the oldest pool is final
        w_before[k] = pools[k, head].w
        ring[k, 3] = 0
        head, n = _ring(head + 1, P), n - 1
    p = pools[k, _ring(head + n, P)]
    x = y - shift
    p.dy, p.ry, p.pd, p.pr, p.length, p.start = d * x, r * x, 1.0, 1.0, 1, t
    first = n == 0 and ring[k, 3] == 1
    if first:
        p.v = x if x > 0.0 else 0.0
    else:
        p.v = x
    p.w = p.v
    n += 1
    while n > 1:
        i = n - 1
        q = pools[k, _ring(head + i - 1, P)]
        q_first = i == 1 and ring[k, 3] == 1
        wq = w_before[k] if i == 1 else pools[k, _ring(head + i - 2, P)].w
        if p.v >= _next_value(q, wq, q_first, d, r, g2) + s_min:
            break
        q.dy += (d * q.pd) * p.dy
        q.ry += (r * q.pr) * p.ry
        q.pd, q.pr = d * q.pd * p.pd, r * q.pr * p.pr
        q.length += p.length
        _fit_pool(q, wq, q_first, d, r, g2)
        n -= 1
        p = q
    ring[k, 0], ring[k, 1] = head, n
    c = p.w if p.w > 0.0 else 0.0
    if p.length > 1:
        return c, 0.0
    if n == 1:
        return c, (c if c > SPIKE_FLOOR else 0.0)
    q = pools[k, _ring(head + n - 2, P)]
    q_first = n == 2 and ring[k, 3] == 1
    wq = w_before[k] if n == 2 else pools[k, _ring(head + n - 3, P)].w
    s = p.v - _next_value(q, wq, q_first, d, r, g2)
    return c, (s if s > SPIKE_FLOOR else 0.0)


def ar2_params(g: np.ndarray, s_min: np.ndarray, lam: float) -> np.ndarray:
    """float64 (K, 6) rows (g1, g2, d, r, s_min, shift) for :func:`push_sample_ar2`."""
    g = np.atleast_2d(np.asarray(g, np.float64))
    d, r = ar2_roots(g)
    s_min = np.broadcast_to(np.asarray(s_min, np.float64), d.shape)
    shift = lam * (1 - g[:, 0] - g[:, 1])
    return np.column_stack([g[:, 0], g[:, 1], d, r, s_min, shift])


@numba.njit(cache=True)
def _oasis_ar2_numba(y, params):  # pragma: no cover - compiled
    T = y.shape[0]
    pools = np.zeros((1, max(T, 1)), POOL2_DTYPE)
    ring = np.zeros((1, 4), np.int64)
    ring[0, 3] = 1
    w_before = np.zeros(1)
    for t in range(T):
        push_sample_ar2(y[t], 0, params, pools, ring, w_before)
    g1, g2, d, r = params[0, 0], params[0, 1], params[0, 2], params[0, 3]
    c = np.zeros(T)
    wp = 0.0
    for j in range(ring[0, 1]):
        p = pools[0, j]
        for i in range(p.length):
            if j == 0:
                c[p.start + i] = p.v * d**i
            else:
                h_i = (d ** (i + 1) - r ** (i + 1)) / (d - r)
                h_im1 = (d**i - r**i) / (d - r)
                c[p.start + i] = h_i * p.v + g2 * h_im1 * wp
        wp = p.w
    for t in range(T):
        c[t] = max(c[t], 0.0)
    s = np.zeros(T)
    for t in range(T):
        x = c[t]
        if t >= 1:
            x -= g1 * c[t - 1]
        if t >= 2:
            x -= g2 * c[t - 2]
        s[t] = x if x > SPIKE_FLOOR else 0.0
    return c.astype(np.float32), s.astype(np.float32)


def oasis_ar2(
    y: np.ndarray, g: np.ndarray, lam: float = 0.0, s_min: float = 0.0
) -> tuple[np.ndarray, np.ndarray]:
    """Numba OASIS AR(2); same contract as :func:`oasis_ar2_reference`."""
    params = ar2_params(np.reshape(g, (1, 2)), float(s_min), float(lam))
    return _oasis_ar2_numba(np.ascontiguousarray(y, dtype=np.float64), params)
