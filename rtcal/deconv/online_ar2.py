"""Streaming OASIS AR(2): one frame in, denoised calcium and spikes of every component out.

The AR(2) twin of :class:`rtcal.deconv.online.OnlineDeconvolver` (same calls,
same meaning), for calcium with a resolved rise (Friedrich, Zhou & Paninski
2017; the pools and their sufficient statistics are in
:mod:`rtcal.deconv.oasis_ar2`). Per component k, with its own (g1, g2) and
s_min:

    min_c  1/2 || c - y ||^2 + lam || s ||_1
    s.t.   s_t = c_t - g1 c_{t-1} - g2 c_{t-2} >= s_min  or  s_t = 0,

solved greedily pool by pool as each frame arrives. What a frame reports is
provisional, as for AR(1): c_t is the last pool's value at t, s_t the jump of
a pool that opened at t; later frames may merge it away.

Bounded memory: at most ``max_pools`` recent pools per component; when a new
pool would exceed it, the oldest is declared final and dropped, keeping only
its last value (the next pool's fit needs it). Memory: 64 bytes x max_pools
per component.

NaN (or inf) in y is a missing observation: the component's calcium follows
its own prediction and s = 0 for that frame.
"""

from __future__ import annotations

import numba
import numpy as np

from rtcal.deconv.oasis import DeconvError
from rtcal.deconv.oasis_ar2 import POOL2_DTYPE, Ar2Pools, ar2_params, push_sample_ar2

_GROWTH = 2  # capacity multiplier when components are added


@numba.njit(cache=True)
def _step_kernel(y, params, pools, ring, w_before, c_out, s_out):  # pragma: no cover - compiled
    for k in range(y.shape[0]):
        c, s = push_sample_ar2(float(y[k]), k, params, pools, ring, w_before)
        c_out[k] = c
        s_out[k] = s


class OnlineAr2Deconvolver:
    """Streaming OASIS AR(2) for K components, pools in preallocated (K, max_pools) rings.

    g: float (K, 2) per-component (g1, g2) with real roots 0 <= r < d < 1 (see
    :func:`rtcal.deconv.oasis_ar2.ar2_roots`); s_min: float (K,) smallest spike,
    >= 0; lam: L1 penalty on spikes, >= 0; max_pools: pools kept per component, >= 2.
    """

    order = 2

    def __init__(
        self, g: np.ndarray, s_min: np.ndarray, *, lam: float = 0.0, max_pools: int = 64
    ) -> None:
        if not (isinstance(max_pools, (int, np.integer)) and max_pools >= 2):
            raise DeconvError(f"max_pools must be an integer >= 2, got {max_pools!r}")
        if not (np.isfinite(lam) and lam >= 0):
            raise DeconvError(f"lam must be finite and >= 0, got {lam}")
        self.lam = float(lam)
        self.max_pools = int(max_pools)
        self._n = 0
        self._alloc(max(len(np.atleast_2d(g)), 1))
        self.add_components(g, s_min)

    @property
    def n_components(self) -> int:
        return self._n

    def step(self, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """One frame. y float (K,), baseline removed -> (c, s) float32 (K,), both >= 0."""
        y = np.asarray(y)
        if y.shape != (self._n,):
            raise DeconvError(f"y must have shape ({self._n},), got {y.shape}")
        c = np.empty(self._n, np.float32)
        s = np.empty(self._n, np.float32)
        _step_kernel(y, self._params, self._pools, self._ring, self._w_before, c, s)
        return c, s

    def add_components(self, g: np.ndarray, s_min: np.ndarray) -> None:
        """Append components, g (n, 2) and s_min (n,) (their clocks start at the next step)."""
        g = np.asarray(g, np.float64).reshape(-1, 2) if np.size(g) else np.zeros((0, 2))
        s_min = np.atleast_1d(np.asarray(s_min, dtype=np.float64))
        if s_min.shape != (len(g),):
            raise DeconvError(f"g (n, 2) and s_min (n,) disagree: {g.shape}, {s_min.shape}")
        bad = ~(np.isfinite(s_min) & (s_min >= 0))
        if bad.any():
            raise DeconvError(f"s_min must be finite and >= 0, got {s_min[bad][:5]}")
        params = ar2_params(g, s_min, self.lam)
        k0, k1 = self._n, self._n + len(g)
        if k1 > len(self._params_all):
            self._alloc(max(k1, _GROWTH * len(self._params_all)))
        self._params_all[k0:k1] = params
        self._ring_all[k0:k1] = (0, 0, 0, 1)
        self._w_before_all[k0:k1] = 0.0
        self._resize(k1)

    def _alloc(self, capacity: int) -> None:
        """Storage for ``capacity`` components; rows [0, n) carried over."""
        n = self._n
        params = np.zeros((capacity, 6))  # g1, g2, d, r, s_min, shift
        pools = np.zeros((capacity, self.max_pools), POOL2_DTYPE)
        ring = np.zeros((capacity, 4), np.int64)  # oldest, n pools, frames, oldest is first
        w_before = np.zeros(capacity)
        if n:
            params[:n], pools[:n], ring[:n] = self._params, self._pools, self._ring
            w_before[:n] = self._w_before
        self._params_all, self._pools_all, self._ring_all = params, pools, ring
        self._w_before_all = w_before
        self._resize(n)

    def _resize(self, n: int) -> None:
        # Views cached so that step() slices nothing.
        self._n = n
        self._params = self._params_all[:n]
        self._pools = self._pools_all[:n]
        self._ring = self._ring_all[:n]
        self._w_before = self._w_before_all[:n]


class OnlineAr2DeconvolverReference:
    """Plain reference for :class:`OnlineAr2Deconvolver`: one :class:`Ar2Pools` per component."""

    def __init__(
        self, g: np.ndarray, s_min: np.ndarray, *, lam: float = 0.0, max_pools: int = 64
    ) -> None:
        self.lam, self.max_pools = float(lam), int(max_pools)
        self.components: list[Ar2Pools] = []
        self.add_components(g, s_min)

    def add_components(self, g: np.ndarray, s_min: np.ndarray) -> None:
        g = np.asarray(g, np.float64).reshape(-1, 2)
        for (g1, g2), sk in zip(g, np.atleast_1d(s_min), strict=True):
            shift = self.lam * (1 - g1 - g2)
            self.components.append(Ar2Pools(g1, g2, float(sk), shift, self.max_pools))

    def step(self, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        out = np.array([p.push(float(yk)) for p, yk in zip(self.components, y, strict=True)])
        out = out.reshape(len(self.components), 2)
        return out[:, 0].astype(np.float32), out[:, 1].astype(np.float32)
