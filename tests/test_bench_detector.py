"""bench/detector.py's activity ceiling: the spike counts are the simulator's."""

import importlib.util
import sys
from pathlib import Path

import numpy as np
import pytest

from rtcal.sim import Simulation, make_config

BENCH = Path(__file__).resolve().parents[1] / "bench" / "detector.py"


@pytest.fixture(scope="module")
def bench():
    spec = importlib.util.spec_from_file_location("bench_detector", BENCH)
    module = importlib.util.module_from_spec(spec)
    sys.modules["bench_detector"] = module
    spec.loader.exec_module(module)
    return module


def test_activity_ceiling_counts_the_cells_that_spike_in_the_window(bench):
    spikes: list[np.ndarray] = []
    frames, footprints, *_ = bench.simulate("2p", 64, 8, 150, seed=5, spikes=spikes)
    cfg = make_config("2p", height=64, width=64, n_neurons=8, n_frames=150, seed=5)
    want = np.concatenate([c.spikes for c in Simulation(cfg).chunks()]) > 0
    assert frames.shape == (150, 64, 64) and len(footprints) == 8
    np.testing.assert_array_equal(spikes[0], want.sum(axis=0))
