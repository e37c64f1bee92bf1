"""Spatial bases for the background term b f of Y = A C + b f + noise.

The 2p neuropil and slow illumination changes are spatially smooth, so a few
low-frequency 2-D cosine (DCT-II) functions span them well. Their temporal
weights f are solved each frame together with the traces, unconstrained in sign.
"""

from __future__ import annotations

import numpy as np


def cosine_basis(height: int, width: int, n_per_axis: int) -> np.ndarray:
    """Low-frequency 2-D cosine basis, float32 (n_per_axis**2, height * width), rows unit norm.

    Row i * n + j is cos(pi i (y + 1/2) / H) cos(pi j (x + 1/2) / W); row 0 is constant.
    """
    if n_per_axis < 1:
        raise ValueError(f"n_per_axis must be >= 1, got {n_per_axis}")
    ys = np.cos(np.pi * np.outer(np.arange(n_per_axis), np.arange(height) + 0.5) / height)
    xs = np.cos(np.pi * np.outer(np.arange(n_per_axis), np.arange(width) + 0.5) / width)
    basis = np.einsum("iy,jx->ijyx", ys, xs).reshape(n_per_axis**2, height * width)
    basis /= np.linalg.norm(basis, axis=1, keepdims=True)
    return basis.astype(np.float32)
