"""Online distillation across workers (codistillation).

Anil, Pereyra, Passos, Ormandi, Dahl & Hinton, "Large scale distributed neural network
training through online distillation" (ICLR 2018). Every `torchrun` rank trains its own model
on its own shard of the data (no gradient averaging: these are separate models). After
`burn_in_steps`, each rank adds a distillation term toward the average prediction of its peers:

    loss_i = CE(f_i(x), y) + weight * T^2 * KL(mean_{j != i} softmax(f_j(x)/T) || softmax(f_i(x)/T))

Two ways to obtain the peers' predictions (`CodistillConfig.mode`):

- "predictions": every `every` steps the ranks all-gather their batches, each rank predicts on
  all of them, and the predictions are all-gathered, so rank i gets every peer's prediction
  on its own batch; the term is added on those steps.
- "checkpoints" (the paper's practical variant): every `every` steps the ranks all-gather
  their (stale) weights into local peer copies, which predict on every later step.

It uses `torch.distributed` (gloo on CPU, nccl on GPU) as set up by
`slimkit.train.distributed.init_from_env`. `slimkit.train.fit` always wraps the model in DDP
when distributed, which would average the models into one, so this module runs its own short
loop with the same optimizers, schedules, seeding and sharding. In a single process the term
is zero (no peers) and this is plain training.

    # torchrun --nproc_per_node 2 train.py
>>> hist = codistill(model, loader, CodistillConfig(every=10, mode="checkpoints"), epochs=5)  # doctest: +SKIP
"""

from __future__ import annotations

import copy
import math
import time
from dataclasses import dataclass

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import Tensor, nn
from torch.utils.data import DataLoader

from slimkit._registry import Registry
from slimkit.errors import UserError
from slimkit.train import History, evaluate
from slimkit.train import distributed as D
from slimkit.train.optim import build_optimizer, build_schedule
from slimkit.train.seed import reseed_epoch, seed_everything

MODES = ("predictions", "checkpoints")


@dataclass(frozen=True)
class CodistillConfig:
    """`every`: exchange period in steps; `mode`: one of MODES; `weight`: distillation term
    weight; `T`: temperature; `burn_in_steps`: plain training before the term switches on."""

    every: int = 1
    mode: str = "predictions"
    weight: float = 1.0
    T: float = 1.0
    burn_in_steps: int = 0

    def __post_init__(self) -> None:
        if not (isinstance(self.every, int) and self.every >= 1):
            raise UserError(f"every must be an int >= 1, got {self.every!r}")
        if self.mode not in MODES:
            raise UserError(f"unknown codistillation mode {self.mode!r}; known: {', '.join(MODES)}")
        if not (
            isinstance(self.weight, (int, float))
            and math.isfinite(self.weight)
            and self.weight >= 0
        ):
            raise UserError(f"weight must be a finite number >= 0, got {self.weight!r}")
        if not (isinstance(self.T, (int, float)) and math.isfinite(self.T) and self.T > 0):
            raise UserError(f"T must be a finite number > 0, got {self.T!r}")
        if not (isinstance(self.burn_in_steps, int) and self.burn_in_steps >= 0):
            raise UserError(f"burn_in_steps must be an int >= 0, got {self.burn_in_steps!r}")


def soft_cross_term(s_logits: Tensor, peer_probs: Tensor, T: float) -> Tensor:
    """`T^2 * KL(peer_probs || softmax(s/T))`, batch mean; `peer_probs` (N, K) sum to 1."""
    log_ps = F.log_softmax(s_logits / T, dim=1)
    return F.kl_div(log_ps, peer_probs, reduction="batchmean") * (T * T)


def _all_gather(t: Tensor) -> list[Tensor]:
    out = [torch.empty_like(t) for _ in range(D.world_size())]
    dist.all_gather(out, t.contiguous())
    return out


@torch.no_grad()
def _eval_logits(model: nn.Module, x: Tensor) -> Tensor:
    was = model.training
    model.eval()
    try:
        return model(x)
    finally:
        model.train(was)


class _PeerSource:
    """Gives the averaged peer probabilities for this rank's batch, or None this step."""

    def __init__(self, model: nn.Module, cfg: CodistillConfig) -> None:
        self.model, self.cfg = model, cfg

    def peer_probs(self, x: Tensor, step: int) -> Tensor | None:
        raise NotImplementedError


PEER_SOURCES: Registry[type[_PeerSource]] = Registry("codistillation mode")


