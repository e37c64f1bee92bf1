"""Rolling keyframe buffer and the summary images computed over it."""

from rtcal.buffer.summary import (
    SummaryImages,
    local_correlation,
    noise_std,
    summary_images,
    temporal_median,
)

__all__ = [
    "SummaryImages",
    "local_correlation",
    "noise_std",
    "summary_images",
    "temporal_median",
]
