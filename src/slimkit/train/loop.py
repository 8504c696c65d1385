"""The one training loop: `fit` (hooks, schedules, checkpoints, resume, DDP) and `evaluate`.

Every compression method trains through `fit`: pruning masks, AGP, slimming's L1, SFP and QAT
plug in as `Hook`s; distillation replaces the loss with `loss_fn(model, x, y) -> (loss,
logits)`. The same call runs single-process or under `torchrun` (DistributedDataParallel).

>>> hist = fit(model, train_loader, epochs=10, lr=0.05, val_loader=test_loader,  # doctest: +SKIP
...            checkpoint_dir="runs/lenet5", resume=True)
>>> evaluate(model, test_loader)["top1"]  # doctest: +SKIP
"""

from __future__ import annotations

import math
import os
import sys
import time
from pathlib import Path
from typing import Callable, Iterable, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader
from tqdm.auto import tqdm

from slimkit.train import distributed as D
from slimkit.train.checkpoint import load_checkpoint, save_checkpoint
from slimkit.progress import is_terminal
from slimkit.threads import apply_threads
from slimkit.train.history import History
from slimkit.errors import UserError
from slimkit.train.hooks import Hook, HookList
from slimkit.train.optim import build_optimizer, build_schedule
from slimkit.train.seed import reseed_epoch, rng_state, seed_everything, set_rng_state

LOG_EVERY_S = 10.0  # plain progress lines when stderr is not a terminal

LossFn = Callable[[nn.Module, Tensor, Tensor], tuple[Tensor, Tensor]]
LAST = "last.pt"
PRECISIONS = ("fp32", "bf16")  # fit(precision=...): float32, or bfloat16 autocast


def cross_entropy(model: nn.Module, x: Tensor, y: Tensor) -> tuple[Tensor, Tensor]:
    """The default `loss_fn`: mean cross-entropy of `model(x)` against labels `y`."""
    logits = model(x)  # (N, num_classes)
    return F.cross_entropy(logits, y), logits


@torch.no_grad()
def evaluate(model: nn.Module, loader: Iterable, device: str | torch.device = "cpu") -> dict:
    """Top-1/top-5 accuracy (fractions) and mean cross-entropy of `model` over `loader`.

    Returns `{"top1", "top5", "loss", "n"}`. With fewer than 5 classes top-5 is not defined
    and `top5` repeats `top1`. Under DDP with a sharded loader the counts are summed over ranks.
    The model's train/eval mode is restored afterwards.
    """
    device = torch.device(device)
    was_training = model.training
    model.eval()
    sums = torch.zeros(4, dtype=torch.float64)  # loss_sum, correct1, correct5, n
    try:
        for x, y in loader:
            x, y = x.to(device), y.to(device)
            logits = model(x)  # (N, C)
            sums += _batch_counts(logits, y)
    finally:
        model.train(was_training)
    sampler = getattr(loader, "sampler", None)
    if D.is_distributed() and isinstance(sampler, (D.ShardSampler, D.DistributedSampler)):
        sums = D.all_reduce_sum(sums)
    n = int(sums[3].item())
    if n == 0:
        raise ValueError("evaluate: the loader yielded no samples")
    return {"top1": sums[1].item() / n, "top5": sums[2].item() / n, "loss": sums[0].item() / n, "n": n}


def _batch_counts(logits: Tensor, y: Tensor) -> Tensor:
    loss = F.cross_entropy(logits.float(), y, reduction="sum").item()
    top1 = (logits.argmax(1) == y).sum().item()
    if logits.shape[1] >= 5:
        top5 = (logits.topk(5, dim=1).indices == y[:, None]).any(1).sum().item()
    else:
        top5 = top1
    return torch.tensor([loss, top1, top5, y.shape[0]], dtype=torch.float64)


