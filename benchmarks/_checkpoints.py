"""The baselines' trained models (benchmarks/baselines.py), shared by every benchmark, and the
brief fallback training a benchmark uses (and says so) when a checkpoint is absent."""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from slimkit import zoo
from slimkit.train import load_model, read_model_file

HERE = Path(__file__).resolve().parent
CHECKPOINTS = {  # zoo name -> file written by baselines.py
    "lenet300": "lenet300_fashion.pt",
    "lenet5": "lenet5_fashion.pt",
    "resnet20": "resnet20_cifar10.pt",
}


def trained(name: str) -> tuple[nn.Module, str] | None:
    """(model in eval mode, a description naming the file and its training), or None."""
    path = HERE / "checkpoints" / CHECKPOINTS.get(name, f"{name}.pt")
    if not path.is_file():
        return None
    meta = read_model_file(path).get("meta", {})
    desc = ", ".join(f"{k} {meta[k]}" for k in ("epochs", "steps", "top1") if k in meta)
    return load_model(path).eval(), f"checkpoint {path.name}" + (f": {desc}" if desc else "")


def train_one_cycle(name: str, x: torch.Tensor, y: torch.Tensor, epochs: int) -> nn.Module:
    """A brief seeded SGD one-cycle run on tensors (x, y), batch 128."""
    torch.manual_seed(0)
    model = zoo.create(name, num_classes=10, in_channels=x.shape[1])
    opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9, weight_decay=5e-4,
                          nesterov=True)
    steps = epochs * (len(x) // 128)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=0.1, total_steps=steps)
    g = torch.Generator().manual_seed(0)
    model.train()
    for _ in range(epochs):
        perm = torch.randperm(len(x), generator=g)
        for i in range(0, len(perm) - 127, 128):
            b = perm[i:i + 128]
            opt.zero_grad()
            nn.functional.cross_entropy(model(x[b]), y[b]).backward()
            opt.step()
            sched.step()
    return model.eval()
