"""Training curves: curve.png (matplotlib imported on use: `import parity` stays light)."""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from parity.files import write_atomic


def plot_history(histories: Mapping[str, Any], path: str | os.PathLike[str]) -> None:
    """Batch loss and epoch validation loss across stages, one panel per fine-tuned model
    (``histories``: name -> parity.train.History)."""
    import matplotlib

    matplotlib.use("Agg")  # files only: no display, whatever the environment says
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(histories), figsize=(6 * len(histories), 4), squeeze=False)
    for ax, (name, hist) in zip(axes[0], histories.items(), strict=True):
        steps = 0
        for st in hist.stages:
            xs = np.arange(steps, steps + len(st["batch_loss"]))
            ax.plot(xs, st["batch_loss"], lw=0.6, alpha=0.6, label=f"{st['stage']} batch")
            per_epoch = len(st["batch_loss"]) // max(1, len(st["val_loss"]))
            ex = steps + per_epoch * np.arange(1, len(st["val_loss"]) + 1) - 1
            ax.plot(ex, st["val_loss"], "o-", ms=3, label=f"{st['stage']} val")
            steps += len(st["batch_loss"])
        ax.set_title(name)
        ax.set_xlabel("training step")
        ax.set_ylabel("loss")
        ax.legend(fontsize=6, ncol=2)
    fig.tight_layout()
    # atomically: a reader (or a crash) never sees half a PNG; the format from the final name
    fmt = Path(path).suffix.lstrip(".") or "png"
    write_atomic(path, lambda f: fig.savefig(f, dpi=120, format=fmt), "plot")
    plt.close(fig)
