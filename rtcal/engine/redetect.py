"""Periodic detector re-runs on a snapshot of the keyframe buffer, off the frame loop.

Every ``detect_every_frames`` frames the frame loop ``submit``s a job: a copy
of the current footprints and the keyframe buffer's ``snapshot`` method. The
worker thread takes the snapshot (a copy of tens of MB: 70-200 ms at
256 x 256 x 300 frames when the frame loop did it, a stall of that many
frames; numpy copies release the GIL, so on the worker it overlaps the frame
loop, which holds its keyframes back until the copy is done), runs the
detector and keeps the proposals that match no existing component
(``novelty.find_new``). A new proposal becomes a component only once
``confirm_runs`` consecutive re-runs have proposed it (IoU >= 0.5 with the
previous run's candidate): a detector's false positives on one short window
(noise blobs, a neurite's burst) rarely recur, a cell does (measured on a
64 x 64 simulated movie with 6 neurons: without confirmation the seed
detector on 100-frame windows added 20 components in 5 re-runs). A proposal
the detector marks ``sure`` (``Proposal.sure``: the learned detector's score
>= ``sure_score``, 0.55, over its in-pipeline threshold 0.5) is added by the
run that makes it: a cell that fires a few times in a recording is often in
one window only. On four development 2p movies (256 x 256, seeds 11-14), of
the learned detector's new proposals on 300-frame windows every 300 frames,
35 of the 54 that were true cells (IoU >= 0.5) and 10 of the 47 that
overlapped none (IoU < 0.3) scored >= 0.55 (16 and 3 at >= 0.6). In ``rtcal
run`` (re-runs every 1000 frames), median F1 on those movies 0.809 with no
sure proposals, 0.823 at 0.6, 0.830 at 0.55, 0.805 at 0.5 (all sure); on two
512 x 512 development movies (seeds 11, 12) 0.765 / 0.773 / 0.783 (none / 0.6
/ 0.55); the real Neurofinder crop 0.260 either way. The seed detector marks
activity seeds scoring >= ``SeedConfig.sure_score`` sure (mode "1p": 7.5,
``rtcal.engine.pipeline.pipeline_config`` says why; 2p: none). The frame
loop ``poll``s for the result between frames and adds the confirmed components
to the pipeline itself (the pipeline is not thread-safe). At most one job runs
at a time; a period that ends while one is running is skipped and counted.
"""

from __future__ import annotations

import queue
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp

from rtcal.detect.proposal import FootprintProposer
from rtcal.engine.novelty import find_new
from rtcal.errors import RtcalError


@dataclass(frozen=True)
class RedetectJob:
    """sequence: the last frame in the keyframe buffer; snapshot: returns its
    ``KeyframeSnapshot`` (a copy: tens of MB at 512 x 512, so the worker takes
    it, and sets ``taken`` when done; the frame loop leaves the buffer alone until
    then); existing: sparse (K, H*W) footprints at the snapshot."""

    sequence: int
    snapshot: Callable
    existing: sp.csr_matrix
    taken: threading.Event


@dataclass(frozen=True)
class RedetectResult:
    """footprints: float32 (n, H, W) confirmed new components; window: the job's
    window; n_proposed / n_matched / n_candidates: proposals made / matched to
    existing components / new but not confirmed yet; seconds: worker time;
    n_existing: K at the snapshot."""

    sequence: int
    footprints: np.ndarray
    window: np.ndarray
    n_proposed: int
    n_matched: int
    n_candidates: int
    n_existing: int
    seconds: float


def consecutive_tail(indices: np.ndarray) -> slice:
    """The slice of the last run of consecutive frame indices (key frames chosen
    for activity may precede it with gaps)."""
    breaks = np.flatnonzero(np.diff(indices) != 1)
    return slice(int(breaks[-1]) + 1 if breaks.size else 0, len(indices))


def ordered_window(snapshot) -> tuple[np.ndarray, np.ndarray]:
    """(frames oldest first, their consecutive tail) of a ``KeyframeSnapshot``."""
    frames, indices = snapshot.frames, snapshot.indices
    if np.any(np.diff(indices) < 0):
        order = np.argsort(indices, kind="stable")
        frames, indices = frames[order], indices[order]
    return frames, frames[consecutive_tail(indices)]


def confirm(
    new, candidates, counts: np.ndarray, confirm_runs: int, *, width: int | None = None,
    sure: np.ndarray | None = None,
) -> tuple:
    """Split this run's new proposals into confirmed ones and candidates.

    new, candidates: dense (n, H, W) or sparse (n, H*W) with the frame's
    ``width``; counts: how many consecutive runs proposed each candidate. A
    proposal matching a candidate (IoU >= 0.5) continues its count; sure: bool
    (n,), proposals confirmed by this run alone (``Proposal.sure``). Returns
    (confirmed, next candidates, their counts), as ``new`` is given.
    """
    n, n_cand = new.shape[0], candidates.shape[0]
    count = np.ones(n, np.int64)
    if n and n_cand:
        if sp.issparse(new):
            nov = find_new(new, sp.csr_array(candidates), width=width)
        else:
            nov = find_new(new, sp.csr_matrix(candidates.reshape(n_cand, -1)))
        count[nov.matched_proposal] = counts[nov.matched_component] + 1
    if sure is not None:
        count[np.asarray(sure, bool)] = confirm_runs
    done = count >= confirm_runs
    keep, later = np.flatnonzero(done), np.flatnonzero(~done)
    return new[keep], new[later], count[later]


