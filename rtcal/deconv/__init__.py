"""Spike inference (OASIS) and dF/F.

- :mod:`rtcal.deconv.oasis`: batch OASIS AR(1) and the pool kernel it shares with
- :mod:`rtcal.deconv.online`: streaming OASIS, one frame for all components;
- :mod:`rtcal.deconv.oasis_ar2` and :mod:`rtcal.deconv.online_ar2`: the same for
  AR(2) calcium (a rise and a decay); :mod:`rtcal.deconv.config` picks one;
- :mod:`rtcal.deconv.ar`: noise sigma and AR coefficients from an initialisation window;
- :mod:`rtcal.deconv.dff`: running baseline F0 and dF/F.
"""

from rtcal.deconv.ar import (
    ar_coefficients,
    estimate_g,
    noise_sigma,
    noise_sigma_psd,
    time_constant_s,
)
from rtcal.deconv.dff import DffConfig, RunningDff
from rtcal.deconv.oasis import DeconvError, decay_factor, oasis_ar1
from rtcal.deconv.online import OnlineDeconvolver

__all__ = [
    "DeconvError",
    "DffConfig",
    "OnlineDeconvolver",
    "RunningDff",
    "ar_coefficients",
    "decay_factor",
    "estimate_g",
    "noise_sigma",
    "noise_sigma_psd",
    "oasis_ar1",
    "time_constant_s",
]
