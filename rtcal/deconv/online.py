"""Streaming OASIS AR(1): one frame in, denoised calcium and spikes of every component out.

Same problem as :mod:`rtcal.deconv.oasis` (Friedrich, Zhou & Paninski 2017,
PLoS Comput Biol 13:e1005423), per component k with its own g_k and s_min_k:

    min_c  1/2 || c - y ||^2 + lam || s ||_1
    s.t.   s_t = c_t - g c_{t-1} >= s_min  or  s_t = 0,   c >= 0

OASIS is already online: each new frame opens a pool and merges backwards
while the constraint is violated, so after frame t the pools are the solution
for y_0..y_t. What a frame reports is *provisional*: c_t is the value of the
last pool at t, s_t = c_t - g c_{t-1} under the current pools. Later frames may
merge that pool away (the spike disappears, c_t is revised); the real-time
values are what a closed loop can act on.

Bounded memory (the approximation): each component keeps at most
``max_pools`` recent pools in a ring. When a new pool would exceed it, the
oldest pool is declared final and dropped, so a later cascade of merges can no
longer reach it. Exact OASIS could, but only if every one of the
``max_pools`` newer pools merged first; with ``max_pools`` well above the
number of pools in a few decay times the streaming solution is the batch
solution (tests/test_deconv_online.py shows both).

NaN (or inf) in y is a missing observation: the component's calcium decays by g
and s = 0 for that frame, nothing else changes (see :mod:`rtcal.deconv.oasis`).
"""

from __future__ import annotations

import numba
import numpy as np

from rtcal.deconv.oasis import POOL_DTYPE, Ar1Pools, DeconvError, check_decay, push_sample

_GROWTH = 2  # capacity multiplier when components are added


@numba.njit(cache=True)
def _step_kernel(y, params, pools, ring, c_out, s_out):  # pragma: no cover - compiled
    for k in range(y.shape[0]):
        c, s = push_sample(float(y[k]), k, params[k, 0], params[k, 1], params[k, 2], pools, ring)
        c_out[k] = c
        s_out[k] = s


