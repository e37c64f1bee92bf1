"""Detector re-runs: which proposals are new, and components added to a running pipeline."""

import os
import signal
import time
from dataclasses import replace

import numpy as np
import pytest
import scipy.sparse as sp

from rtcal.detect.proposal import Proposal
from rtcal.engine.novelty import find_new
from rtcal.engine.pipeline import Pipeline, pipeline_config
from rtcal.engine.redetect import consecutive_tail
from rtcal.errors import RtcalError
from rtcal.sim import ActivityParams, Simulation, make_config


def _disc(shape, center, radius):
    yy, xx = np.mgrid[: shape[0], : shape[1]]
    d = np.hypot(yy - center[0], xx - center[1])
    return np.clip(1 - d / radius, 0, None).astype(np.float32)


def test_find_new_keeps_only_proposals_unlike_every_component():
    shape = (40, 40)
    existing = np.stack([_disc(shape, (10, 10), 5), _disc(shape, (30, 30), 5)])
    proposals = np.stack(
        [
            _disc(shape, (10, 11), 5),  # the first component, shifted 1 px: IoU > 0.5
            _disc(shape, (30, 34), 5),  # the second, shifted 4 px: IoU < 0.5, but 39 %
            #                             of it lies under the second: not new
            _disc(shape, (10, 30), 5),  # nowhere near anything -> new
            _disc(shape, (30, 38), 5),  # a neighbour touching the second -> new
            _disc(shape, (12, 12), 2),  # a fragment inside the first: IoU 0.16 -> not new
        ]
    )
    nov = find_new(proposals, sp.csr_matrix(existing.reshape(2, -1)))
    np.testing.assert_array_equal(nov.new, [False, False, True, True, False])
    np.testing.assert_array_equal(nov.matched_proposal, [0])
    np.testing.assert_array_equal(nov.matched_component, [0])
    assert nov.best_iou[2] == 0 and 0 < nov.best_iou[1] < 0.5 < nov.best_iou[0]
    assert nov.best_iou[4] < 0.5 and nov.covered[4] > 0.8 and nov.covered[3] < 0.1
    # the IoU rule alone (max_covered 1) takes the shifted copy and the fragment
    loose = find_new(proposals, sp.csr_matrix(existing.reshape(2, -1)), max_covered=1.01)
    np.testing.assert_array_equal(loose.new, [False, True, True, True, True])


def test_consecutive_tail():
    assert consecutive_tail(np.array([3, 9, 20, 21, 22])) == slice(2, 5)
    assert consecutive_tail(np.arange(5, 9)) == slice(0, 4)


class _Given:
    """A detector proposing fixed footprints."""

    def __init__(self, footprints):
        self.footprints = footprints

    def propose(self, window):
        n = len(self.footprints)
        return Proposal(self.footprints, np.zeros((n, 2), np.float32), np.ones(n, np.float32))


@pytest.fixture(scope="module")
def movie():
    activity = ActivityParams(**{**make_config("2p").activity.__dict__, "rate_median_hz": 1.0})
    cfg = make_config(
        "2p",
        height=64,
        width=64,
        n_frames=400,
        n_neurons=6,
        seed=5,
        radius_min_px=3.5,
        radius_max_px=5,
        motion_px=0.0,
        activity=activity,
    )
    sim = Simulation(cfg)
    frames, calcium = [], []
    for f in sim.stream():
        frames.append(f.image)
        calcium.append(f.calcium)
    return np.stack(frames), np.stack(calcium, 1), sim.footprints


def _run(movie, footprints, add_at=None, add=None):
    frames = movie[0]
    base = pipeline_config(30.0, 4.0, init_frames=40)
    config = replace(base, nmf=replace(base.nmf, max_new_per_search=0))  # no search of its own
    p = Pipeline(config, _Given(footprints))
    outputs, corrected = [], []
    for i, f in enumerate(frames):
        out = p.push(i, f)
        outputs += out
        if out and out[-1].corrected is not None:
            corrected.append(out[-1].corrected.copy())
        if i == add_at:
            assert p.add_components(add, np.stack(corrected[-100:])).tolist() == [5]
    return outputs


