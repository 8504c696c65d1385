"""One call to prune a model: `prune(model, PruneConfig(...), example_inputs=x, data=loader)`.

A registry maps each method name to a `Method`: `apply(model, cfg, ratio, ctx) -> nn.Module`
prunes at a uniform ratio, and `proxy` (optional) gives the same structure cheaply without
training, so that MACs / params / latency targets can be met by bisection over the ratio
before the (possibly training) method runs once.

Targets: `target="sparsity"` -> `ratio` is the fraction removed (of weights, or of each
group's channels); `target="macs" | "params" | "latency"` -> `ratio` is the fraction of the
dense model's MACs / parameters / batch-1 latency that must remain (at most).

>>> small = prune(model, PruneConfig(method="l1_filter", ratio=0.5, target="macs",
...                                  ignore=("fc",)), example_inputs=torch.randn(1, 3, 32, 32))
... # doctest: +SKIP
"""

from __future__ import annotations

import copy
import itertools
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from slimkit._registry import Registry
from slimkit.errors import UserError
from slimkit.pruning.importance import ELEMENT_IMPORTANCE, importance_names
from slimkit.pruning.masks import MASKS, Pruner

TARGETS = ("sparsity", "macs", "params", "latency")


@dataclass(frozen=True)
class PruneConfig:
    method: str = "l1_filter"
    ratio: float = 0.5
    target: str = "sparsity"
    granularity: str = "element"  # unstructured methods (magnitude, han, agp)
    importance: str = ""  # "" = the method's own criterion
    scope: str = "layer"  # "layer" | "global" (unstructured threshold)
    ignore: tuple[str, ...] = ()  # fqn globs of layers left whole (e.g. the classifier)
    round_to: int = 1
    n: int = 2  # N:M granularity
    m: int = 4
    steps: int = 1  # prune/retrain rounds (han, iterative l1_filter)
    train_epochs: int = 1  # training inside the method (han, agp, slimming, ssl, sfp)
    finetune_epochs: int = 0  # fine-tuning after pruning
    lr: float = 0.01
    penalty: float = 1e-4  # slimming's L1 / SSL's group-lasso strength
    calib_batches: int = 4  # batches for channel_lasso / taylor
    fit_kwargs: dict = field(default_factory=dict, hash=False, compare=False)

    def __post_init__(self) -> None:
        if self.method not in METHODS:
            raise UserError(
                f"unknown pruning method {self.method!r}; known: {', '.join(METHODS.names())}"
            )
        if self.target not in TARGETS:
            raise UserError(f"unknown target {self.target!r}; known: {', '.join(TARGETS)}")
        r = self.ratio
        if not isinstance(r, (int, float)) or isinstance(r, bool):
            raise UserError(f"ratio must be a number, got {r!r}")
        if self.target == "sparsity" and not 0.0 <= r < 1.0:
            raise UserError(f"ratio (the sparsity to reach) must be in [0, 1), got {r!r}")
        if self.target != "sparsity" and not 0.0 < r <= 1.0:
            raise UserError(
                f"ratio (the fraction of {self.target} to keep) must be in (0, 1], got {r!r}"
            )
        if self.granularity not in MASKS:
            raise UserError(
                f"unknown granularity {self.granularity!r}; known: {', '.join(MASKS.names())}"
            )
        known = sorted(set(importance_names()) | set(ELEMENT_IMPORTANCE.names()))
        if self.importance and self.importance not in known:
            raise UserError(f"unknown importance {self.importance!r}; known: {', '.join(known)}")
        if self.scope not in ("layer", "global"):
            raise UserError(f"scope must be 'layer' or 'global', got {self.scope!r}")
        if isinstance(self.ignore, str):
            raise UserError(f"ignore must be a tuple of globs, e.g. ({self.ignore!r},)")
        for name in ("round_to", "steps", "n", "m", "calib_batches"):
            if getattr(self, name) < 1:
                raise UserError(f"{name} must be >= 1, got {getattr(self, name)!r}")
        for name in ("train_epochs", "finetune_epochs"):
            if getattr(self, name) < 0:
                raise UserError(f"{name} must be >= 0, got {getattr(self, name)!r}")
        if not self.lr > 0 or not self.penalty >= 0:
            raise UserError(
                f"need lr > 0 and penalty >= 0, got lr={self.lr!r}, penalty={self.penalty!r}"
            )


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


