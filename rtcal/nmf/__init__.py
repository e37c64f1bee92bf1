"""Online non-negative matrix factorisation: traces, background, footprints."""