def test_added_component_traces_like_one_known_from_the_start(movie):
    _, calcium, truth = movie
    j = 5  # an active neuron; measured when written: corr with truth 0.99 / 0.98
    reference = _run(movie, truth)
    late = _run(movie, np.delete(truth, j, 0), add_at=150, add=truth[j : j + 1])
    assert len(late[150].traces) == 5 and len(late[151].traces) == 6
    ref = np.stack([o.denoised[j] for o in reference[200:]])
    new = np.stack([o.denoised[5] for o in late[200:]])
    assert np.corrcoef(new, calcium[j, 200:])[0, 1] > 0.95
    assert np.corrcoef(new, ref)[0, 1] > 0.97


def test_add_components_refuses_before_initialisation_and_bad_shapes(movie):
    p = Pipeline(pipeline_config(30.0, 4.0, init_frames=40))
    with pytest.raises(RtcalError, match="not initialised"):
        p.add_components(np.zeros((1, 64, 64), np.float32), np.zeros((5, 64, 64), np.float32))
    for i, f in enumerate(movie[0][:45]):
        p.push(i, f)
    with pytest.raises(RtcalError, match="must be"):
        p.add_components(np.zeros((1, 32, 32), np.float32), np.zeros((5, 64, 64), np.float32))
    assert (
        p.add_components(np.zeros((0, 64, 64), np.float32), np.zeros((5, 64, 64), np.float32)).size
        == 0
    )


def _movie_with_a_late_neuron(onset: int, n_frames: int = 600):
    """The small movie plus a neuron at (50, 12), silent until ``onset``, then firing."""
    from engine_live_helpers import small_movie

    movie = small_movie(n_frames, seed=4).astype(np.float32)
    yy, xx = np.mgrid[:64, :64]
    blob = np.exp(-((yy - 50) ** 2 + (xx - 12) ** 2) / (2 * 2.5**2))
    rng = np.random.default_rng(0)
    spikes = (rng.random(n_frames) < 0.08) & (np.arange(n_frames) >= onset)
    calcium = np.zeros(n_frames)
    for t in range(1, n_frames):
        calcium[t] = 0.9 * calcium[t - 1] + spikes[t]
    movie += blob[None] * calcium[:, None, None] * 0.6 * movie.mean()
    return np.clip(movie, 0, 65535).astype(np.uint16)


def _wait_for_runs(engine, n_runs: int, timeout_s: float) -> None:
    import time

    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        red = engine.status()["redetect"]
        if red["runs"] + red["skipped"] + red["failed"] >= n_runs:
            return
        time.sleep(0.01)


def _initialised(movie, n_frames=60):
    p = Pipeline(pipeline_config(30.0, 4.0, init_frames=40))
    corrected = []
    for i, f in enumerate(movie[0][:n_frames]):
        for out in p.push(i, f):
            if out.corrected is not None:
                corrected.append(out.corrected.copy())
    assert len(corrected) >= 2
    return p, np.stack(corrected)


def test_a_short_window_uses_the_residual_buffer_for_kinetics(movie):
    # frames dropped while the detector ran can leave a window with a consecutive
    # tail of 2 frames: too few for a noise level; the residual buffer's serve
    p, corrected = _initialised(movie)
    K = len(p.push(60, movie[0][60])[0].traces)
    fp = np.zeros((1, 64, 64), np.float32)
    fp[0, 10:16, 10:16] = 1.0
    assert p.add_components(fp, corrected[-2:]).tolist() == [K]
    out = p.push(61, movie[0][61])[0]
    assert len(out.traces) == len(out.spikes) == len(out.dff) == K + 1


def test_a_refused_addition_leaves_the_pipeline_as_it_was(movie, monkeypatch):
    p, corrected = _initialised(movie)
    K = len(p.push(60, movie[0][60])[0].traces)
    monkeypatch.setattr(p._nmf.buffer, "pixels", lambda px: np.zeros((2, len(px)), np.float32))
    fp = np.zeros((1, 64, 64), np.float32)
    fp[0, 10:16, 10:16] = 1.0
    with pytest.raises(RtcalError, match="noise level needs 3"):
        p.add_components(fp, corrected[-2:])
    monkeypatch.undo()
    out = p.push(61, movie[0][61])[0]  # all or nothing: NMF, deconvolution, dF/F agree
    assert len(out.traces) == len(out.spikes) == len(out.dff) == K


