"""The training record on disk: the curve as CSV and as a PNG plot.

``history`` rows are what ``Trainer.train_step`` returns (step, lr, seconds and
every loss term); ``val_history`` rows hold step, f1, precision, recall,
median_trace_corr. Matplotlib is imported only when a plot is drawn.
"""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np

LOSS_COLUMNS = ("total", "class", "focal", "dice", "centre", "aux", "trace", "contrastive")


def write_csv(rows: list[dict[str, float]], path: str | Path) -> None:
    """Rows as CSV, columns in the order the first row gives them (none: header only)."""
    columns: list[str] = []
    for row in rows:
        columns.extend(k for k in row if k not in columns)
    with open(path, "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=columns)
        writer.writeheader()
        writer.writerows(rows)


def smooth(values: np.ndarray, span: int) -> np.ndarray:
    """Exponential moving average with time constant ``span`` samples (bias-corrected)."""
    alpha, out = 1.0 / max(span, 1), np.empty(len(values))
    acc = norm = 0.0
    for i, v in enumerate(values):
        acc = (1 - alpha) * acc + alpha * v
        norm = (1 - alpha) * norm + alpha
        out[i] = acc / norm
    return out


def save_curve(history: list[dict[str, float]], val_history: list[dict[str, float]],
               path: str | Path, title: str = "") -> None:
    """Plot the smoothed loss terms (log scale) and the validation scores into ``path``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax_loss, ax_val) = plt.subplots(1, 2, figsize=(11, 4))
    if history:
        steps = np.array([row["step"] for row in history])
        span = max(len(history) // 50, 1)
        for name in LOSS_COLUMNS:
            values = np.array([row.get(name, np.nan) for row in history], float)
            values = np.where(np.isfinite(values), values, 0.0)
            if np.any(values > 0):  # zero (term off, or nothing to score): left blank
                curve = smooth(values, span)
                ax_loss.plot(steps, np.where(curve > 0, curve, np.nan), label=name, lw=1.2)
        ax_loss.set_yscale("log")
        ax_loss.legend(fontsize=8, ncol=2)
    ax_loss.set(xlabel="step", ylabel="loss (smoothed)", title="training loss")
    if val_history:
        steps = [row["step"] for row in val_history]
        for name in ("f1", "median_trace_corr"):
            ax_val.plot(steps, [row[name] for row in val_history], "o-", label=name)
        ax_val.legend(fontsize=8)
    ax_val.set(xlabel="step", ylim=(0, 1), title="validation (held-out windows)")
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
