"""Deterministic seeding: one seed for torch, numpy and `random`, plus per-epoch streams.

The training loop reseeds at the start of every epoch from `(seed, epoch)` alone, so the data
order, augmentation and dropout of epoch `e` do not depend on what ran before it. That is what
makes `fit(..., resume=True)` give exactly the weights of an uninterrupted run.

>>> seed_everything(0)
>>> g = epoch_generator(0, epoch=3)      # same stream every time for (seed=0, epoch=3)
"""

from __future__ import annotations

import random
from typing import Any

import numpy as np
import torch

_MIX = 1_000_003  # a prime: (seed, epoch) -> distinct 63-bit seeds


def epoch_seed(seed: int, epoch: int) -> int:
    """The seed of epoch `epoch` of a run seeded with `seed` (depends on nothing else)."""
    if seed < 0 or epoch < 0:
        raise ValueError(f"seed and epoch must be >= 0, got seed={seed}, epoch={epoch}")
    return (seed * _MIX + epoch + 1) % (2**63 - 1)


def seed_everything(seed: int) -> None:
    """Seed torch (CPU and CUDA), numpy and `random` with `seed`."""
    if not isinstance(seed, int) or seed < 0:
        raise ValueError(f"seed must be a non-negative int, got {seed!r}")
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)  # also seeds every CUDA device


def epoch_generator(seed: int, epoch: int) -> torch.Generator:
    """A fresh `torch.Generator` for one epoch (e.g. a DataLoader's `generator=`)."""
    g = torch.Generator()
    g.manual_seed(epoch_seed(seed, epoch))
    return g


def reseed_loader(loader: Any, seed: int) -> None:
    """Reseed the shuffling of a DataLoader in place so its order depends only on `seed`.

    Handles a DistributedSampler (`set_epoch`-style seed), a sampler with its own generator
    (RandomSampler built with `generator=`), and the DataLoader's own generator.
    """
    samplers = [getattr(loader, "sampler", None)]
    batch_sampler = getattr(loader, "batch_sampler", None)
    samplers.append(getattr(batch_sampler, "sampler", None))
    for sampler in samplers:
        gen = getattr(sampler, "generator", None)
        if isinstance(gen, torch.Generator):
            gen.manual_seed(seed)
    gen = getattr(loader, "generator", None)
    if isinstance(gen, torch.Generator):
        gen.manual_seed(seed)


def rng_state() -> dict[str, Any]:
    """The global RNG states as tensors and plain lists (safe for `weights_only` loading)."""
    kind, keys, pos, has_gauss, gauss = np.random.get_state()
    version, internal, gauss_py = random.getstate()
    return {
        "torch": torch.get_rng_state(),
        "numpy": {
            "kind": str(kind),
            "keys": torch.from_numpy(np.asarray(keys, dtype=np.int64)),
            "pos": int(pos),
            "has_gauss": int(has_gauss),
            "gauss": float(gauss),
        },
        "random": {"version": version, "state": list(internal), "gauss": gauss_py},
    }


def set_rng_state(state: dict[str, Any]) -> None:
    """Restore what `rng_state()` returned."""
    torch.set_rng_state(state["torch"])
    n = state["numpy"]
    keys = n["keys"].numpy().astype(np.uint32)
    np.random.set_state((n["kind"], keys, n["pos"], n["has_gauss"], n["gauss"]))
    r = state["random"]
    random.setstate((r["version"], tuple(r["state"]), r["gauss"]))


def reseed_epoch(loader: Any, seed: int, epoch: int) -> None:
    """Every RNG, the loader's shuffling, its distributed sampler and an augmenting collate
    function, all from `(seed, epoch)` alone: what makes a resumed epoch replay exactly."""
    s = epoch_seed(seed, epoch)
    random.seed(s)
    np.random.seed(s % 2**32)
    torch.manual_seed(s)
    reseed_loader(loader, s)
    sampler = getattr(loader, "sampler", None)
    if hasattr(sampler, "set_epoch"):  # DistributedSampler: order from (its seed, epoch)
        sampler.set_epoch(epoch)
    collate = getattr(loader, "collate_fn", None)
    if hasattr(collate, "set_epoch"):  # augmenting collate functions with their own RNG
        collate.set_epoch(epoch)
