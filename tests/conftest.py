"""Test session setup: the same BLAS threading as the command line (see rtcal.cli)."""

from rtcal.cli import limit_blas_threads

limit_blas_threads()
