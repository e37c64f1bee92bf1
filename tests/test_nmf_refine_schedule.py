"""Footprints are refined only once their traces carry enough energy: the schedule's
rules, and a cell seen only at rest keeping the detector's shape in the online NMF."""

import math

import numpy as np

from rtcal.nmf.online import OnlineNMF, OnlineNMFConfig
from rtcal.nmf.refine_schedule import RefineSchedule


def test_threshold_flip_round_robin_retire_and_reset():
    s = RefineSchedule(noise_px=2.0, max_noise=0.5, per_frame=2, floor_sd=0.0)
    # M_kk >= sigma^2 n / (max_noise^2 ||a||^2) = 4 * 100 / (0.25 * 16) = 100
    s.add(np.array([100, 100, 100, 100]), np.array([16.0, 16.0, 16.0, 0.0]), np.zeros(4))
    np.testing.assert_allclose(s.threshold[:3], 100.0)
    assert s.threshold[3] == math.inf  # an empty footprint never qualifies
    assert s.next_order().size == 0
    s.observe(np.array([9.0, 0.0, 11.0, 50.0]))  # energies 81, 0, 121, 2500
    assert s.refinable.tolist() == [False, False, True, False]
    s.observe(np.array([5.0, 1.0, 0.0, 0.0]))  # 106: component 0 qualifies, and stays so
    s.observe(np.zeros(4), beta=0.5)
    assert s.refinable.tolist() == [True, False, True, False]
    assert s.next_order().tolist() == [0, 2]
    s.add(np.array([100]), np.array([16.0]), np.array([400.0]))  # born with a transient
    orders = [s.next_order().tolist() for _ in range(3)]
    assert orders == [[4, 0], [2, 4], [0, 2]]  # round robin over the refinable ones
    s.retire(2)
    assert s.next_order().tolist() == [4, 0]
    s.reset(1, 100, 4.0, 500.0)  # a merge: threshold 400 for the new footprint
    assert s.refinable[1] and s.threshold[1] == 400.0
    everyone = RefineSchedule(noise_px=2.0, max_noise=math.inf, per_frame=8)
    everyone.add(np.array([100, 100]), np.array([16.0, 16.0]), np.zeros(2))
    assert everyone.next_order().tolist() == [0, 1]


def test_only_the_trace_above_its_noise_floor_counts():
    s = RefineSchedule(noise_px=2.0, max_noise=0.5, per_frame=2)  # floor 3 sigma
    s.add(np.array([100]), np.array([16.0]), np.zeros(1))  # trace sigma 2 / 4 = 0.5
    assert s.floor[0] == 1.5
    for _ in range(10_000):  # 10,000 frames of noise at the floor: no energy
        s.observe(np.array([1.5]))
    assert s.energy[0] == 0 and not s.refinable[0]
    s.observe(np.array([11.5]))  # one transient 10 above the floor: 100 = the threshold
    assert s.energy[0] == 100.0 and s.refinable[0]


def _disc(H, W, centre, r):
    yy, xx = np.mgrid[:H, :W]
    d2 = (yy - centre[0]) ** 2 + (xx - centre[1]) ** 2
    return (np.exp(-d2 / (2 * (r / 1.5) ** 2)) * (d2 <= r * r)).astype(np.float32)


def _iou(a, b):
    a, b = a >= 0.2 * a.max(), b >= 0.2 * b.max()
    return (a & b).sum() / (a | b).sum()


def _run(max_noise: float):
    rng = np.random.default_rng(0)
    H = W = 64
    resting, active = _disc(H, W, (20, 20), 6.0), _disc(H, W, (44, 44), 6.0)
    T = 900
    spikes = rng.random(T) < 0.03
    calcium = np.zeros(T)
    for t in range(1, T):
        calcium[t] = 0.93 * calcium[t - 1] + 40.0 * spikes[t]
    frames = (100.0 + 30.0 * resting[None] + calcium[:, None, None] * active[None]
              + rng.normal(0, 4.0, (T, H, W))).astype(np.float32)
    config = OnlineNMFConfig(radius_px=6.0, max_new_per_search=0, merge_every=0,
                             refine_max_noise=max_noise)
    nmf = OnlineNMF(config, 30.0, np.stack([resting, active]), frames[:300])
    for frame in frames[300:]:
        nmf.step(frame)
    final = nmf.A.dense()
    return _iou(final[0], resting), _iou(final[1], active), nmf.schedule.refinable.tolist()


def test_a_cell_seen_only_at_rest_keeps_its_shape():
    iou_resting, iou_active, refinable = _run(0.3)
    assert refinable == [False, True]
    assert iou_resting == 1.0  # never refined: exactly the detector's footprint
    assert iou_active > 0.8
    # refined from its noise-only trace, the same footprint turns to speckle
    iou_resting_ungated, _, refinable = _run(math.inf)
    assert refinable == [True, True]
    assert iou_resting_ungated < 0.7, iou_resting_ungated
