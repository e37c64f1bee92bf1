"""Array backends: NumPy on the host ("cpu") or CuPy on a CUDA device ("cuda").

The per-frame kernels of the device path (``rtcal.motion.xp_rigid``,
``rtcal.nmf.xp_*``) are written once against the NumPy API and take their
array module from their arguments (:func:`array_module`), so the same code runs
on NumPy arrays (tests, reference) and on CuPy arrays (the GPU). Only
:mod:`rtcal.backend.cuda` imports CuPy, lazily; nothing here needs it.

A :class:`Backend` names the array module and moves arrays to and from it:

    backend = get_backend("cuda")        # BackendUnavailableError if it cannot work
    y = backend.asarray(frame)           # host -> device
    traces = backend.to_host(c)          # device -> host (waits for the device)

The "cpu" backend is NumPy itself: asarray / to_host copy nothing they need not.
"""

from __future__ import annotations

from dataclasses import dataclass
from types import ModuleType

import numpy as np

from rtcal.errors import RtcalError

BACKENDS = ("cpu", "cuda")


class BackendError(RtcalError):
    """A backend name that does not exist, or arrays from two backends mixed."""


class BackendUnavailableError(BackendError):
    """The backend exists but cannot run here (CuPy not importable, no CUDA device)."""


@dataclass(frozen=True)
class Backend:
    """name: "cpu" or "cuda"; xp: the array module (numpy or cupy)."""

    name: str
    xp: ModuleType

    @property
    def on_device(self) -> bool:
        """True when arrays live in device memory (a host copy costs a transfer)."""
        return self.xp is not np

    @property
    def sparse(self) -> ModuleType:
        """scipy.sparse or cupyx.scipy.sparse: CSR matrices on this backend."""
        return sparse_module(self.xp)

    def asarray(self, a, dtype=None):
        """a (any array-like, host or this backend) as this backend's array; no copy if it
        already is one of the right dtype."""
        return self.xp.asarray(a, dtype=dtype)

    def to_host(self, a) -> np.ndarray:
        """A NumPy copy (or the array itself on "cpu"); waits for pending device work."""
        if isinstance(a, np.ndarray) or np.isscalar(a):
            return np.asarray(a)
        return a.get()

    def csr(self, matrix):
        """A scipy.sparse CSR matrix as a CSR matrix of this backend (same arrays on "cpu")."""
        if not self.on_device:
            return matrix.tocsr()
        return self.sparse.csr_matrix(
            (self.asarray(matrix.data), self.asarray(matrix.indices), self.asarray(matrix.indptr)),
            shape=matrix.shape,
        )

    def synchronize(self) -> None:
        """Wait until all work queued on the device is done (a no-op on "cpu")."""
        if self.on_device:
            from rtcal.backend import cuda

            cuda.synchronize()


CPU = Backend("cpu", np)


def get_backend(name: str) -> Backend:
    """The backend called ``name`` ("cpu" or "cuda").

    Raises BackendError for an unknown name and BackendUnavailableError, naming
    what is missing, when "cuda" cannot run (CuPy not importable, or no CUDA device).
    """
    if name == "cpu":
        return CPU
    if name != "cuda":
        raise BackendError(f"unknown backend {name!r}; choose one of {', '.join(BACKENDS)}")
    from rtcal.backend import cuda

    return Backend("cuda", cuda.require_device())


def cuda_available() -> bool:
    """Whether get_backend("cuda") would succeed: CuPy importable and a CUDA device visible."""
    from rtcal.backend import cuda

    return cuda.available()


def is_device_array(a) -> bool:
    """True for a CuPy array (checked by type name, so CuPy need not be imported)."""
    return type(a).__module__.split(".")[0] == "cupy"


def array_module(*arrays) -> ModuleType:
    """numpy, or cupy if any argument is a CuPy array (the module kernels compute with)."""
    if any(is_device_array(a) for a in arrays):
        from rtcal.backend import cuda

        return cuda.import_cupy()
    return np


def fft_module(xp: ModuleType) -> ModuleType:
    """FFTs that keep float32 / complex64 in single precision: scipy.fft or cupy.fft."""
    if xp is np:
        import scipy.fft

        return scipy.fft
    return xp.fft


def sparse_module(xp: ModuleType) -> ModuleType:
    """scipy.sparse or cupyx.scipy.sparse."""
    if xp is np:
        import scipy.sparse

        return scipy.sparse
    from rtcal.backend import cuda

    return cuda.sparse_module()


def segment_sum(segment, values, n_segments: int):
    """out[s] = sum of values[i] with segment[i] == s, float64 (n_segments,).

    segment: int (m,) in [0, n_segments); values: float (m,). Any order of
    summation (on the device it is atomic adds), so results agree to rounding.
    """
    xp = array_module(segment, values)
    if xp is np:
        return np.bincount(segment, weights=values, minlength=n_segments)
    out = xp.zeros(n_segments, xp.float64)
    xp.add.at(out, segment, values.astype(xp.float64))  # atomics; no host sync (bincount syncs)
    return out
