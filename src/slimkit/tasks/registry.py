"""`TASKS`: name -> `Task` (data set builder, model builder, loss, distillation loss, metric).

What a caller (e.g. a future `slimkit train --task detection`) needs:

>>> task = TASKS.get("detection")            # or get_task("segmentation")
>>> train = task.dataset(SceneConfig(n=2000, split="train"))
>>> test = task.dataset(SceneConfig(n=500, split="test", seed=1))
>>> model = task.build_model(width=8)
>>> train_task(model, task.loader(train, train=True), task, epochs=5)  # doctest: +SKIP
>>> evaluate_task(model, task.loader(test), task)[task.metric]   # "map50" / "miou"  # doctest: +SKIP

The data are synthetic scenes (`slimkit.tasks.scenes`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Iterable

import torch
from torch import Tensor, nn
from torch.utils.data import DataLoader

from slimkit._registry import Registry
from slimkit.errors import UserError
from slimkit.tasks import losses
from slimkit.tasks.evaluate import evaluate_detection, evaluate_segmentation
from slimkit.tasks.models import HEAD_OUTPUTS, CenterNetLite, UNetLite
from slimkit.tasks.scenes import SceneConfig, SceneDataset, collate_scenes

__all__ = ["TASKS", "Task", "get_task"]


@dataclass(frozen=True)
class Task:
    """One dense-prediction task on synthetic scenes.

    `build_model(width=8, num_classes=10, in_channels=1)`; `loss(out, targets)`;
    `kd_loss(student_out, teacher_out, T=1.0)`; `evaluate(model, loader) -> dict` holding
    `metric` ("map50" or "miou", a fraction in [0, 1]); `outputs`: layers whose output
    channels are fixed by the task (never pruned or factorised away)."""

    name: str
    metric: str
    build_model: Callable[..., nn.Module]
    loss: Callable[[Tensor, dict], Tensor]
    kd_loss: Callable[..., Tensor]
    evaluate: Callable[[nn.Module, Iterable], dict]
    outputs: tuple[str, ...]

    def dataset(self, cfg: SceneConfig = SceneConfig()) -> SceneDataset:
        """Seeded synthetic scenes per `cfg`."""
        return SceneDataset(cfg)

    def input_shape(self, cfg: SceneConfig = SceneConfig()) -> tuple[int, int, int]:
        return (1, cfg.size, cfg.size)

    def loader(self, dataset: SceneDataset, batch_size: int = 32, train: bool = False,
               seed: int = 0) -> DataLoader:
        """A DataLoader with `collate_scenes` (shuffled, seeded, when `train`)."""
        g = torch.Generator().manual_seed(seed)
        return DataLoader(dataset, batch_size=batch_size, shuffle=train, generator=g,
                          collate_fn=collate_scenes)


TASKS: Registry[Task] = Registry("task")

TASKS.register("detection")(Task(
    name="detection", metric="map50", build_model=CenterNetLite,
    loss=losses.detection_loss, kd_loss=losses.detection_kd,
    evaluate=evaluate_detection, outputs=HEAD_OUTPUTS))

TASKS.register("segmentation")(Task(
    name="segmentation", metric="miou", build_model=UNetLite,
    loss=lambda out, t: losses.segmentation_loss(out, t, dice_weight=0.5),
    kd_loss=losses.segmentation_kd, evaluate=evaluate_segmentation, outputs=("heads.*",)))


def get_task(task: Any) -> Task:
    """A `Task` itself, or the registered task of that name (UserError listing the names)."""
    if isinstance(task, Task):
        return task
    if task not in TASKS:
        raise UserError(f"unknown task {task!r}; known: {', '.join(TASKS.names())}")
    return TASKS.get(task)