@PEER_SOURCES.register("predictions")
class _Predictions(_PeerSource):
    def peer_probs(self, x: Tensor, step: int) -> Tensor | None:
        if step < self.cfg.burn_in_steps or step % self.cfg.every != 0:
            return None
        w, r = D.world_size(), D.rank()
        xs = _all_gather(x)  # W x (N, ...): every rank's batch
        mine = torch.stack([_eval_logits(self.model, xj) for xj in xs])  # (W_batch, N, K)
        everyone = torch.stack(_all_gather(mine))  # (W_model, W_batch, N, K)
        probs = F.softmax(everyone[:, r] / self.cfg.T, dim=-1)  # (W_model, N, K) on my batch
        peers = [j for j in range(w) if j != r]
        return probs[peers].mean(0)


@PEER_SOURCES.register("checkpoints")
class _Checkpoints(_PeerSource):
    def __init__(self, model: nn.Module, cfg: CodistillConfig) -> None:
        super().__init__(model, cfg)
        self.peers: list[nn.Module] = []

    def _refresh(self) -> None:
        state = self.model.state_dict()
        keys = [k for k, v in state.items() if v.is_floating_point()]
        flat = torch.cat([state[k].detach().reshape(-1).float() for k in keys])
        gathered = _all_gather(flat)
        r = D.rank()
        if not self.peers:
            self.peers = [copy.deepcopy(self.model).eval() for _ in range(D.world_size() - 1)]
        for peer, j in zip(self.peers, [j for j in range(D.world_size()) if j != r]):
            new, off = {}, 0
            for k in keys:
                n = state[k].numel()
                new[k] = gathered[j][off : off + n].view_as(state[k]).to(state[k].dtype)
                off += n
            peer.load_state_dict(new, strict=False)

    def peer_probs(self, x: Tensor, step: int) -> Tensor | None:
        if step >= self.cfg.burn_in_steps and (step - self.cfg.burn_in_steps) % self.cfg.every == 0:
            self._refresh()  # collective: every rank reaches it at the same step
        if step < self.cfg.burn_in_steps or not self.peers:
            return None
        with torch.no_grad():
            return torch.stack([F.softmax(p(x) / self.cfg.T, dim=1) for p in self.peers]).mean(0)


def codistill(
    model: nn.Module,
    loader: DataLoader,
    config: CodistillConfig = CodistillConfig(),
    *,
    epochs: int,
    optimizer: str = "sgd",
    lr: float = 0.05,
    momentum: float = 0.9,
    weight_decay: float = 5e-4,
    schedule: str = "cosine",
    val_loader: DataLoader | None = None,
    device: str | torch.device = "cpu",
    seed: int = 0,
) -> History:
    """Train this rank's `model` in place on its shard of `loader` with codistillation.

    Every rank must call it with the same loader length, epochs and config. `val_loader` is
    evaluated in full by every rank on its own model (not sharded). Returns a `History`.
    """
    if not isinstance(config, CodistillConfig):
        raise UserError(f"config must be a CodistillConfig, got {type(config).__name__}")
    if not (isinstance(epochs, int) and epochs >= 1):
        raise UserError(f"epochs must be an int >= 1, got {epochs!r}")
    D.init_from_env()
    device = D.local_device(device)
    model.to(device)
    seed_everything(seed)
    train_loader = D.shard_loader(loader, train=True, seed=seed)
    steps = len(train_loader)
    if steps == 0:
        raise ValueError("codistill: train_loader is empty")
    opt = build_optimizer(
        optimizer, model.parameters(), lr=lr, momentum=momentum, weight_decay=weight_decay
    )
    sched = build_schedule(schedule, opt, epochs * steps)
    source = PEER_SOURCES.get(config.mode)(model, config) if D.is_distributed() else None
    history = History()
    for epoch in range(epochs):
        reseed_epoch(train_loader, seed, epoch)
        model.train()
        stats, step_s, t_epoch = torch.zeros(3, dtype=torch.float64), 0.0, time.perf_counter()
        for x, y in train_loader:
            x, y = x.to(device), y.to(device)
            t0 = time.perf_counter()
            probs = source.peer_probs(x, history.steps) if source is not None else None
            logits = model(x)  # (N, K)
            loss = F.cross_entropy(logits, y)
            if probs is not None and config.weight > 0:
                loss = loss + config.weight * soft_cross_term(logits, probs, config.T)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            step_s += time.perf_counter() - t0
            history.steps += 1
            with torch.no_grad():
                stats += torch.tensor(
                    [loss.item() * len(y), (logits.argmax(1) == y).sum().item(), len(y)],
                    dtype=torch.float64,
                )
        val = evaluate(model, val_loader, device) if val_loader is not None else None
        nan = float("nan")
        history.append(
            train_loss=(stats[0] / stats[2]).item(),
            train_acc=(stats[1] / stats[2]).item(),
            val_loss=val["loss"] if val else nan,
            val_top1=val["top1"] if val else nan,
            val_top5=val["top5"] if val else nan,
            epoch_time_s=time.perf_counter() - t_epoch,
            step_time_ms=1000.0 * step_s / steps,
            lr=opt.param_groups[0]["lr"],
        )
    model.eval()
    return history