def test_the_frame_loop_counts_a_refused_addition_and_goes_on(capsys):
    import threading
    from collections import deque

    from rtcal.engine.config import EngineConfig
    from rtcal.engine.frame_loop import FrameLoop
    from rtcal.ingest.counters import IngestCounters

    class Refusing:
        def add_components(self, footprints, window):
            raise RtcalError("add_components: too few frames")

    loop = FrameLoop(config=EngineConfig(), pipeline=Refusing(), ring_source=None,
                     publisher=None, sink_factory=None, triggers=None,
                     counters=IngestCounters(), redetector=None, stop=threading.Event())
    loop._to_add = deque(np.zeros((3, 8, 8), np.float32))
    loop._to_add_window = np.zeros((2, 8, 8), np.float32)
    while loop._to_add:
        loop._add_some()
    assert (loop.n_redetect_add_failed, loop.n_redetect_added) == (3, 0)
    assert "not added: add_components: too few frames" in capsys.readouterr().err


@pytest.mark.parametrize("device_path", [False, True], ids=["cpu", "device-path"])
def test_engine_redetect_adds_a_neuron_that_starts_firing_late(device_path):
    import time

    import zmq
    from engine_live_helpers import INIT_FRAMES, close_all, collect, start_engine, subscribe

    from rtcal.client import FrameSender

    onset, period = 200, 100
    movie = _movie_with_a_late_neuron(onset)
    nmf = pipeline_config(30.0, 4.0).nmf
    ctx = zmq.Context()
    try:
        engine = start_engine(
            ctx,
            "inproc",
            detect_every_frames=period,
            keyframe_frames=period,
            keyframe_n_key=10,
            pipeline_overrides={"nmf": replace(nmf, max_new_per_search=0)},  # the detector alone
            device_path=device_path,  # DeviceNMF, as --backend cuda runs it
        )
        sub = subscribe(engine, ctx)
        sender = FrameSender(engine.endpoints["frames"], context=ctx, timeout_ms=-1)
        assert sender.wait_ready(5)
        for i, frame in enumerate(movie):
            sender.send(frame)
            time.sleep(0.004)
            if i > INIT_FRAMES and (i - INIT_FRAMES) % period == 0:
                # A loaded machine slows the detector process, not the sender: let at
                # most one re-run be outstanding so the test counts frames, not load.
                _wait_for_runs(engine, (i - INIT_FRAMES) // period - 1, timeout_s=60)
        frames, updates, _ = collect(sub, len(movie))
        status = engine.status()
        if device_path:
            from rtcal.nmf.device_step import DeviceNMF

            assert isinstance(engine.pipeline._nmf, DeviceNMF)
    finally:
        close_all()
        ctx.destroy(linger=0)
    found = [u for u in updates if any(d[50, 12] > 0.3 * d.max() for d in u.dense())]
    assert found, "the late neuron was never added"
    # within two detector periods of its onset, plus the re-runs' own time: frames
    # keep arriving (every 4 ms) while a re-run works, more of them on a loaded machine
    run_frames = int(np.ceil(max(status["redetect"]["seconds"]) / 0.004))
    assert found[0].sequence <= onset + 2 * (period + run_frames) + 30
    assert status["redetect"]["runs"] >= 4 and status["redetect"]["failed"] == 0
    assert frames[-1].n_components <= 8  # re-runs do not pile up spurious components
    # the engine accounts for the frame loop's time outside frames, by kind
    stalls = status["stalls"]
    assert stalls["redetect_submit"]["n"] >= status["redetect"]["runs"]  # + one in flight
    assert stalls["add_components"]["n"] >= 1 and stalls["add_components"]["max_ms"] > 0


def test_confirm_needs_consecutive_runs():
    from rtcal.engine.redetect import confirm

    shape = (30, 30)
    a, b, c = (_disc(shape, p, 4) for p in ((8, 8), (20, 20), (8, 22)))
    empty = np.zeros((0, *shape), np.float32)
    done, cand, count = confirm(np.stack([a, b]), empty, np.zeros(0, np.int64), 2)
    assert len(done) == 0 and count.tolist() == [1, 1]
    done, cand, count = confirm(np.stack([b, c]), cand, count, 2)  # b again, c new
    assert len(done) == 1 and np.array_equal(done[0], b)
    assert len(cand) == 1 and np.array_equal(cand[0], c) and count.tolist() == [1]
    done, _, _ = confirm(np.stack([a]), empty, np.zeros(0, np.int64), 1)
    assert len(done) == 1
    # the same with sparse (n, H*W) proposals, as the engine's re-runs pass them
    flat = lambda *f: sp.csr_array(np.stack(f).reshape(len(f), -1))  # noqa: E731
    none = sp.csr_array((0, shape[0] * shape[1]), dtype=np.float32)
    done, cand, count = confirm(flat(a, b), none, np.zeros(0, np.int64), 2, width=shape[1])
    assert done.shape[0] == 0 and count.tolist() == [1, 1]
    done, cand, count = confirm(flat(b, c), cand, count, 2, width=shape[1])
    assert done.shape[0] == 1 and np.array_equal(done.toarray()[0], b.ravel())
    assert cand.shape[0] == 1 and np.array_equal(cand.toarray()[0], c.ravel())


def test_confirm_takes_a_sure_proposal_at_once():
    from rtcal.engine.redetect import confirm

    shape = (30, 30)
    a, b, c = (_disc(shape, p, 4) for p in ((8, 8), (20, 20), (8, 22)))
    flat = lambda *f: sp.csr_array(np.stack(f).reshape(len(f), -1))  # noqa: E731
    none = sp.csr_array((0, shape[0] * shape[1]), dtype=np.float32)
    done, cand, count = confirm(flat(a, b), none, np.zeros(0, np.int64), 2, width=shape[1],
                                sure=np.array([False, True]))
    assert done.shape[0] == 1 and np.array_equal(done.toarray()[0], b.ravel())
    assert cand.shape[0] == 1 and np.array_equal(cand.toarray()[0], a.ravel())
    assert count.tolist() == [1]
    # a candidate proposed again, now sure, is done; an unsure newcomer waits
    done, cand, count = confirm(flat(a, c), cand, count, 3, width=shape[1],
                                sure=np.array([True, False]))
    assert done.shape[0] == 1 and np.array_equal(done.toarray()[0], a.ravel())
    assert cand.shape[0] == 1 and np.array_equal(cand.toarray()[0], c.ravel())
    assert count.tolist() == [1]
    # nothing sure: the consecutive-run rule alone
    done, _, count = confirm(flat(c), cand, count, 3, width=shape[1], sure=np.array([False]))
    assert done.shape[0] == 0 and count.tolist() == [2]


def test_detector_process_proposes_what_the_detector_does(movie):
    from rtcal.detect.seed import SeedConfig, SeedDetector
    from rtcal.engine.detect_process import DetectorProcess, DetectorProcessError

    detector = SeedDetector(SeedConfig(radius_px=4.0))
    window = movie[0][:100].astype(np.float32)
    expected = detector.propose(window).footprints
    proc = DetectorProcess(detector)

    def dense(answer):  # the process answers sparse (n, H*W) and the sure flags
        fp, sure = answer
        assert sure.dtype == bool and sure.shape == (fp.shape[0],) and not sure.any()
        return fp.toarray().reshape(-1, *window.shape[1:])

    try:
        got = proc.propose(window)
        again = proc.propose(window[50:])  # the shared block is reused for a smaller window
        with pytest.raises(DetectorProcessError, match="T >= 10"):
            proc.propose(window[:3])  # the child reports the detector's error and lives on
        np.testing.assert_array_equal(dense(proc.propose(window)), expected)
        # Ctrl-C signals the whole process group: the child ignores it and works on
        os.kill(proc._proc.pid, signal.SIGINT)
        time.sleep(0.2)
        assert proc._proc.is_alive()
        np.testing.assert_array_equal(dense(proc.propose(window)), expected)
    finally:
        proc.close()
    assert proc._proc.exitcode == 0  # stopped through the pipe, not killed
    assert len(expected) >= 1
    assert got[0].shape == (len(expected), window.shape[1] * window.shape[2])
    np.testing.assert_array_equal(dense(got), expected)
    np.testing.assert_array_equal(dense(again), detector.propose(window[50:]).footprints)


def test_detector_process_runs_a_learned_detector_that_has_run_before(movie, tmp_path):
    """The engine proposes with the learned detector at initialisation, then hands
    it to the re-run process: its built runtime (an ONNX Runtime session cannot be
    pickled) is left behind and rebuilt there. A window with no proposal answers
    an empty (0, H*W) array."""
    import pickle

    from detect_tiny import tiny_checkpoint

    from rtcal.detect.learned import LearnedDetector, LearnedDetectorConfig
    from rtcal.engine.detect_process import DetectorProcess

    weights = tiny_checkpoint(tmp_path / "tiny.pt")
    window = movie[0][:100].astype(np.float32)
    H, W = window.shape[1:]
    detector = LearnedDetector.from_weights(weights, LearnedDetectorConfig(radius_px=4.0))
    expected = detector.propose(window).footprints
    assert detector.runtime is not None and len(expected) >= 1
    copy = pickle.loads(pickle.dumps(detector))
    assert copy.runtime is None and detector.runtime is not None  # the original keeps its own
    never = LearnedDetector.from_weights(weights, LearnedDetectorConfig(radius_px=4.0,
                                                                        score_threshold=0.999))
    never.model.decoder.head.class_embed.bias.data.fill_(-20.0)  # no query says "neuron"
    procs = [DetectorProcess(detector), DetectorProcess(never)]
    try:
        got, got_sure = procs[0].propose(window)
        empty, empty_sure = procs[1].propose(window)
    finally:
        for proc in procs:
            proc.close()
    np.testing.assert_allclose(got.toarray().reshape(-1, H, W), expected, atol=1e-5)
    np.testing.assert_array_equal(got_sure, detector.propose(window).sure_mask)
    assert empty.shape == (0, H * W) and empty_sure.shape == (0,)


class _Later:
    """A detector that proposes ``first`` on its first call (initialisation) and
    ``later`` afterwards; raises on later calls if ``later`` is an exception."""

    def __init__(self, first, later, sure=None):
        self.first, self.later, self.sure, self.calls = first, later, sure, 0

    def propose(self, window):
        self.calls += 1
        if self.calls > 1 and isinstance(self.later, Exception):
            raise self.later
        fp = self.first if self.calls == 1 else self.later
        n = len(fp)
        return Proposal(fp, np.zeros((n, 2), np.float32), np.ones(n, np.float32),
                        None if self.calls == 1 else self.sure)


def _offline(movie, tmp_path, detector, **kw):
    from rtcal.engine.run import run_frames
    from rtcal.store import read_results

    frames = movie[0]
    base = pipeline_config(30.0, 4.0, init_frames=40)
    config = replace(base, nmf=replace(base.nmf, max_new_per_search=0))  # no search of its own
    out = tmp_path / "r.h5"
    summary = run_frames(iter(frames), out, config, height=64, width=64, detector=detector, **kw)
    return summary, read_results(out)


def test_rtcal_run_re_runs_the_detector_and_adds_what_two_runs_confirm(movie, tmp_path):
    A = movie[2]
    detector = _Later(A[:5], A)
    summary, r = _offline(movie, tmp_path, detector, detect_every=60, confirm_runs=2,
                          keyframe_frames=60)
    # re-runs after 60, 120, ... frames past initialisation: 360 frames, the last
    # period ends with the stream (no re-run after the last frame)
    assert summary.redetect["runs"] == 5 == detector.calls - 1
    assert summary.redetect["failed"] == 0
    assert summary.redetect["added"] == 1 and summary.n_components == 6 == r.n_components
    # proposed by the first re-run (frame 99), confirmed by the second (frame 159),
    # added before frame 160
    assert r.born_frame.tolist() == [0] * 5 + [160]
    assert np.isnan(r.traces[5, :160]).all() and np.isfinite(r.traces[5, 160:]).all()
    # its footprint is the sixth cell's
    a, b = r.footprints[5].ravel() > 0, A[5].ravel() > 0
    assert (a & b).sum() / (a | b).sum() > 0.5
    # confirm_runs 1: added at the first re-run
    _, r1 = _offline(movie, tmp_path, _Later(A[:5], A), detect_every=60, confirm_runs=1,
                     keyframe_frames=60)
    assert r1.born_frame.tolist() == [0] * 5 + [100]
    # a proposal the detector is sure of needs no second run
    sure = np.arange(len(A)) == 5
    _, r2 = _offline(movie, tmp_path, _Later(A[:5], A, sure), detect_every=60, confirm_runs=2,
                     keyframe_frames=60)
    assert r2.born_frame.tolist() == [0] * 5 + [100]


def test_rtcal_run_counts_failed_re_runs_and_goes_on(movie, tmp_path, capsys):
    A = movie[2]
    summary, r = _offline(movie, tmp_path, _Later(A[:5], RtcalError("detector broke")),
                          detect_every=100)
    assert summary.redetect["runs"] == 0 and summary.redetect["failed"] == 3
    assert r.complete and r.n_frames == 400 and r.n_components == 5
    assert "detector re-run failed: detector broke" in capsys.readouterr().err
    summary, _ = _offline(movie, tmp_path, _Later(A[:5], A), detect_every=0)
    assert summary.redetect is None
