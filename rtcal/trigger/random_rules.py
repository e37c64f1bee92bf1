"""Random rule sets of all three kinds, for fuzz tests and the trigger benchmark."""

from __future__ import annotations

import numpy as np


def random_rules(rng: np.random.Generator, n_rules: int, n_neurons: int) -> list[dict]:
    """n_rules rule tables (threshold, coincidence, template in turn) over
    neurons 0 .. n_neurons - 1, with random refractory periods and settings."""
    rules = []
    for r in range(n_rules):
        kind = ("threshold", "coincidence", "template")[r % 3]
        neurons = rng.choice(n_neurons, size=int(rng.integers(1, 6)), replace=False).tolist()
        rule = {"name": f"r{r}", "kind": kind, "neurons": neurons,
                "refractory_s": float(rng.choice([0.0, 0.05, 0.2]))}
        if kind == "threshold":
            rule.update(threshold=float(rng.uniform(0.3, 0.9)),
                        signal=str(rng.choice(["dff", "denoised"])))
        elif kind == "coincidence":
            rule.update(k=int(rng.integers(1, len(neurons) + 1)),
                        window_frames=int(rng.integers(1, 8)), spike_min=0.2)
        else:
            rule.update(template=rng.uniform(-0.2, 1, len(neurons)).round(3).tolist(),
                        threshold=float(rng.uniform(0.5, 0.95)), min_norm=0.3)
        rules.append(rule)
    return rules
