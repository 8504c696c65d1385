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
    "alexnet": "alexnet_cifar10.pt",
    "mobilenetv2": "mobilenetv2_cifar10.pt",
    "vgg16": "vgg16_cifar10.pt",  # 30 MB, not in git: present once rebuilt (baselines.md)
}


def trained(name: str) -> tuple[nn.Module, str] | None:
    """(model in eval mode, a description naming the file and its training), or None."""
    path = HERE / "checkpoints" / CHECKPOINTS.get(name, f"{name}.pt")
    if not path.is_file():
        return None
    meta = read_model_file(path).get("meta", {})
    desc = ", ".join(f"{k} {meta[k]}" for k in ("epochs", "steps", "top1") if k in meta)
    return load_model(path).eval(), f"checkpoint {path.name}" + (f": {desc}" if desc else "")


def fit_one_cycle(model: nn.Module, x: torch.Tensor, y: torch.Tensor, epochs: int, *,
                  batch_size: int = 128, peak_lr: float = 0.1, weight_decay: float = 5e-4,
                  augment: bool = False) -> nn.Module:
    """A brief seeded run of `slimkit.train.fit` on tensors (x, y): SGD (momentum 0.9,
    Nesterov) on a one-cycle schedule peaking at `peak_lr`, full batches only; `augment`:
    4-pixel pad-crop + horizontal flip per sample. Returns the model in eval mode."""
    from torch.utils.data import DataLoader, TensorDataset

    from slimkit.data.transforms import CropFlipCollate
    from slimkit.train import fit

    opt = torch.optim.SGD(model.parameters(), lr=peak_lr, momentum=0.9,
                          weight_decay=weight_decay, nesterov=True)
    loader = DataLoader(TensorDataset(x, y), batch_size=batch_size, shuffle=True, drop_last=True,
                        generator=torch.Generator().manual_seed(0),
                        collate_fn=CropFlipCollate(padding=4) if augment else None)
    fit(model, loader, epochs=epochs, optimizer=opt, schedule="onecycle", progress=False)
    return model.eval()


def train_one_cycle(name: str, x: torch.Tensor, y: torch.Tensor, epochs: int) -> nn.Module:
    """A brief seeded one-cycle run of zoo model `name` on tensors (x, y), batch 128
    (`fit_one_cycle`; before the move to `slimkit.train.fit` this was a hand-written loop with
    its own shuffling, so results written earlier differ in the last digits)."""
    torch.manual_seed(0)
    model = zoo.create(name, num_classes=10, in_channels=x.shape[1])
    return fit_one_cycle(model, x, y, epochs)
