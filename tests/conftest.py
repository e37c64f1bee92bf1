"""Test session setup: the same BLAS threading as the command line (see rtcal.cli)."""

import gc

import pytest
import zmq
from engine_live_helpers import close_all

from rtcal.cli import limit_blas_threads

limit_blas_threads()


@pytest.fixture(autouse=True)
def _unfreeze_gc():
    """An engine with ``freeze_gc = true`` freezes the heap (rtcal.engine.gc_pauses):
    give what a test froze back to the collector, so that its engine's cycles can
    be freed."""
    yield
    gc.unfreeze()


@pytest.fixture
def ctx():
    """A ZeroMQ context for one test; the engines the test started
    (``engine_live_helpers.start_engine``) are closed before it goes."""
    c = zmq.Context()
    yield c
    close_all()
    c.destroy(linger=0)
