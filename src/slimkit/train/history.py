"""`History`: what a training run measured, epoch by epoch (JSON-able for checkpoints)."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field, fields
from typing import Any


@dataclass
class History:
    """Per-epoch metrics of a `fit` run; every list has one entry per completed epoch.

    Losses are means over samples; accuracies are fractions in [0, 1]. Validation entries are
    NaN when no `val_loader` was given. `step_time_ms` is the mean wall time of one training
    step (forward, backward, optimizer) without data loading.
    """

    train_loss: list[float] = field(default_factory=list)
    train_acc: list[float] = field(default_factory=list)
    val_loss: list[float] = field(default_factory=list)
    val_top1: list[float] = field(default_factory=list)
    val_top5: list[float] = field(default_factory=list)
    epoch_time_s: list[float] = field(default_factory=list)
    step_time_ms: list[float] = field(default_factory=list)
    lr: list[float] = field(default_factory=list)
    steps: int = 0  # optimizer steps taken over the whole run
    stopped: str | None = None  # "max_steps" or "time_budget" when cut short

    def append(self, **metrics: float) -> None:
        """Add one epoch's metrics; every per-epoch list must be given."""
        names = {f.name for f in fields(self) if f.name not in ("steps", "stopped")}
        if set(metrics) != names:
            raise ValueError(f"append needs exactly {sorted(names)}, got {sorted(metrics)}")
        for k, v in metrics.items():
            getattr(self, k).append(float(v))

    @property
    def epochs(self) -> int:
        return len(self.train_loss)

    @property
    def best_val_top1(self) -> float:
        vals = [v for v in self.val_top1 if not math.isnan(v)]
        return max(vals) if vals else float("nan")

    def last(self, name: str) -> float:
        """The last epoch's value of metric `name` (NaN before the first epoch)."""
        values = getattr(self, name)
        return values[-1] if values else float("nan")

    def summary(self) -> str:
        """One line: epochs, steps, last train loss/accuracy, last and best val top-1."""
        text = (f"{self.epochs} epochs, {self.steps} steps, train loss "
                f"{self.last('train_loss'):.4f}, train acc {100 * self.last('train_acc'):.2f}%")
        if not math.isnan(self.best_val_top1):
            text += f", val top-1 {100 * self.last('val_top1'):.2f}% (best {100 * self.best_val_top1:.2f}%)"
        return text + (f", stopped early ({self.stopped})" if self.stopped else "")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "History":
        known = {f.name for f in fields(cls)}
        unknown = set(d) - known
        if unknown:
            raise ValueError(f"unknown History fields {sorted(unknown)}; known: {sorted(known)}")
        return cls(**{k: (list(v) if isinstance(v, list) else v) for k, v in d.items()})

    def table(self) -> str:
        """A small markdown table of the run."""
        rows = ["| epoch | train loss | train acc | val top1 | val top5 | epoch s | step ms |",
                "|---|---|---|---|---|---|---|"]
        for i in range(self.epochs):
            rows.append(
                f"| {i + 1} | {self.train_loss[i]:.4f} | {self.train_acc[i]:.4f} | "
                f"{self.val_top1[i]:.4f} | {self.val_top5[i]:.4f} | {self.epoch_time_s[i]:.1f} | "
                f"{self.step_time_ms[i]:.2f} |"
            )
        return "\n".join(rows)