# ---- targets --------------------------------------------------------------------------------


def _input_shape(example_inputs: Any) -> tuple[int, ...]:
    x = example_inputs[0] if isinstance(example_inputs, (tuple, list)) else example_inputs
    if not isinstance(x, torch.Tensor):
        raise UserError("example_inputs must be a tensor (or a tuple whose first item is one)")
    return tuple(int(d) for d in x.shape[1:])


def measure(model: nn.Module, kind: str, input_shape: tuple[int, ...], structured: bool) -> float:
    """The quantity a target constrains: MACs, (non-zero) parameters, or batch-1 latency (ms)."""
    from slimkit import metrics

    if kind == "macs":
        return float(metrics.count_macs(model, input_shape, skip_zeros=not structured).total)
    if kind == "params":
        if structured:
            return float(metrics.count_params(model))
        return float(sum(int((p != 0).sum()) for p in model.parameters()))
    if kind == "latency":
        return float(
            metrics.measure_latency(
                model, input_shape, batch_size=1, warmup=3, repeats=15
            ).median_ms
        )
    raise UserError(f"unknown target {kind!r}; known: {', '.join(TARGETS)}")


def search_ratio(
    model: nn.Module,
    keep_fraction: float,
    kind: str,
    prune_at: Callable[[float], nn.Module],
    input_shape: tuple[int, ...],
    structured: bool,
    iters: int = 12,
    max_ratio: float = 0.98,
) -> float:
    """Smallest uniform ratio whose pruned model keeps at most `keep_fraction` of `kind`
    (bisection; the quantity falls as the ratio rises)."""
    base = measure(model, kind, input_shape, structured)
    lo, hi = 0.0, max_ratio
    if measure(prune_at(hi), kind, input_shape, structured) > keep_fraction * base:
        raise UserError(
            f"cannot reach {keep_fraction:.3g} of the {kind} even at ratio {hi}; "
            "un-ignore some layers or choose a looser target"
        )
    for _ in range(iters):
        mid = (lo + hi) / 2
        if measure(prune_at(mid), kind, input_shape, structured) <= keep_fraction * base:
            hi = mid
        else:
            lo = mid
    return hi


def prune(
    model: nn.Module, config: PruneConfig, example_inputs: Any = None, data: Iterable | None = None
) -> nn.Module:
    """A new pruned `model` per `config` (the input is untouched).

    `example_inputs`: a batch shaped like the input (needed by structured methods and by
    MACs/params/latency targets); `data`: a training DataLoader of (x, y) for the methods that
    train or calibrate, and for `config.finetune_epochs`. New code: `slimkit.compress.prune`
    with a per-method config, which also reports the ratio delivered.
    """
    if not isinstance(config, PruneConfig):  # a per-method config of the contract
        from slimkit.compress import prune as prune_contract

        return prune_contract(model, config, example_inputs=example_inputs, train=data).model
    return prune_with_ratio(model, config, example_inputs, data)[0]


def prune_with_ratio(
    model: nn.Module, config: PruneConfig, example_inputs: Any = None, data: Iterable | None = None
) -> tuple[nn.Module, float]:
    """`prune`, and the uniform ratio it used (after a MACs/params/latency target search)."""
    if not isinstance(config, PruneConfig):
        raise UserError(f"config must be a PruneConfig, got {type(config).__name__}")
    method = METHODS.get(config.method)
    ctx = Context(example_inputs, data)
    ratio = config.ratio
    if config.target != "sparsity":
        if example_inputs is None:
            raise UserError(f"target {config.target!r} needs example_inputs")
        proxy = method.proxy or method.apply
        ratio = search_ratio(
            model,
            config.ratio,
            config.target,
            lambda r: proxy(model, config, r, ctx),
            _input_shape(example_inputs),
            method.structured,
        )
    if method.structured and example_inputs is None:
        raise UserError(f"method {config.method!r} is structured and needs example_inputs")
    out = method.apply(model, config, ratio, ctx)
    if config.finetune_epochs > 0:
        from slimkit.pruning.keep import attach_masks, remove_masks
        from slimkit.train import fit

        if not method.structured:
            attach_masks(out)  # the zeros stay zeros while fine-tuning
        fit(out, ctx.need_data(config.method), epochs=config.finetune_epochs,
            **_fit_kwargs(config))
        remove_masks(out)
    return out, ratio
