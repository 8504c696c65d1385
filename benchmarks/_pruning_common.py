"""Helpers shared by the pruning benchmarks: checkpoints (or a brief fallback training),
data, parameter counts."""

from __future__ import annotations

import time
from pathlib import Path

import torch
from torch import nn

from slimkit import data, zoo
from slimkit.train import fit, load_model

HERE = Path(__file__).resolve().parent
SHARED = HERE.parents[1] / "shared" / "datasets"
ROOTS = {"fashion-mnist": SHARED / "fashion-mnist", "cifar10": SHARED / "cifar10-jpeg.tar.gz"}


def loaders(
    dataset: str, train_n: int | None, test_n: int | None, batch: int = 128, augment: bool = False
):
    train = data.load(dataset, root=ROOTS[dataset], split="train")
    test = data.load(dataset, root=ROOTS[dataset], split="test")
    if train_n:
        train = data.subset(train, min(train_n, len(train)), seed=0)
    if test_n:
        test = data.subset(test, min(test_n, len(test)), seed=0)
    return (
        data.loader(train, batch_size=batch, train=True, augment=augment),
        data.loader(test, batch_size=500),
    )


def checkpoint_or_train(
    arch: str, ckpt: str, train_loader, epochs: int, lr: float
) -> tuple[nn.Module, str]:
    """The trained checkpoint from benchmarks/checkpoints, or a brief training run (said so)."""
    path = HERE / "checkpoints" / ckpt
    if path.is_file():
        return load_model(path), f"checkpoint benchmarks/checkpoints/{ckpt}"
    torch.manual_seed(0)
    model = zoo.create(arch)
    t = time.time()
    fit(model, train_loader, epochs=epochs, lr=lr, progress=False)
    return model.eval(), (
        f"no checkpoint found: trained here for {epochs} epoch(s) on the training subset "
        f"({time.time() - t:.0f} s)"
    )


def nonzero_params(model: nn.Module) -> int:
    return sum(int((p != 0).sum()) for p in model.parameters())


def total_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())