def fit(
    model: nn.Module,
    train_loader: DataLoader,
    *,
    epochs: int,
    optimizer: str | torch.optim.Optimizer = "sgd",
    lr: float = 0.05,
    momentum: float = 0.9,
    weight_decay: float = 5e-4,
    schedule: str = "cosine",
    hooks: Sequence[Hook] = (),
    loss_fn: LossFn | None = None,
    val_loader: DataLoader | None = None,
    checkpoint_dir: str | os.PathLike | None = None,
    resume: bool = False,
    device: str | torch.device = "cpu",
    progress: bool = True,
    seed: int = 0,
    max_steps: int | None = None,
    time_budget_s: float | None = None,
    label_smoothing: float = 0.0,
    channels_last: bool = False,
    precision: str = "fp32",
) -> History:
    """Train `model` in place for `epochs` epochs and return its `History`.

    `optimizer` is a name in `OPTIMIZERS` (or a ready optimizer over `model`'s parameters);
    `schedule` a name in `SCHEDULES`, stepped once per batch over the planned run. Epoch `e`
    reseeds torch/numpy/random and the loader's shuffling from `(seed, e)` alone, so with
    `checkpoint_dir` (which receives `last.pt` after every epoch) `resume=True` continues from
    the last completed epoch and ends with exactly the weights of an uninterrupted run.
    `max_steps` / `time_budget_s` stop early (the cut epoch is recorded in the History, and
    `History.stopped` says why, but it is not checkpointed: a resume redoes it from its start).
    Under `torchrun` the model is wrapped in DDP, the loaders are sharded, metrics are
    all-reduced, and only rank 0 prints and writes checkpoints.
    `label_smoothing` (Szegedy et al. 2016) softens the default cross-entropy's targets (it
    is an error together with a custom `loss_fn`); `channels_last` trains with the model and each
    batch in NHWC (see benchmarks/results/schedules.md for when it pays on CPU) and returns the
    model in the default layout. `precision="bf16"` runs the forward pass and the loss under
    `torch.autocast` in bfloat16 (Kalamkar et al., "A Study of BFLOAT16 for Deep Learning
    Training", 2019): the weights, their gradients and the optimizer stay float32, and no loss
    scaling is needed. It pays on CPUs with native bf16 (AVX-512 BF16, AMX) and on GPUs;
    elsewhere it is emulated and slower (benchmarks/results/baselines.md has the step times).
    On an accelerator the loss is checked once per epoch rather than per step
    (`checks_per_epoch`), so the divergence error names the epoch.
    """
    _check_args(epochs, max_steps, time_budget_s, resume, checkpoint_dir)
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {', '.join(PRECISIONS)}, got {precision!r}")
    loss_fn = _default_loss(loss_fn, label_smoothing)
    D.init_from_env()
    apply_threads(cap_only=True, quiet=not D.is_main())  # no more threads than free cores
    device = D.local_device(device)
    model.to(device)
    if channels_last:
        model.to(memory_format=torch.channels_last)
    seed_everything(seed)
    train_loader = D.shard_loader(train_loader, train=True, seed=seed)
    if val_loader is not None:
        val_loader = D.shard_loader(val_loader, train=False)
    steps_per_epoch = len(train_loader)
    if steps_per_epoch == 0:
        raise ValueError("fit: train_loader is empty")
    planned = epochs * steps_per_epoch if max_steps is None else min(epochs * steps_per_epoch, max_steps)

    if isinstance(optimizer, torch.optim.Optimizer):
        opt = optimizer
    else:
        opt = build_optimizer(optimizer, model.parameters(), lr=lr, momentum=momentum,
                              weight_decay=weight_decay)
    sched = build_schedule(schedule, opt, planned)
    hook_list = HookList(hooks)
    net: nn.Module = model
    if D.is_distributed():
        ids = [device.index] if device.type == "cuda" else None
        net = DistributedDataParallel(model, device_ids=ids)

    history, start_epoch = History(), 0
    ckpt_path = Path(checkpoint_dir) / LAST if checkpoint_dir is not None else None
    if resume and ckpt_path is not None and ckpt_path.is_file():
        history, start_epoch = _restore(ckpt_path, model, opt, sched, device)

    hook_list.on_train_start(model, opt)
    show = progress and D.is_main()
    lazy_checks = checks_per_epoch(device)
    t_run = time.perf_counter()
    for epoch in range(start_epoch, epochs):
        if history.stopped:
            break
        reseed_epoch(train_loader, seed, epoch)
        model.train()
        stats, step_s, t_epoch = torch.zeros(3, dtype=torch.float64, device=device), 0.0, time.perf_counter()
        diverged = torch.zeros((), dtype=torch.bool, device=device)
        # a bar on a terminal; in a log or a pipe, a plain line every LOG_EVERY_S seconds
        bar = tqdm(train_loader, desc=f"epoch {epoch + 1}/{epochs}", disable=not (show and is_terminal()),
                   leave=False)
        n_steps, last_line = 0, time.perf_counter()
        for x, y in bar:
            x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
            if channels_last and x.dim() == 4:
                x = x.contiguous(memory_format=torch.channels_last)
            t0 = time.perf_counter()
            with torch.autocast(device.type, dtype=torch.bfloat16, enabled=precision == "bf16"):
                loss, logits = loss_fn(net, x, y)
                reg = hook_list.regularizer(model)
                if reg is not None:
                    loss = loss + reg
            loss = loss.float()
            if not lazy_checks and not torch.isfinite(loss):  # stop before the weights turn to NaN
                raise UserError(
                    f"training diverged at epoch {epoch + 1}, step {history.steps + 1} "
                    f"(loss {loss.item()}); lower the learning rate (lr={lr})"
                    + (f"; the last good epoch is in {ckpt_path}" if ckpt_path else ""))
            opt.zero_grad(set_to_none=True)
            loss.backward()
            hook_list.on_after_backward(model)
            opt.step()
            sched.step()
            hook_list.on_step_end(model, history.steps)
            step_s += time.perf_counter() - t0
            history.steps += 1
            n_steps += 1
            with torch.no_grad():  # on the device: no host sync per step
                if lazy_checks:
                    diverged |= ~torch.isfinite(loss)
                correct = (logits.argmax(1) == y).sum()
                stats += torch.stack([loss.detach().double() * y.shape[0], correct.double(),
                                      torch.full_like(correct, y.shape[0], dtype=torch.float64)])
            if show and not bar.disable:
                bar.set_postfix(loss=f"{stats[0] / stats[2]:.4f}", acc=f"{100 * stats[1] / stats[2]:.1f}%")
            elif show and time.perf_counter() - last_line >= LOG_EVERY_S:
                last_line = time.perf_counter()
                print(f"epoch {epoch + 1}/{epochs}: step {n_steps}/{steps_per_epoch} loss "
                      f"{stats[0] / stats[2]:.4f} acc {100 * stats[1] / stats[2]:.2f}%", file=sys.stderr, flush=True)
            if max_steps is not None and history.steps >= max_steps:
                history.stopped = "max_steps"
            elif time_budget_s is not None and time.perf_counter() - t_run >= time_budget_s:
                history.stopped = "time_budget"
            if D.is_distributed():  # every rank must stop at the same step
                flag = D.all_reduce_sum(torch.tensor([1.0 if history.stopped else 0.0]))
                if flag.item() > 0 and not history.stopped:
                    history.stopped = "time_budget"
            if history.stopped:
                break
        bar.close()
        if lazy_checks and bool(diverged):
            raise UserError(f"training diverged in epoch {epoch + 1} (a non-finite loss by step "
                            f"{history.steps}); lower the learning rate (lr={lr})"
                            + (f"; the last good epoch is in {ckpt_path}" if ckpt_path else ""))
        stats = stats.cpu()
        hook_list.on_epoch_end(model, epoch)
        _check_weights_finite(model, epoch, history.steps, lr, ckpt_path)
        _sync_buffers(model)
        stats = D.all_reduce_sum(stats)
        val = evaluate(model, val_loader, device) if val_loader is not None else None
        nan = float("nan")
        history.append(
            train_loss=(stats[0] / stats[2]).item(), train_acc=(stats[1] / stats[2]).item(),
            val_loss=val["loss"] if val else nan, val_top1=val["top1"] if val else nan,
            val_top5=val["top5"] if val else nan, epoch_time_s=time.perf_counter() - t_epoch,
            step_time_ms=1000.0 * step_s / max(n_steps, 1), lr=opt.param_groups[0]["lr"],
        )
        if show:
            tqdm.write(_epoch_line(history, epoch, epochs))
        if ckpt_path is not None and n_steps == steps_per_epoch:  # only completed epochs
            if D.is_main():
                save_checkpoint(ckpt_path, model=model, optimizer=opt, scheduler=sched,
                                epoch=epoch, history=history.to_dict(), rng=rng_state(), seed=seed)
            D.barrier()
    if channels_last:  # hand the model back in the default layout (values are unchanged)
        model.to(memory_format=torch.contiguous_format)
    model.eval()
    return history


