"""Spikes S and calcium C: bursty, slowly modulated Poisson trains through AR(2) kinetics.

Per cell k and frame t (dt = 1 / fps_hz):

    z(t), z_k(t)  OU processes in log-rate, shared and per-cell:
                  z(t+1) = rho z(t) + sigma sqrt(1 - rho^2) xi,  rho = exp(-dt / tau_mod)
    lambda_k(t) = r_k (1 - eta) exp(z + z_k - (sigma_s^2 + sigma_c^2) / 2) + e_k(t)
    N_k(t)      ~ Poisson(lambda_k(t) dt)                        spikes in frame t
    e_k(t+1)    = rho_b e_k(t) + eta (1 - rho_b) / dt N_k(t)      self-excitation (bursts)

so the long-run rate is r_k (a Hawkes process with branching ratio eta has
mean rate mu / (1 - eta)). The neuropil follows the same shared factor through
the calcium response of a virtual population (ActivityChunk.population).
Calcium in dF/F units (0 at rest):

    C_k(t) = g1 C_k(t-1) + g2 C_k(t-2) + (amp_k / h_max) sum_{i <= N_k(t)} w_i
    g1 = d + r, g2 = -d r, d = exp(-dt / tau_decay), r = exp(-dt / tau_rise)

w_i ~ Gamma(mean 1, CV spike_amp_cv) per-spike amplitude; h_max the peak of
the AR(2) impulse response, so a single spike peaks at amp_k dF/F on average.
Vogelstein et al. 2010; Pnevmatikakis et al. 2016 (AR(2) calcium model).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from rtcal.sim.config import ActivityParams

NEUROPIL_POPULATION = 25  # unresolved cells whose processes make up the neuropil signal


def ar2_coefficients(
    tau_rise_s: np.ndarray, tau_decay_s: np.ndarray, fps_hz: float
) -> tuple[np.ndarray, np.ndarray]:
    """(g1, g2) of C(t) = g1 C(t-1) + g2 C(t-2) + s(t) for the given rise/decay times."""
    d = np.exp(-1.0 / (np.asarray(tau_decay_s) * fps_hz))
    r = np.exp(-1.0 / (np.asarray(tau_rise_s) * fps_hz))
    return d + r, -d * r


def ar2_impulse_response(g1: np.ndarray, g2: np.ndarray, n_frames: int) -> np.ndarray:
    """h (n_frames, K): response to a unit spike at frame 0, h[0] = 1."""
    g1, g2 = np.atleast_1d(g1), np.atleast_1d(g2)
    h = np.zeros((n_frames, g1.size))
    h[0] = 1.0
    for t in range(1, n_frames):
        h[t] = g1 * h[t - 1] + (g2 * h[t - 2] if t > 1 else 0.0)
    return h


def ar2_peak(g1: np.ndarray, g2: np.ndarray) -> np.ndarray:
    """Peak of the AR(2) impulse response (K,); 1 when the rise is shorter than a frame."""
    return ar2_impulse_response(g1, g2, 64).max(axis=0)


@dataclass(frozen=True)
class CellKinetics:
    """Per-cell activity parameters, arrays of shape (K,) float64."""

    rate_hz: np.ndarray
    tau_rise_s: np.ndarray
    tau_decay_s: np.ndarray
    spike_dff: np.ndarray  # mean single-spike peak dF/F
    g1: np.ndarray
    g2: np.ndarray
    peak: np.ndarray  # ar2_peak(g1, g2)


def draw_kinetics(
    rng: np.random.Generator, n_cells: int, p: ActivityParams, fps_hz: float
) -> CellKinetics:
    """Rates log-normal (most cells rarely fire), decay times and spike sizes per cell."""
    rate = np.minimum(
        p.rate_max_hz, rng.lognormal(np.log(p.rate_median_hz), p.rate_log_sigma, n_cells)
    )
    tau_decay = rng.uniform(p.tau_decay_min_s, p.tau_decay_max_s, n_cells)
    tau_rise = np.full(n_cells, p.tau_rise_s)
    spike_dff = np.exp(rng.uniform(np.log(p.spike_dff_min), np.log(p.spike_dff_max), n_cells))
    g1, g2 = ar2_coefficients(tau_rise, tau_decay, fps_hz)
    return CellKinetics(rate, tau_rise, tau_decay, spike_dff, g1, g2, ar2_peak(g1, g2))


@dataclass(frozen=True)
class ActivityChunk:
    """Activity of n consecutive frames.

    spikes (n, K) float32 spike counts; calcium (n, K) float32 dF/F;
    population (n,) float64: neuropil drive P(t), the relative deviation of the
    spike count of a virtual population (NEUROPIL_POPULATION cells of the mean
    rate, modulated by the shared factor exp(z)) from its mean, low-passed by the
    median calcium kernel with unit DC gain.
    """

    spikes: np.ndarray
    calcium: np.ndarray
    population: np.ndarray


class ActivityModel:
    """Carries the activity state from chunk to chunk, so streams can be endless."""

    def __init__(self, kinetics: CellKinetics, p: ActivityParams, fps_hz: float) -> None:
        k = kinetics.rate_hz.size
        self.kin, self.p, self.dt = kinetics, p, 1.0 / fps_hz
        self.rho_mod = np.exp(-self.dt / p.modulation_tau_s)
        self.rho_burst = np.exp(-self.dt / p.burst_tau_s)
        # exp(z - sigma_s^2 / 2) (the drive) and exp(z_k - sigma_c^2 / 2) both have mean 1
        self.base_hz = kinetics.rate_hz * (1 - p.burst_branching) * np.exp(
            -0.5 * p.cell_log_sigma**2
        )
        self.scale = kinetics.spike_dff / kinetics.peak
        tau_pop = float(np.median(kinetics.tau_decay_s)) if k else p.tau_decay_min_s
        g1, g2 = ar2_coefficients(p.tau_rise_s, tau_pop, fps_hz)
        self.pop_g = (float(g1), float(g2))
        mean_rate = float(np.mean(kinetics.rate_hz)) if k else p.rate_median_hz
        self.pop_rate_hz = NEUROPIL_POPULATION * mean_rate
        self.c1, self.c2, self.excite = np.zeros(k), np.zeros(k), np.zeros(k)
        self.z_cell = np.zeros(k)
        self.z_shared, self.pop1, self.pop2 = 0.0, 0.0, 0.0
        self._started = False

    def _start(self, rng: np.random.Generator) -> None:
        """Draw the OU states from their stationary law (no warm-up transient)."""
        self.z_cell = rng.normal(0, self.p.cell_log_sigma, self.z_cell.size)
        self.z_shared = float(rng.normal(0, self.p.shared_log_sigma))
        self._started = True

    def step(self, rng: np.random.Generator, n_frames: int) -> ActivityChunk:
        """Advance ``n_frames`` frames using ``rng`` (one generator per chunk)."""
        if not self._started:
            self._start(rng)
        p, k = self.p, self.z_cell.size
        spikes = np.zeros((n_frames, k), np.float32)
        calcium = np.zeros((n_frames, k), np.float32)
        population = np.zeros(n_frames)
        innov = np.sqrt(1 - self.rho_mod**2)
        g1p, g2p = self.pop_g
        for t in range(n_frames):
            self.z_shared = self.rho_mod * self.z_shared + innov * p.shared_log_sigma * rng.normal()
            self.z_cell = self.rho_mod * self.z_cell + innov * p.cell_log_sigma * rng.normal(
                size=k
            )
            drive = np.exp(self.z_shared - 0.5 * p.shared_log_sigma**2)
            lam = self.base_hz * drive * np.exp(self.z_cell) + self.excite
            n = rng.poisson(lam * self.dt)
            amp = self._amplitudes(rng, n)
            c = self.kin.g1 * self.c1 + self.kin.g2 * self.c2 + self.scale * amp
            self.c2, self.c1 = self.c1, c
            self.excite = self.rho_burst * self.excite + (
                p.burst_branching * (1 - self.rho_burst) / self.dt
            ) * n
            n_pop = rng.poisson(self.pop_rate_hz * self.dt * drive)
            pop = g1p * self.pop1 + g2p * self.pop2 + (1 - g1p - g2p) * (
                n_pop / (self.pop_rate_hz * self.dt) - 1)
            self.pop2, self.pop1 = self.pop1, pop
            spikes[t], calcium[t], population[t] = n, c, pop
        return ActivityChunk(spikes, calcium, population)

    def _amplitudes(self, rng: np.random.Generator, n: np.ndarray) -> np.ndarray:
        """Sum of n per-spike amplitudes, each Gamma with mean 1 and CV spike_amp_cv."""
        cv = self.p.spike_amp_cv
        if cv == 0:
            return n.astype(np.float64)
        return rng.gamma(n / cv**2, cv**2)
