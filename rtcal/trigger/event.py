"""What a trigger rule emits when it fires."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class TriggerEvent:
    """One firing of one rule.

    rule: the rule's name. frame: the index of the frame whose outputs fired it.
    t_ns: the time passed to ``TriggerSet.step`` with that frame (ns).
    neurons: int64 (n,) the component indices that made it fire (the neurons that
    crossed, the ones that spiked within the window, or the template's neurons).
    """

    rule: str
    frame: int
    t_ns: int
    neurons: np.ndarray
