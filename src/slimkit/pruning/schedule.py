"""Automated gradual pruning (Zhu & Gupta, "To prune, or not to prune", ICLR-W 2018).

Sparsity rises from `s_i` to `s_f` over `n` pruning steps spaced `dt` training steps apart,
starting at step `t0`, fast at first and slowly at the end:

    s_t = s_f + (s_i - s_f) * (1 - (t - t0) / (n * dt)) ** 3      for t0 <= t <= t0 + n*dt

>>> [round(agp_sparsity(t, 0.0, 0.8, t0=0, n=4, dt=10), 4) for t in (0, 10, 20, 40, 99)]
[0.0, 0.4625, 0.7, 0.8, 0.8]
"""

from __future__ import annotations

from dataclasses import dataclass

from torch import nn

from slimkit.pruning.masks import MaskHook, Pruner, check_sparsity


@dataclass(frozen=True)
class AGPSchedule:
    """The cubic schedule's parameters, validated."""

    initial_sparsity: float = 0.0
    final_sparsity: float = 0.8
    begin_step: int = 0
    num_steps: int = 10  # n: pruning events
    frequency: int = 100  # dt: training steps between events

    def __post_init__(self) -> None:
        check_sparsity(self.initial_sparsity, "initial_sparsity")
        check_sparsity(self.final_sparsity, "final_sparsity")
        if self.final_sparsity < self.initial_sparsity:
            raise ValueError(
                f"final_sparsity {self.final_sparsity} is below initial_sparsity {self.initial_sparsity}"
            )
        if self.begin_step < 0 or self.num_steps < 1 or self.frequency < 1:
            raise ValueError(
                f"need begin_step >= 0, num_steps >= 1 and frequency >= 1; got "
                f"{self.begin_step}, {self.num_steps}, {self.frequency}"
            )

    def __call__(self, step: int) -> float:
        return agp_sparsity(
            step,
            self.initial_sparsity,
            self.final_sparsity,
            self.begin_step,
            self.num_steps,
            self.frequency,
        )

    @property
    def end_step(self) -> int:
        return self.begin_step + self.num_steps * self.frequency


def agp_sparsity(t: int, s_i: float, s_f: float, t0: int, n: int, dt: int) -> float:
    """Sparsity at training step `t` of the cubic schedule (constant outside its span)."""
    if t <= t0:
        return float(s_i)
    progress = min((t - t0) / (n * dt), 1.0)
    return float(s_f + (s_i - s_f) * (1.0 - progress) ** 3)


class AGPHook(MaskHook):
    """Raises a `Pruner`'s sparsity along the schedule every `frequency` steps, at any
    granularity the pruner was built with, and keeps its masks applied in between."""

    def __init__(self, pruner: Pruner, schedule: AGPSchedule) -> None:
        super().__init__(pruner)
        self.schedule = schedule

    def on_step_end(self, model: nn.Module, step: int) -> None:
        s = self.schedule
        t = step + 1  # steps completed
        if s.begin_step <= t <= s.end_step and (t - s.begin_step) % s.frequency == 0:
            self.pruner.step(s(t))
        else:
            self.pruner.apply()
