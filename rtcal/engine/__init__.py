"""The loop that drives the stages: offline first pass now, live engine later."""
