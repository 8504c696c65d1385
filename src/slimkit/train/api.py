"""`train_model`: build a zoo model, load a data set, `fit`, save; used by `slimkit train`.

>>> model, hist = train_model("lenet5", "fashion-mnist", epochs=5, batch_size=128, lr=0.05,  # doctest: +SKIP
...                           root="/data/fashion-mnist", out="lenet5_fashion.pt")
"""

from __future__ import annotations

import os
from typing import Any, Sequence

from torch import nn

from slimkit.train import distributed as D
from slimkit.train.history import History
from slimkit.train.hooks import Hook
from slimkit.train.loop import evaluate, fit
from slimkit.train.modelfile import save_model


def train_model(
    arch: str,
    dataset: str,
    *,
    epochs: int,
    batch_size: int = 128,
    lr: float = 0.05,
    root: str | os.PathLike | None = None,
    out: str | os.PathLike | None = None,
    optimizer: str = "sgd",
    momentum: float = 0.9,
    weight_decay: float = 5e-4,
    schedule: str = "cosine",
    augment: bool = True,
    train_subset: int | None = None,
    test_subset: int | None = None,
    hooks: Sequence[Hook] = (),
    checkpoint_dir: str | os.PathLike | None = None,
    resume: bool = False,
    device: str = "cpu",
    progress: bool = True,
    seed: int = 0,
    max_steps: int | None = None,
    time_budget_s: float | None = None,
    num_workers: int = 0,
) -> tuple[nn.Module, History]:
    """Train zoo model `arch` on data set `dataset` and return `(model, history)`.

    Validates on the data set's test split each epoch. `train_subset` / `test_subset` take
    seeded class-balanced subsets. `augment` uses the data set's own augmentation (crop+flip
    for CIFAR; none for MNIST-like data). With `out`, rank 0 writes a model file (see
    `save_model`) whose metadata records the task (data set, root, input shape, classes,
    normalisation; reused by the CLI), epochs and final test accuracy.
    """
    from slimkit import data, zoo  # zoo/data sit beside train; imported when used

    num_classes = data.num_classes(dataset)
    in_channels = data.input_shape(dataset)[0]
    arch_kwargs: dict[str, Any] = {"num_classes": num_classes, "in_channels": in_channels}
    model = zoo.create(arch, **arch_kwargs)

    train_set = data.load(dataset, root=root, split="train")
    test_set = data.load(dataset, root=root, split="test")
    if train_subset is not None:
        train_set = data.subset(train_set, train_subset, seed=seed)
    if test_subset is not None:
        test_set = data.subset(test_set, test_subset, seed=seed)
    train_loader = data.loader(train_set, batch_size=batch_size, train=True, augment=augment,
                               seed=seed, num_workers=num_workers)
    test_loader = data.loader(test_set, batch_size=max(batch_size, 256), num_workers=num_workers)

    history = fit(
        model, train_loader, epochs=epochs, optimizer=optimizer, lr=lr, momentum=momentum,
        weight_decay=weight_decay, schedule=schedule, hooks=hooks, val_loader=test_loader,
        checkpoint_dir=checkpoint_dir, resume=resume, device=device, progress=progress,
        seed=seed, max_steps=max_steps, time_budget_s=time_budget_s,
    )
    if out is not None:
        final = evaluate(model, test_loader, device) if history.epochs == 0 else {
            "top1": history.last("val_top1"), "top5": history.last("val_top5")}
        if D.is_main():
            save_model(
                out, model, arch=arch, arch_kwargs=arch_kwargs, dataset=dataset,
                epochs=history.epochs, steps=history.steps, top1=final["top1"],
                top5=final["top5"], train_subset=train_subset, test_subset=test_subset,
                lr=lr, batch_size=batch_size, optimizer=optimizer, schedule=schedule, seed=seed,
                stopped=history.stopped, task=task_record(dataset, root),
            )
        D.barrier()
    return model, history


def task_record(dataset: str, root: str | os.PathLike | None) -> dict[str, Any]:
    """What the model file remembers of its data (the record `slimkit train` writes, read by
    every later command): name, root as given, input shape, classes, normalisation."""
    from slimkit import data

    spec = data.DATASETS.get(dataset)
    return {"data": dataset, "root": None if root is None else str(root),
            "input_shape": [int(v) for v in spec.input_shape],
            "num_classes": int(spec.num_classes), "mean": [float(v) for v in spec.mean],
            "std": [float(v) for v in spec.std]}
