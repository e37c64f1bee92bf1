"""Test session setup: the same BLAS threading as the command line (see rtcal.cli)."""

import gc

import pytest

from rtcal.cli import limit_blas_threads

limit_blas_threads()


@pytest.fixture(autouse=True)
def _unfreeze_gc():
    """Engines and ``rtcal run`` freeze the heap (rtcal.engine.gc_pauses): give what
    a test froze back to the collector, so that its engine's cycles can be freed."""
    yield
    gc.unfreeze()
