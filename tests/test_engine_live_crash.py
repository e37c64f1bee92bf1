"""``rtcal serve`` as a separate process: SIGKILL leaves a results file readable up to
its last flush; SIGTERM stops it cleanly with the file complete."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import zmq
from engine_live_helpers import INIT_FRAMES, small_movie

from rtcal.client import ControlClient, FrameSender
from rtcal.store import read_results

REPO = Path(__file__).resolve().parents[1]


def _serve(out: Path) -> tuple[subprocess.Popen, dict]:
    """Start ``rtcal serve`` on free ports; return it and its endpoints."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO), env.get("PYTHONPATH")) if p)
    any_port = "tcp://127.0.0.1:*"
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "rtcal",
            "serve",
            "--frames",
            any_port,
            "--results",
            any_port,
            "--events",
            any_port,
            "--control",
            any_port,
            "--out",
            str(out),
            "--fps",
            "30",
            "--radius",
            "4",
            "--init-frames",
            str(INIT_FRAMES),
            "--detect-every",
            "0",
            "--quiet",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
        cwd=REPO,
    )
    line = proc.stdout.readline()
    if "listening:" not in line:
        proc.kill()
        pytest.fail(f"rtcal serve did not start: {line}{proc.stderr.read()}")
    pairs = line.split("listening:")[1].split(",")
    return proc, dict(p.split() for p in pairs)


def _feed(endpoints: dict, frames: np.ndarray, ctx) -> dict:
    sender = FrameSender(endpoints["frames"], context=ctx, timeout_ms=-1)
    assert sender.wait_ready(10)
    for f in frames:
        sender.send(f)
    sender.close()
    control = ControlClient(endpoints["control"], context=ctx, timeout_ms=5000)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        status = control.status()
        if status["counters"]["processed"] >= len(frames):
            break
        time.sleep(0.05)
    control.close()
    return status


@pytest.fixture(scope="module")
def movie():
    return small_movie(150)


def test_sigkill_leaves_the_file_readable_up_to_the_last_flush(movie, tmp_path):
    out = tmp_path / "killed.h5"
    ctx = zmq.Context()
    proc, endpoints = _serve(out)
    try:
        status = _feed(endpoints, movie, ctx)
        assert status["counters"]["processed"] == len(movie)
        time.sleep(2.0)  # > flush_interval_s (1 s): everything processed is on disk
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
    finally:
        proc.kill()
        ctx.destroy(linger=0)
    r = read_results(out)
    assert not r.complete
    assert r.n_frames == len(movie)
    np.testing.assert_array_equal(r.frame_index, np.arange(len(movie)))
    assert r.n_components >= 1
    for k in range(r.n_components):
        assert np.isfinite(r.traces[k, r.born_frame[k] :]).all()


def test_sigterm_stops_cleanly_with_the_file_complete(movie, tmp_path):
    out = tmp_path / "stopped.h5"
    ctx = zmq.Context()
    proc, endpoints = _serve(out)
    try:
        _feed(endpoints, movie[:100], ctx)
        proc.send_signal(signal.SIGTERM)
        stdout, stderr = proc.communicate(timeout=30)
    finally:
        proc.kill()
        ctx.destroy(linger=0)
    assert proc.returncode == 0, stderr
    assert f"wrote {out}" in stdout
    r = read_results(out)
    assert r.complete and r.n_frames == 100
    assert r.attrs["engine_received"] == 100 and r.attrs["engine_processed"] == 100
