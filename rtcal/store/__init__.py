"""Results file: the one crash-safe HDF5 format every command writes.

See ``docs/results-format.md``. ``ResultsWriter`` appends frame by frame (the
live engine), ``write_results`` writes a whole ``Results``, ``read_results``
loads and validates one.
"""

from rtcal.store.format import FORMAT_NAME, FORMAT_VERSION, ResultsFormatError
from rtcal.store.reader import read_results
from rtcal.store.results import Events, Results
from rtcal.store.writer import ResultsWriteError, ResultsWriter, write_results

__all__ = [
    "FORMAT_NAME",
    "FORMAT_VERSION",
    "Events",
    "Results",
    "ResultsFormatError",
    "ResultsWriteError",
    "ResultsWriter",
    "read_results",
    "write_results",
]