class Redetector(threading.Thread):
    def __init__(
        self,
        detector: FootprintProposer,
        *,
        confirm_runs: int = 2,
        min_iou: float = 0.5,
        in_process: bool = True,
    ) -> None:
        super().__init__(name="rtcal-redetect", daemon=True)
        self.detector = detector
        self.in_process = in_process  # run the detector in a child process (detect_process)
        self._process = None
        self.confirm_runs = confirm_runs
        self.min_iou = min_iou
        self._jobs: queue.Queue = queue.Queue(maxsize=1)
        self._results: queue.SimpleQueue = queue.SimpleQueue()
        self._busy = threading.Event()
        self._candidates = sp.csr_array((0, 0), dtype=np.float32)  # sparse (n, H*W)
        self._counts = np.zeros(0, np.int64)
        self.n_runs = 0
        self.n_skipped = 0
        self.n_failed = 0

    @property
    def busy(self) -> bool:
        return self._busy.is_set()

    def submit(self, job: RedetectJob) -> bool:
        """Start a re-run unless one is running (then False, counted as skipped)."""
        if self._busy.is_set():
            self.n_skipped += 1
            return False
        self._busy.set()
        self._jobs.put(job)
        return True

    def poll(self) -> RedetectResult | None:
        try:
            return self._results.get_nowait()
        except queue.Empty:
            return None

    def close(self) -> None:
        self._jobs.put(None)

    def run(self) -> None:
        if self.in_process:
            from rtcal.engine.detect_process import DetectorProcess

            try:
                self._process = DetectorProcess(self.detector)
            except RuntimeError as e:  # "spawn" needs an `if __name__ == "__main__":` guard
                print(
                    f"rtcal engine: detector process not started ({str(e).strip()[:80]}...); "
                    "running the detector on a thread instead",
                    file=sys.stderr,
                )
        try:
            self._serve()
        finally:
            if self._process is not None:
                self._process.close()

    def _serve(self) -> None:
        while (job := self._jobs.get()) is not None:
            try:
                result = self.run_now(job)
                if result is not None:
                    self._results.put(result)
            finally:
                self._busy.clear()

    def run_now(self, job: RedetectJob) -> RedetectResult | None:
        """One re-run on the calling thread (the worker's body; ``rtcal run`` calls
        it between frames, without starting the thread). None if it failed
        (counted in ``n_failed`` and said on stderr)."""
        try:
            result = self._run(job)
        except (RtcalError, ValueError, np.linalg.LinAlgError) as e:
            self.n_failed += 1
            print(f"rtcal engine: detector re-run failed: {e}", file=sys.stderr)
            return None
        self.n_runs += 1
        return result

    def _run(self, job: RedetectJob) -> RedetectResult:
        t0 = time.perf_counter()
        try:
            frames, window = ordered_window(job.snapshot())
        finally:
            job.taken.set()
        H, W = frames.shape[1:]
        # proposals stay sparse (n, H*W) here: dense, 300 of them at 512 x 512 are
        # 300 MB, and converting or unpickling that holds the GIL (measured 156 ms
        # for the unpickling alone), which stalls the engine's ingest and frame loop
        if self._process is not None:
            fp, sure = self._process.propose(frames)
        else:
            proposal = self.detector.propose(frames)
            dense = np.asarray(proposal.footprints, np.float32)
            fp, sure = sp.csr_array(dense.reshape(len(dense), H * W)), proposal.sure_mask
        n_matched = 0
        new, new_sure = fp, sure
        if fp.shape[0] and job.existing.shape[0]:
            nov = find_new(fp, job.existing, self.min_iou, width=W)
            keep = np.flatnonzero(nov.new)
            new, new_sure, n_matched = fp[keep], sure[keep], len(nov.matched_proposal)
        if self._candidates.shape[1] != H * W:
            self._candidates = sp.csr_array((0, H * W), dtype=np.float32)
        confirmed, self._candidates, self._counts = confirm(
            new, self._candidates, self._counts, self.confirm_runs, width=W, sure=new_sure
        )
        return RedetectResult(
            job.sequence,
            confirmed.toarray().reshape(-1, H, W).astype(np.float32, copy=False),
            window,
            fp.shape[0],
            n_matched,
            self._candidates.shape[0],
            job.existing.shape[0],
            time.perf_counter() - t0,
        )
