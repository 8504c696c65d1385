"""The pruning methods behind `PruneConfig`: `METHODS` maps a name to a `Method` whose `apply(model,
cfg, ratio, ctx)` prunes at a uniform ratio and whose `proxy` (optional) gives the same
structure cheaply, without training, for the MACs / params / latency target search.
"""

from __future__ import annotations

import copy
import itertools
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from slimkit._registry import Registry
from slimkit.errors import UserError
from slimkit.pruning.masks import Pruner

if TYPE_CHECKING:
    from slimkit.pruning.config import PruneConfig


@dataclass
class Context:
    example_inputs: Any
    data: Iterable | None

    def need_data(self, method: str) -> Iterable:
        if self.data is None:
            raise UserError(f"method {method!r} needs data=<a training DataLoader of (x, y)>")
        return self.data

    def batches(self, n: int, method: str) -> list:
        """The first `n` batches of the data (calibration, Taylor scores)."""
        return list(itertools.islice(iter(self.need_data(method)), n))


@dataclass(frozen=True)
class Method:
    apply: Callable[[nn.Module, PruneConfig, float, Context], nn.Module]
    structured: bool
    proxy: Callable[[nn.Module, PruneConfig, float, Context], nn.Module] | None = None


METHODS: Registry[Method] = Registry("pruning method")


def _fit_kwargs(cfg: PruneConfig) -> dict:
    return {"lr": cfg.lr, "progress": False, **cfg.fit_kwargs}


# ---- unstructured ---------------------------------------------------------------------------


def _magnitude(model, cfg, ratio, ctx):
    from slimkit.pruning.methods.magnitude import magnitude_prune

    return magnitude_prune(
        model,
        ratio,
        cfg.granularity,
        cfg.scope,
        cfg.importance or "magnitude",
        ignore=cfg.ignore,
        n=cfg.n,
        m=cfg.m,
    )


def _han(model, cfg, ratio, ctx):
    from slimkit.pruning.methods.magnitude import iterative_magnitude_prune

    # geometric steps towards the target: density (1 - s) shrinks by the same factor each round
    steps = [1 - (1 - ratio) ** ((i + 1) / cfg.steps) for i in range(cfg.steps)]
    return iterative_magnitude_prune(
        model,
        ctx.need_data("han"),
        steps,
        epochs_per_step=cfg.train_epochs,
        scope=cfg.scope,
        granularity=cfg.granularity,
        ignore=cfg.ignore,
        **_fit_kwargs(cfg),
    )


