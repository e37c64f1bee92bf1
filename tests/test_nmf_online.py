"""OnlineNMF with known footprints: traces, background modes, new components."""

import dataclasses

import numpy as np
import pytest

from rtcal.nmf.online import OnlineNMF, OnlineNMFConfig, OnlineNMFConfigError
from rtcal.sim import Simulation, make_config, static_truth


def _movie(mode, seed, n_frames=600, rate_median_hz=1.0):
    activity = dataclasses.replace(make_config(mode).activity, rate_median_hz=rate_median_hz)
    cfg = make_config(mode, height=128, width=128, n_frames=n_frames, n_neurons=12, seed=seed,
                      motion_px=0.0, activity=activity)
    sim = Simulation(cfg)
    frames, calcium = [], []
    for f in sim.stream():
        frames.append(f.image.astype(np.float32))
        calcium.append(f.calcium)
    truth = static_truth(sim)
    return cfg, truth["footprints"], np.stack(frames), np.stack(calcium, 1), truth["baseline"]


def _median_corr(nmf, frames, calcium, K):
    traces = np.stack([nmf.step(f).traces[:K] for f in frames], axis=1)
    corr = [np.corrcoef(t, c)[0, 1] for t, c in zip(traces, calcium, strict=True)
            if c.std() > 0 and t.std() > 0]
    return float(np.nanmedian(corr))


@pytest.mark.parametrize("mode,background", [("1p", "ring"), ("2p", "lowrank")])
def test_known_footprints_give_accurate_traces(mode, background):
    cfg, A, frames, calcium, _ = _movie(mode, seed=5, rate_median_hz=1.0)
    # Refinement is off in ring mode (see rtcal.engine.pipeline.pipeline_config).
    config = OnlineNMFConfig(radius_px=cfg.radius_max_px * 0.8, background=background,
                             max_new_per_search=0,
                             refine_per_frame=0 if background == "ring" else 8)
    nmf = OnlineNMF(config, cfg.fps_hz, A, frames[:300])
    assert _median_corr(nmf, frames[300:], calcium[:, 300:], len(A)) > 0.85


def test_ring_beats_lowrank_on_one_photon_data():
    cfg, A, frames, calcium, _ = _movie("1p", seed=6, rate_median_hz=1.0)
    scores = {}
    for background in ("ring", "lowrank"):
        config = OnlineNMFConfig(radius_px=cfg.radius_max_px * 0.8, background=background,
                                 max_new_per_search=0, refine_per_frame=0)
        nmf = OnlineNMF(config, cfg.fps_hz, A, frames[:300])
        scores[background] = _median_corr(nmf, frames[300:], calcium[:, 300:], len(A))
    # Measured when written: ring 0.98, low-rank 0.94 (at 256x256 with 40 cells the
    # gap is far larger: 0.93 vs 0.45, see rtcal/nmf/ring.py).
    assert scores["ring"] > 0.95 and scores["ring"] > scores["lowrank"] + 0.02, scores


def test_a_cell_missing_from_the_initial_set_is_added_when_it_fires():
    cfg, A, frames, calcium, baseline = _movie("2p", seed=7, n_frames=900, rate_median_hz=0.5)
    # Drop the cell with the largest transient (in photons) after initialisation.
    target = int(np.argmax(baseline * calcium[:, 300:].max(axis=1)))
    keep = np.delete(np.arange(len(A)), target)
    nmf = OnlineNMF(OnlineNMFConfig(radius_px=6.0), cfg.fps_hz, A[keep], frames[:300])
    for f in frames[300:]:
        nmf.step(f)
    added = np.flatnonzero(nmf.A.born_frame > 0)
    assert added.size >= 1
    dense = nmf.A.dense()[added] >= 0.2
    truth = A[target] >= 0.2 * A[target].max()
    iou = (dense & truth).sum(axis=(1, 2)) / (dense | truth).sum(axis=(1, 2))
    assert iou.max() >= 0.5


def test_config_names_bad_values():
    with pytest.raises(OnlineNMFConfigError, match="background"):
        OnlineNMFConfig(background="none")
    with pytest.raises(OnlineNMFConfigError, match="forget"):
        OnlineNMFConfig(forget=0.5)
