"""SimConfig validation: bad values raise SimConfigError naming the field and value."""

import dataclasses

import pytest

from rtcal.errors import RtcalError
from rtcal.sim import ActivityParams, BackgroundParams, CellParams, SimConfig, make_config
from rtcal.sim.config import SimConfigError


@pytest.mark.parametrize(
    ("overrides", "field"),
    [
        ({"fps_hz": -30.0}, "fps_hz"),
        ({"fps_hz": 0.0}, "fps_hz"),
        ({"n_frames": 0}, "n_frames"),
        ({"n_frames": 2.5}, "n_frames"),
        ({"radius_max_px": 200.0}, "radius_max_px"),
        ({"radius_min_px": 9.0, "radius_max_px": 8.0}, "radius_min_px"),
        ({"height": 8}, "height"),
        ({"n_neurons": -1}, "n_neurons"),
        ({"motion_px": -1.0}, "motion_px"),
        ({"noise_level": float("nan")}, "noise_level"),
        ({"mode": "3p"}, "mode"),
        ({"chunk_frames": 0}, "chunk_frames"),
    ],
)
def test_bad_values_name_the_field(overrides, field):
    with pytest.raises(SimConfigError) as info:
        SimConfig(**overrides)
    message = str(info.value)
    assert field in message
    assert repr(overrides[field]) in message
    assert isinstance(info.value, RtcalError)


@pytest.mark.parametrize(
    ("cls", "kwargs", "field"),
    [
        (ActivityParams, {"tau_decay_min_s": 2.0, "tau_decay_max_s": 1.0}, "tau_decay_min_s"),
        (ActivityParams, {"burst_branching": 1.0}, "burst_branching"),
        (ActivityParams, {"tau_rise_s": 0.5}, "tau_rise_s"),
        (CellParams, {"donut_fraction": 1.5}, "donut_fraction"),
        (BackgroundParams, {"n_components": 0}, "n_components"),
        (BackgroundParams, {"bleach_fraction": 1.0}, "bleach_fraction"),
    ],
)
def test_part_params_validated(cls, kwargs, field):
    with pytest.raises(SimConfigError, match=field):
        cls(**kwargs)


def test_make_config_modes_and_unknown_override():
    two, one = make_config("2p"), make_config("1p")
    assert one.radius_min_px > two.radius_max_px - 1  # 1p cells are larger
    assert one.background.level > 3 * two.background.level
    assert one.cells.donut_fraction == 0
    with pytest.raises(SimConfigError, match="n_cells"):
        make_config("2p", n_cells=3)
    with pytest.raises(SimConfigError, match="mode"):
        make_config("blob")


def test_config_is_frozen_and_never_rewritten():
    cfg = make_config(fps_hz=7.0, radius_min_px=3.0, radius_max_px=5.0)
    assert (cfg.fps_hz, cfg.radius_min_px, cfg.radius_max_px) == (7.0, 3.0, 5.0)
    with pytest.raises(dataclasses.FrozenInstanceError):
        cfg.fps_hz = 10.0
