"""Training metrics: an append-only JSONL log, a loss-curve PNG, and the LR schedule.

    log = MetricsLog(run / "metrics.jsonl"); log.write({"step": 10, "split": "train", "loss": 1.2})
    plot_loss_curve(run / "metrics.jsonl", run / "loss_curve.png")
    lr_lambda(step, warmup, total, min_ratio)   # linear warmup, then cosine decay to min_ratio
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from vla.io import atomic_write_png


def lr_lambda(step: int, warmup: int, total: int, min_ratio: float) -> float:
    """Multiplier of the base LR at `step` (0-based)."""
    if warmup > 0 and step < warmup:
        return (step + 1) / warmup
    span = max(1, total - warmup)
    t = min(1.0, (step - warmup) / span)
    return min_ratio + (1.0 - min_ratio) * 0.5 * (1.0 + math.cos(math.pi * t))


class MetricsLog:
    """One JSON object per line; each write is a single flushed line (a crash loses at most that line)."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)

    def write(self, record: dict[str, Any]) -> None:
        with open(self.path, "a") as f:
            f.write(json.dumps(record) + "\n")
            f.flush()

    def read(self) -> list[dict[str, Any]]:
        if not self.path.is_file():
            return []
        return [json.loads(line) for line in self.path.read_text().splitlines() if line.strip()]


def plot_loss_curve(metrics_path: str | Path, png_path: str | Path) -> None:
    """Train loss (and held-out loss / token accuracy when logged) against step; written atomically."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    recs = MetricsLog(metrics_path).read()
    train = [r for r in recs if r.get("split") == "train"]
    evals = [r for r in recs if r.get("split") in ("val", "train_eval")]
    fig, ax = plt.subplots(1, 2, figsize=(10, 4))
    ax[0].plot([r["step"] for r in train], [r["loss"] for r in train], label="train loss")
    if evals:
        ax[0].plot([r["step"] for r in evals], [r["loss"] for r in evals], "o-", label=f"{evals[0]['split']} loss")
        ax[1].plot([r["step"] for r in evals], [r["token_acc"] for r in evals], "o-", label="token acc")
    ax[1].plot([r["step"] for r in train], [r["token_acc"] for r in train], alpha=0.5, label="train token acc")
    ax[0].set_yscale("log")
    for a, title in zip(ax, ("loss", "action-token accuracy"), strict=True):
        a.set_xlabel("step")
        a.set_title(title)
        a.legend()
    fig.tight_layout()
    try:
        atomic_write_png(png_path, fig, dpi=80)
    finally:
        plt.close(fig)