def _agp(model, cfg, ratio, ctx):
    from slimkit.pruning.schedule import AGPHook, AGPSchedule
    from slimkit.train import fit

    loader = ctx.need_data("agp")
    out = copy.deepcopy(model)
    pruner = Pruner(
        0.0,
        cfg.granularity,
        cfg.importance or "magnitude",
        cfg.scope,
        cfg.n,
        cfg.m,
        ignore=cfg.ignore,
    )
    pruner.prepare(out)
    total = max(1, cfg.train_epochs * len(loader))
    events = max(1, min(10, total // 2))
    sched = AGPSchedule(0.0, ratio, 0, events, max(1, int(0.75 * total) // events))
    fit(
        out,
        loader,
        epochs=max(1, cfg.train_epochs),
        hooks=[AGPHook(pruner, sched)],
        **_fit_kwargs(cfg),
    )
    pruner.step(ratio)  # the final sparsity, even if the run was shorter than the schedule
    return pruner.squash_mask()


METHODS.register("magnitude")(Method(_magnitude, structured=False))
METHODS.register("han")(Method(_han, structured=False, proxy=_magnitude))
METHODS.register("agp")(Method(_agp, structured=False, proxy=_magnitude))


# ---- structured -----------------------------------------------------------------------------


def _l1_filter(model, cfg, ratio, ctx):
    from slimkit.pruning.methods.l1_filter import l1_filter_prune

    taylor = cfg.importance == "taylor"
    batches = (
        ctx.batches(cfg.calib_batches, "l1_filter with importance 'taylor'") if taylor else None
    )
    loader = ctx.data if cfg.steps > 1 else None
    return l1_filter_prune(
        model,
        ctx.example_inputs,
        ratio,
        importance=cfg.importance or "l1",
        ignore=cfg.ignore,
        round_to=cfg.round_to,
        steps=cfg.steps,
        train_loader=loader,
        epochs_per_step=cfg.train_epochs if loader is not None else 0,
        batches=batches,
        **_fit_kwargs(cfg),
    )


def _l1_oneshot(model, cfg, ratio, ctx):
    from slimkit.pruning.methods.l1_filter import l1_filter_prune

    imp = cfg.importance if cfg.importance and cfg.importance != "taylor" else "l1"
    return l1_filter_prune(
        model, ctx.example_inputs, ratio, importance=imp, ignore=cfg.ignore, round_to=cfg.round_to
    )


def _train_with(model, cfg, ctx, hook, name):
    from slimkit.train import fit

    out = copy.deepcopy(model)
    if cfg.train_epochs > 0:
        fit(out, ctx.need_data(name), epochs=cfg.train_epochs, hooks=[hook], **_fit_kwargs(cfg))
    return out


def _slimming(model, cfg, ratio, ctx):
    from slimkit.pruning.methods.slimming import SlimmingHook, slimming_prune

    trained = (
        _train_with(model, cfg, ctx, SlimmingHook(cfg.penalty), "slimming")
        if ctx.data is not None
        else model
    )
    return slimming_prune(
        trained, ctx.example_inputs, ratio, ignore=cfg.ignore, round_to=cfg.round_to
    )


def _slimming_proxy(model, cfg, ratio, ctx):
    from slimkit.pruning.methods.slimming import slimming_prune

    return slimming_prune(
        model, ctx.example_inputs, ratio, ignore=cfg.ignore, round_to=cfg.round_to
    )


def _ssl(model, cfg, ratio, ctx):
    from slimkit.pruning.methods.l1_filter import l1_filter_prune
    from slimkit.pruning.methods.ssl import GroupLassoHook, ssl_prune

    hook = GroupLassoHook(filters=cfg.penalty, shapes=cfg.penalty, ignore=cfg.ignore)
    trained = _train_with(model, cfg, ctx, hook, "ssl") if ctx.data is not None else model
    # groups the lasso drove to zero go first; the ratio is then met by the L2 criterion
    small = ssl_prune(trained, ctx.example_inputs, ignore=cfg.ignore, round_to=cfg.round_to)
    if _channels(small) > (1 - ratio) * _channels(model):
        return l1_filter_prune(
            trained,
            ctx.example_inputs,
            ratio,
            importance="l2",
            ignore=cfg.ignore,
            round_to=cfg.round_to,
        )
    return small


def _channels(model: nn.Module) -> int:
    return sum(m.out_channels for m in model.modules() if isinstance(m, nn.Conv2d))


def _sfp(model, cfg, ratio, ctx):
    from slimkit.pruning.methods.sfp import sfp_prune

    return sfp_prune(
        model,
        ctx.example_inputs,
        ctx.need_data("sfp"),
        ratio,
        cfg.train_epochs,
        importance=cfg.importance or "l2",
        ignore=cfg.ignore,
        round_to=cfg.round_to,
        **_fit_kwargs(cfg),
    )


def _channel_lasso(model, cfg, ratio, ctx):
    from slimkit.pruning.methods.channel_lasso import channel_lasso_prune

    return channel_lasso_prune(
        model,
        ctx.example_inputs,
        ctx.batches(cfg.calib_batches, "channel_lasso"),
        ratio,
        ignore=cfg.ignore,
        round_to=cfg.round_to,
    )


def _channel_lasso_proxy(model, cfg, ratio, ctx):
    from slimkit.graph import shrink
    from slimkit.pruning._structured import build_graph, n_keep
    from slimkit.pruning.methods.channel_lasso import _layer_pairs

    graph = build_graph(model, ctx.example_inputs, cfg.ignore, cfg.round_to)
    keep = {g.id: torch.arange(n_keep(g.size, ratio)) for g, _ in _layer_pairs(graph)}
    keep = {k: v for k, v in keep.items() if v.numel() < graph.group(k).size}
    return shrink(model, graph, graph.round_keep(keep)) if keep else copy.deepcopy(model)


METHODS.register("l1_filter")(Method(_l1_filter, structured=True, proxy=_l1_oneshot))
METHODS.register("slimming")(Method(_slimming, structured=True, proxy=_slimming_proxy))
METHODS.register("ssl")(Method(_ssl, structured=True, proxy=_l1_oneshot))
METHODS.register("sfp")(Method(_sfp, structured=True, proxy=_l1_oneshot))
METHODS.register("channel_lasso")(
    Method(_channel_lasso, structured=True, proxy=_channel_lasso_proxy)
)