def checks_per_epoch(device: torch.device) -> bool:
    """Whether `fit` checks the loss once per epoch rather than per step: on an accelerator a
    check per step makes the host wait for every step and leaves the device idle while it
    launches the next one. The divergence error then names the epoch, not the step."""
    return device.type != "cpu"


def _check_weights_finite(model: nn.Module, epoch: int, steps: int, lr: float,
                          ckpt_path: Path | None) -> None:
    """The loss check runs before each step; this catches a step (the last one included) that
    turned the weights to NaN/inf, before they are validated, checkpointed or saved."""
    for name, p in model.state_dict().items():
        if p.is_floating_point() and not bool(torch.isfinite(p).all()):
            raise UserError(
                f"training diverged in epoch {epoch + 1} by step {steps}: {name} holds NaN or "
                f"inf; lower the learning rate (lr={lr})"
                + (f"; the last good epoch is in {ckpt_path}" if ckpt_path else ""))


def _check_args(epochs, max_steps, time_budget_s, resume, checkpoint_dir) -> None:
    if not isinstance(epochs, int) or epochs < 1:
        raise ValueError(f"epochs must be an int >= 1, got {epochs!r}")
    if max_steps is not None and (not isinstance(max_steps, int) or max_steps < 1):
        raise ValueError(f"max_steps must be None or an int >= 1, got {max_steps!r}")
    if time_budget_s is not None and not time_budget_s > 0:
        raise ValueError(f"time_budget_s must be None or > 0, got {time_budget_s!r}")
    if resume and checkpoint_dir is None:
        raise ValueError("resume=True needs a checkpoint_dir to resume from")


