"""Data-parallel training under `torchrun`: process group, rank helpers, metric all-reduce.

`fit` calls `init_from_env()`; outside `torchrun` it does nothing and everything below answers
as a single process (rank 0 of 1). Under `torchrun --nproc_per_node N` it joins the process
group (gloo on CPU, nccl on CUDA), and `fit` wraps the model in DistributedDataParallel and
shards the data with a DistributedSampler (Li et al., "PyTorch Distributed", VLDB 2020).

>>> init_from_env()                    # no-op unless WORLD_SIZE > 1 is in the environment
False
>>> if is_main(): print("only rank 0 prints and writes checkpoints")  # doctest: +SKIP
>>> total = all_reduce_sum(torch.tensor([loss_sum, n]))  # doctest: +SKIP
"""

from __future__ import annotations

import os
from datetime import timedelta
from typing import Iterator

import torch
import torch.distributed as dist
from torch.utils.data import DataLoader, DistributedSampler, RandomSampler, Sampler


def is_distributed() -> bool:
    """True when a process group with more than one process is running."""
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def rank() -> int:
    return dist.get_rank() if is_distributed() else 0


def world_size() -> int:
    return dist.get_world_size() if is_distributed() else 1


def is_main() -> bool:
    """True on rank 0 (and in a single process)."""
    return rank() == 0


def init_from_env(backend: str | None = None, timeout_s: float = 300.0) -> bool:
    """Join the process group that `torchrun` describes in the environment.

    Returns True when running distributed. Idempotent; a no-op when WORLD_SIZE is unset or 1.
    `backend` defaults to nccl when CUDA is available, else gloo.
    """
    if dist.is_available() and dist.is_initialized():
        return is_distributed()
    n = int(os.environ.get("WORLD_SIZE", "1"))
    if n <= 1:
        return False
    if not dist.is_available():
        raise RuntimeError("WORLD_SIZE > 1 but torch.distributed is not available in this build")
    if backend is None:
        backend = "nccl" if torch.cuda.is_available() else "gloo"
    if backend not in ("gloo", "nccl"):
        raise ValueError(f"backend must be 'gloo' or 'nccl', got {backend!r}")
    if backend == "nccl":
        torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
    dist.init_process_group(backend=backend, timeout=timedelta(seconds=timeout_s))
    return True


def local_device(device: str | torch.device = "cpu") -> torch.device:
    """The device of this process: `cuda:LOCAL_RANK` when asked for CUDA under torchrun."""
    device = torch.device(device)
    if device.type == "cuda" and device.index is None and is_distributed():
        return torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
    return device


def barrier() -> None:
    if is_distributed():
        dist.barrier()


def all_reduce_sum(t: torch.Tensor) -> torch.Tensor:
    """Sum of `t` over all ranks (a new tensor; `t` itself is returned as is when single)."""
    if not is_distributed():
        return t
    out = t.clone()
    dist.all_reduce(out, op=dist.ReduceOp.SUM)
    return out


def all_reduce_mean(t: torch.Tensor) -> torch.Tensor:
    return all_reduce_sum(t) / world_size()


def broadcast_object(obj: object, src: int = 0) -> object:
    """`obj` from rank `src` on every rank."""
    if not is_distributed():
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=src)
    return box[0]


def cleanup() -> None:
    """Tear the process group down once every rank is here (no collective still in flight)."""
    if dist.is_available() and dist.is_initialized():
        dist.barrier()
        dist.destroy_process_group()


class ShardSampler(Sampler[int]):
    """Rank r takes indices r, r+W, r+2W, ... of a dataset, in order, without padding.

    Used for evaluation: summing per-rank counts gives exactly the single-process metrics.
    """

    def __init__(self, n: int, num_replicas: int | None = None, rank_: int | None = None) -> None:
        self.n = n
        self.num_replicas = world_size() if num_replicas is None else num_replicas
        self.rank = rank() if rank_ is None else rank_

    def __iter__(self) -> Iterator[int]:
        return iter(range(self.rank, self.n, self.num_replicas))

    def __len__(self) -> int:
        return len(range(self.rank, self.n, self.num_replicas))


def shard_loader(loader: DataLoader, *, train: bool, seed: int = 0) -> DataLoader:
    """`loader` rebuilt so each rank sees its own part of the data (unchanged when single).

    Training loaders get a DistributedSampler (shuffled when the original was); evaluation
    loaders get a `ShardSampler`. A loader that is already sharded is returned unchanged.
    """
    if not is_distributed() or isinstance(loader.sampler, (DistributedSampler, ShardSampler)):
        return loader
    if loader.batch_size is None:
        raise ValueError("cannot shard a DataLoader built with a custom batch_sampler")
    dataset = loader.dataset
    if train:
        shuffle = isinstance(loader.sampler, RandomSampler)
        sampler: Sampler = DistributedSampler(
            dataset, num_replicas=world_size(), rank=rank(), shuffle=shuffle, seed=seed,
            drop_last=loader.drop_last,
        )
    else:
        sampler = ShardSampler(len(dataset))
    return DataLoader(
        dataset, batch_size=loader.batch_size, sampler=sampler, num_workers=loader.num_workers,
        collate_fn=loader.collate_fn, pin_memory=loader.pin_memory, drop_last=loader.drop_last,
        worker_init_fn=loader.worker_init_fn,
        persistent_workers=loader.persistent_workers if loader.num_workers > 0 else False,
    )
