"""Rigid sub-pixel motion: jitter + slow drift + occasional twitches.

Sign convention: ``shift[t] = (dy, dx)`` px is the displacement of the content
of frame t relative to the reference (truth) frame,

    Y_t(row, col) = scene_t(row - dy, col - dx),

so a feature at (r, c) in the truth footprints appears at (r + dy, c + dx) in
frame t, and registration means shifting frame t by -shift[t].

Per axis, with m = motion_px and dt = 1 / fps_hz:

    jitter  AR(1), time constant 0.1 s, stationary std 0.6 m   (breathing, heartbeat)
    drift   OU, time constant 20 s, stationary std 0.8 m        (slow tissue drift)
    twitch  Poisson events at 1 / 30 s; a jump of 3-5 m in a random direction that
            relaxes with time constant 0.4 s                    (brief larger displacement)

so the RMS of jitter + drift is m per axis. Shifts are clipped to +-max_shift_px
= 8 m, which the canvas margin covers.
"""

from __future__ import annotations

import numpy as np

JITTER_TAU_S, JITTER_STD = 0.1, 0.6
DRIFT_TAU_S, DRIFT_STD = 20.0, 0.8
TWITCH_RATE_HZ, TWITCH_TAU_S, TWITCH_AMP = 1.0 / 30.0, 0.4, (3.0, 5.0)
MAX_SHIFT_RATIO = 8.0


def max_shift_px(motion_px: float) -> float:
    """Largest |dy| or |dx| the motion model produces."""
    return MAX_SHIFT_RATIO * motion_px


class MotionModel:
    """Generates shifts (n, 2) float32 chunk by chunk, carrying its state."""

    def __init__(self, motion_px: float, fps_hz: float) -> None:
        self.m, self.dt = motion_px, 1.0 / fps_hz
        self.rho_j = np.exp(-self.dt / JITTER_TAU_S)
        self.rho_d = np.exp(-self.dt / DRIFT_TAU_S)
        self.rho_t = np.exp(-self.dt / TWITCH_TAU_S)
        self.jitter = self.drift = self.twitch = None

    def step(self, rng: np.random.Generator, n_frames: int) -> np.ndarray:
        """Shifts (n_frames, 2) float32 (dy, dx) px."""
        out = np.zeros((n_frames, 2), np.float32)
        if self.m == 0:
            return out
        m = self.m
        if self.jitter is None:  # stationary start
            self.jitter = rng.normal(0, JITTER_STD * m, 2)
            self.drift = rng.normal(0, DRIFT_STD * m, 2)
            self.twitch = np.zeros(2)
        innov_j, innov_d = np.sqrt(1 - self.rho_j**2), np.sqrt(1 - self.rho_d**2)
        for t in range(n_frames):
            self.jitter = self.rho_j * self.jitter + innov_j * JITTER_STD * m * rng.normal(size=2)
            self.drift = self.rho_d * self.drift + innov_d * DRIFT_STD * m * rng.normal(size=2)
            self.twitch = self.rho_t * self.twitch
            if rng.random() < TWITCH_RATE_HZ * self.dt:
                angle = rng.uniform(0, 2 * np.pi)
                self.twitch += rng.uniform(*TWITCH_AMP) * m * np.array([np.sin(angle),
                                                                        np.cos(angle)])
            total = self.jitter + self.drift + self.twitch
            out[t] = np.clip(total, -max_shift_px(m), max_shift_px(m))
        return out


def shift_bilinear(canvas_image: np.ndarray, shift: np.ndarray, margin: int) -> np.ndarray:
    """Reference (slow, readable) rigid shift: field of view of a canvas image.

    canvas_image (Hc, Wc) with Hc = H + 2 margin; returns (H, W) float64 with
    out[r, c] = canvas_image(r + margin - dy, c + margin - dx), bilinear.
    """
    h, w = canvas_image.shape[0] - 2 * margin, canvas_image.shape[1] - 2 * margin
    ys = np.arange(h)[:, None] + margin - float(shift[0])
    xs = np.arange(w)[None, :] + margin - float(shift[1])
    y0, x0 = np.floor(ys).astype(int), np.floor(xs).astype(int)
    fy, fx = ys - y0, xs - x0
    img = canvas_image.astype(np.float64)
    return ((1 - fy) * (1 - fx) * img[y0, x0] + (1 - fy) * fx * img[y0, x0 + 1]
            + fy * (1 - fx) * img[y0 + 1, x0] + fy * fx * img[y0 + 1, x0 + 1])
