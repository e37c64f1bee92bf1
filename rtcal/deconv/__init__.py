"""Spike inference (OASIS) and dF/F."""
