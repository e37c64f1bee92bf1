"""Simulated calcium-imaging movies with ground truth (2p and 1p).

Y = g(t) [ b0 + sum_j f_j(t) u_j + sum_k a_k beta_k (1 + C_k(t)) ] shifted rigidly,
then shot and read noise (see docs/simulator.md for the whole model).

    from rtcal.sim import Simulation, make_config, write_simulation
    sim = Simulation(make_config("2p", n_frames=None))   # endless
    for frame in sim.stream(): ...                        # SimFrame per frame
"""

from rtcal.sim.config import (
    ActivityParams,
    BackgroundParams,
    CellParams,
    DetectorParams,
    SimConfig,
    SimConfigError,
    make_config,
)
from rtcal.sim.movie import SimChunk, SimFrame, Simulation
from rtcal.sim.writer import SimPaths, SimWriteError, static_truth, write_simulation

__all__ = [
    "ActivityParams",
    "BackgroundParams",
    "CellParams",
    "DetectorParams",
    "SimChunk",
    "SimConfig",
    "SimConfigError",
    "SimFrame",
    "SimPaths",
    "SimWriteError",
    "Simulation",
    "make_config",
    "static_truth",
    "write_simulation",
]