class OnlineDeconvolver:
    """Streaming OASIS AR(1) for K components, pools in preallocated (K, max_pools) rings.

    g: float (K,) per-frame decay of each component, in (0, 1) (see
    :func:`rtcal.deconv.oasis.decay_factor`); s_min: float (K,) smallest spike,
    >= 0 (e.g. 3 x the noise sigma from :func:`rtcal.deconv.ar.noise_sigma`);
    lam: L1 penalty on spikes, >= 0; max_pools: pools kept per component, >= 2.
    Memory: 40 bytes x max_pools per component.
    """

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
        self._alloc(max(np.size(g), 1))
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
        _step_kernel(y, self._params, self._pools, self._ring, c, s)
        return c, s

    def add_components(self, g: np.ndarray, s_min: np.ndarray) -> None:
        """Append components (their frame clock starts at the next step)."""
        g = np.atleast_1d(np.asarray(g, dtype=np.float64))
        s_min = np.atleast_1d(np.asarray(s_min, dtype=np.float64))
        _check_params(g, s_min)
        k0, k1 = self._n, self._n + g.size
        if k1 > len(self._params_all):
            self._alloc(max(k1, _GROWTH * len(self._params_all)))
        self._params_all[k0:k1] = np.stack([g, s_min, self.lam * (1 - g)], axis=1)
        self._ring_all[k0:k1] = 0
        self._resize(k1)

    def remove_components(self, index: np.ndarray) -> None:
        """Drop components (e.g. retired or merged by the NMF); the rest keep their order."""
        keep = np.ones(self._n, bool)
        keep[np.asarray(index, dtype=np.int64)] = False
        m = int(keep.sum())
        for a in (self._params_all, self._pools_all, self._ring_all):
            a[:m] = a[: self._n][keep]
        self._resize(m)

    def set_params(
        self, k_index: int | np.ndarray, g: np.ndarray | None = None,
        s_min: np.ndarray | None = None,
    ) -> None:
        """Update kinetics of components k_index.

        A new s_min only changes future merge decisions. A new g invalidates the
        pools (their values are fits under the old g and the raw data are not
        kept): the history is declared final and the component restarts from one
        pool holding its current calcium as a pseudo-observation of weight 1, so
        c continues without a spurious spike.
        """
        k = np.atleast_1d(np.asarray(k_index, dtype=np.int64))
        if k.size and (k.min() < 0 or k.max() >= self._n):
            raise DeconvError(f"k_index out of range [0, {self._n}): {k}")
        par = self._params
        g_new = par[k, 0] if g is None else np.broadcast_to(np.asarray(g, np.float64), k.shape)
        s_new = par[k, 1] if s_min is None else np.broadcast_to(
            np.asarray(s_min, np.float64), k.shape
        )
        _check_params(g_new, s_new)
        par[k, 1] = s_new
        if g is None:
            return
        c_now = self._current(k)
        par[k, 0], par[k, 2] = g_new, self.lam * (1 - g_new)
        n_frames = self._ring[k, 2]
        self._ring[k, 0], self._ring[k, 1] = 0, (n_frames > 0).astype(np.int64)
        self._pools[k, 0] = [(c, 1.0, 1.0, 1, t - 1) for c, t in zip(c_now, n_frames, strict=True)]

    def denoised_tail(self, k: int) -> tuple[int, np.ndarray]:
        """(first frame, c float64) of component k over the frames its retained pools cover.

        Frames count from the step at which the component was added.
        """
        P = self.max_pools
        head, n, n_frames = (int(x) for x in self._ring[k])
        pools = Ar1Pools(float(self._params[k, 0]), 0.0, 0.0, P)
        pools.pools = [list(self._pools[k, (head + j) % P].item()) for j in range(n)]
        pools.n_frames = n_frames
        return pools.denoised()

    def _current(self, k: np.ndarray) -> np.ndarray:
        head, n = self._ring[k, 0], self._ring[k, 1]
        last = self._pools[k, (head + n - 1) % self.max_pools]
        return np.where(n > 0, np.maximum(last["v"], 0.0) * last["d"], 0.0)

    def _alloc(self, capacity: int) -> None:
        """Storage for ``capacity`` components; rows [0, n) carried over."""
        n = self._n
        params = np.zeros((capacity, 3))  # g, s_min, shift = lam (1 - g)
        pools = np.zeros((capacity, self.max_pools), POOL_DTYPE)
        ring = np.zeros((capacity, 3), np.int64)  # oldest pool, n pools, frames seen
        if n:
            params[:n], pools[:n], ring[:n] = self._params, self._pools, self._ring
        self._params_all, self._pools_all, self._ring_all = params, pools, ring
        self._resize(n)

    def _resize(self, n: int) -> None:
        # Views cached so that step() slices nothing.
        self._n = n
        self._params = self._params_all[:n]
        self._pools = self._pools_all[:n]
        self._ring = self._ring_all[:n]


class OnlineDeconvolverReference:
    """Plain reference for :class:`OnlineDeconvolver`: one :class:`Ar1Pools` per component."""

    def __init__(
        self, g: np.ndarray, s_min: np.ndarray, *, lam: float = 0.0, max_pools: int = 64
    ) -> None:
        self.lam, self.max_pools = float(lam), int(max_pools)
        self.components: list[Ar1Pools] = []
        self.add_components(g, s_min)

    def add_components(self, g: np.ndarray, s_min: np.ndarray) -> None:
        for gk, sk in zip(np.atleast_1d(g), np.atleast_1d(s_min), strict=True):
            shift = self.lam * (1 - float(gk))
            self.components.append(Ar1Pools(float(gk), float(sk), shift, self.max_pools))

    def step(self, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        out = np.array([p.push(float(yk)) for p, yk in zip(self.components, y, strict=True)])
        out = out.reshape(len(self.components), 2)
        return out[:, 0].astype(np.float32), out[:, 1].astype(np.float32)


def _check_params(g: np.ndarray, s_min: np.ndarray) -> None:
    if g.shape != s_min.shape or g.ndim != 1:
        raise DeconvError(f"g and s_min must be 1-D of equal length, got {g.shape}, {s_min.shape}")
    check_decay(g)
    bad = ~(np.isfinite(s_min) & (s_min >= 0))
    if bad.any():
        raise DeconvError(f"s_min must be finite and >= 0, got {s_min[bad][:5]}")
