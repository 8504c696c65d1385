"""Two pruned LeNet-5s for the demo: magnitude (element, Han'15) and L1 filters (Li'17),
each fine-tuned briefly.

>>> rows = demo_rows(lenet5, train_loader, test_loader, (1, 28, 28))  # doctest: +SKIP
>>> [name for name, _ in rows]  # doctest: +SKIP
['prune: magnitude 90% (Han)', 'prune: L1 filters 50% (Li)']
"""

from __future__ import annotations

from collections.abc import Iterable

import torch
from torch import nn

from slimkit.pruning.api import PruneConfig, prune


def demo_rows(
    model: nn.Module,
    train_loader: Iterable,
    test_loader: Iterable | None,
    input_shape: tuple[int, ...],
    epochs: int = 1,
) -> list[tuple[str, nn.Module]]:
    """[(method name, compressed model)], each fine-tuned `epochs` (<= 1) on `train_loader`.

    `test_loader` is not used for training (the caller evaluates on it)."""
    x = torch.zeros(1, *input_shape)
    magnitude = prune(
        model,
        PruneConfig(
            "magnitude", 0.9, granularity="element", scope="global", finetune_epochs=epochs, lr=0.01
        ),
        example_inputs=x,
        data=train_loader,
    )
    filters = prune(
        model,
        PruneConfig("l1_filter", 0.5, finetune_epochs=epochs, lr=0.01),
        example_inputs=x,
        data=train_loader,
    )
    return [("prune: magnitude 90% (Han)", magnitude), ("prune: L1 filters 50% (Li)", filters)]