def _default_loss(loss_fn: LossFn | None, label_smoothing: float) -> LossFn:
    """`loss_fn`, or cross-entropy with ``label_smoothing`` in [0, 1)."""
    if isinstance(label_smoothing, bool) or not isinstance(label_smoothing, (int, float)) \
            or not 0.0 <= label_smoothing < 1.0:
        raise ValueError(f"label_smoothing must be in [0, 1), got {label_smoothing!r}")
    if loss_fn is not None:
        if label_smoothing:
            raise ValueError("label_smoothing applies to the default cross-entropy only; "
                             "smooth the targets inside your loss_fn instead")
        return loss_fn
    if not label_smoothing:
        return cross_entropy
    eps = float(label_smoothing)

    def smoothed_cross_entropy(model: nn.Module, x: Tensor, y: Tensor) -> tuple[Tensor, Tensor]:
        logits = model(x)  # (N, num_classes)
        return F.cross_entropy(logits, y, label_smoothing=eps), logits

    return smoothed_cross_entropy


def _restore(path: Path, model: nn.Module, opt, sched, device) -> tuple[History, int]:
    ckpt = load_checkpoint(path, map_location=device, model=model)  # refuses another arch
    model.load_state_dict(ckpt["model"])
    if ckpt["optimizer"] is not None:
        opt.load_state_dict(ckpt["optimizer"])
    if ckpt["scheduler"] is not None:
        sched.load_state_dict(ckpt["scheduler"])
    if "rng" in ckpt["meta"]:
        set_rng_state(ckpt["meta"]["rng"])
    return History.from_dict(ckpt["history"]), int(ckpt["epoch"]) + 1


def _sync_buffers(model: nn.Module) -> None:
    """Copy rank 0's buffers (BN running stats) to every rank so all ranks hold one model."""
    if D.is_distributed():
        for b in model.buffers():
            D.dist.broadcast(b.data, src=0)


def _epoch_line(h: History, epoch: int, epochs: int) -> str:
    val = "" if math.isnan(h.last("val_top1")) else (
        f" val top-1 {100 * h.last('val_top1'):.2f}% top-5 {100 * h.last('val_top5'):.2f}%"
    )
    return (f"epoch {epoch + 1}/{epochs}: loss {h.last('train_loss'):.4f} "
            f"acc {100 * h.last('train_acc'):.2f}%{val} ({h.last('epoch_time_s'):.1f} s)")
