"""The detector in a child process, fed through shared memory.

On a few cores a detector running on a thread of the engine's process slows
the frame loop through the GIL. Measured on 2 shared cores (load ~4.5 from
other jobs), 256 x 256, 60 neurons, 30 Hz, the seed detector re-running back
to back on 300 frames: per-frame pipeline time p99 45 ms with the detector on
a thread, 20 ms with it in this child process, 13-20 ms with no detector
(240 frames each). Here the frames go into one shared
memory block (allocated at the first run, reused), the child (started with
"spawn", so no engine threads or sockets are inherited, and ``nice``d so that
the frame loop wins a contended core) runs ``detector.propose`` on a view of
it, and only the proposed footprints come back through a pipe, sparse.
"""

from __future__ import annotations

import multiprocessing as mp
import os
import signal
from multiprocessing import resource_tracker, shared_memory

import numpy as np
import scipy.sparse as sp

from rtcal.detect.proposal import FootprintProposer
from rtcal.errors import RtcalError


class DetectorProcessError(RtcalError):
    pass


def _child(conn, detector: FootprintProposer, niceness: int) -> None:  # pragma: no cover
    """Child main loop: ("propose", shm name, shape) -> ("ok", (footprints, sure)) |
    ("error", text).

    Ctrl-C at a terminal (or ``timeout``) signals the whole process group: the
    child ignores SIGINT, so the engine's own shutdown, which stops it through
    the pipe, is what ends it (it printed a KeyboardInterrupt traceback in the
    middle of the engine's last report). It also ends when the parent is gone."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        os.nice(niceness)
    except OSError:
        pass
    blocks: dict[str, shared_memory.SharedMemory] = {}
    while True:
        try:
            msg = conn.recv()
        except (EOFError, OSError):  # the parent closed its end or died
            break
        if msg is None:
            break
        _, name, shape = msg
        try:
            if name not in blocks:
                # registered with the parent's resource tracker, which the parent
                # started before this process: the parent's unlink clears it
                blocks[name] = shared_memory.SharedMemory(name=name)
            frames = np.ndarray(shape, np.float32, buffer=blocks[name].buf)
            proposal = detector.propose(frames)
            fp = np.asarray(proposal.footprints, np.float32)
            # sparse: the dense (n, H, W) is ~1 MB per footprint at 512 x 512, and the
            # parent unpickles what it gets holding the GIL
            # (n, H*W) spelled out: an empty proposal (0, H, W) cannot infer a -1
            conn.send(("ok", (sp.csr_array(fp.reshape(len(fp), shape[1] * shape[2])),
                              proposal.sure_mask)))
        except (RtcalError, ValueError, np.linalg.LinAlgError, MemoryError) as e:
            conn.send(("error", f"{type(e).__name__}: {e}"))
    for block in blocks.values():
        block.close()


class DetectorProcess:
    """``propose(frames)`` like the detector's, computed in a child process."""

    def __init__(self, detector: FootprintProposer, niceness: int = 10) -> None:
        # one resource tracker for both processes (see _child)
        resource_tracker.ensure_running()
        ctx = mp.get_context("spawn")
        self._conn, child_conn = ctx.Pipe()
        self._proc = ctx.Process(
            target=_child, args=(child_conn, detector, niceness), name="rtcal-detector", daemon=True
        )
        self._proc.start()
        child_conn.close()
        self._shm: shared_memory.SharedMemory | None = None

    def propose(self, frames: np.ndarray) -> tuple[sp.csr_array, np.ndarray]:
        """frames: float (T, H, W) -> (proposed footprints, sparse float32 (n, H*W);
        bool (n,) which of them the detector is sure of, ``Proposal.sure_mask``)."""
        if self._shm is None or self._shm.size < frames.size * 4:
            self._release()
            self._shm = shared_memory.SharedMemory(create=True, size=frames.size * 4)
        view = np.ndarray(frames.shape, np.float32, buffer=self._shm.buf)
        np.copyto(view, frames)
        try:
            self._conn.send(("propose", self._shm.name, frames.shape))
            status, payload = self._conn.recv()
        except (EOFError, OSError) as e:
            raise DetectorProcessError(f"the detector process died ({e})") from e
        if status != "ok":
            raise DetectorProcessError(f"detector failed in its process: {payload}")
        return payload

    def _release(self) -> None:
        if self._shm is not None:
            self._shm.close()
            self._shm.unlink()
            self._shm = None

    def close(self) -> None:
        try:
            self._conn.send(None)
        except (BrokenPipeError, OSError):
            pass
        self._proc.join(5)
        if self._proc.is_alive():
            self._proc.kill()
        self._conn.close()
        self._release()
