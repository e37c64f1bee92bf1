"""rtcal: streaming, real-time calcium-imaging extraction.

Glossary used across the package (Pnevmatikakis et al. 2016, Neuron):
Y movie (T, H, W), A footprints (K, H, W), C calcium traces (K, T),
S spikes (K, T), b/f background (spatial/temporal).
Pixel index of a flattened frame is ``row * width + col`` (C order).

Nothing heavy is imported here: ``import rtcal`` must stay cheap.
"""

__version__ = "0.1.0"
