"""Backend selection: the capability check and its error messages."""

import sys
import types

import numpy as np
import pytest

from rtcal.backend import (
    Backend,
    BackendError,
    BackendUnavailableError,
    array_module,
    cuda,
    cuda_available,
    get_backend,
)
from rtcal.errors import RtcalError


@pytest.fixture
def no_cupy(monkeypatch):
    """CuPy made unimportable for the test, whether or not it is installed."""
    monkeypatch.setitem(sys.modules, "cupy", None)
    monkeypatch.setattr(cuda, "_CUPY", None)


@pytest.fixture
def cupy_without_device(monkeypatch):
    """A stand-in cupy whose runtime sees no device."""

    class CUDARuntimeError(RuntimeError):
        pass

    def no_devices():
        raise CUDARuntimeError("cudaErrorNoDevice: no CUDA-capable device is detected")

    runtime = types.SimpleNamespace(getDeviceCount=no_devices, CUDARuntimeError=CUDARuntimeError)
    fake = types.SimpleNamespace(cuda=types.SimpleNamespace(runtime=runtime))
    monkeypatch.setattr(cuda, "_CUPY", fake)


def test_cpu_backend_is_numpy_without_copies():
    be = get_backend("cpu")
    assert isinstance(be, Backend) and be.name == "cpu" and be.xp is np and not be.on_device
    a = np.arange(5, dtype=np.float32)
    assert be.asarray(a) is a and be.to_host(a) is a
    assert be.asarray(a, np.float64).dtype == np.float64
    be.synchronize()
    assert array_module(a, a) is np


def test_unknown_backend_names_the_choices():
    with pytest.raises(BackendError, match="unknown backend 'gpu'.*cpu, cuda"):
        get_backend("gpu")


def test_cuda_without_cupy_says_what_is_missing_and_how_to_install(no_cupy):
    with pytest.raises(BackendUnavailableError, match=r"needs CuPy.*pip install -e \.\[gpu\]") as e:
        get_backend("cuda")
    assert isinstance(e.value, RtcalError)
    assert cuda_available() is False


def test_cuda_without_a_device_says_so(cupy_without_device):
    with pytest.raises(BackendUnavailableError, match="no CUDA device is visible"):
        get_backend("cuda")
    assert cuda_available() is False


@pytest.mark.gpu
@pytest.mark.skipif(not cuda_available(), reason="no CUDA")
def test_cuda_backend_round_trip():
    be = get_backend("cuda")
    a = np.arange(6, dtype=np.float32).reshape(2, 3)
    d = be.asarray(a)
    assert be.on_device and array_module(d) is be.xp
    np.testing.assert_array_equal(be.to_host(d * 2), a * 2)
    be.synchronize()
