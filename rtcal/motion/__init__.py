"""Motion correction: rigid (and later piecewise-rigid) registration to a running template."""
