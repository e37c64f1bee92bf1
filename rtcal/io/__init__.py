"""Movie input: read calcium-imaging movies Y (T, H, W) lazily, frame by frame.

    with open_movie("movie.tif") as movie:        # or .h5[:/dataset], .npy, a frame directory
        for frame in movie:                       # (H, W), the file's dtype
            ...

Formats: multi-page TIFF (tiff.py), one TIFF per frame (frames.py), HDF5
(hdf5.py), .npy (npy.py); the shape and dtype rules they share are in
layout.py, the reader interface in movie.py, the choice of reader in
dispatch.py. ``write_tiff`` streams frames into a TIFF (write.py).
"""

from rtcal.io.dispatch import SUPPORTED, open_movie
from rtcal.io.movie import MovieError, MovieReader
from rtcal.io.write import write_tiff

__all__ = ["SUPPORTED", "MovieError", "MovieReader", "open_movie", "write_tiff"]
