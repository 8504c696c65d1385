"""Pruning methods under the contract: one config per method, each with only its fields.

`ratio` with `target="sparsity"` is the fraction removed (of weights for unstructured methods,
of each group's channels for structured ones); with `target="macs" | "params" | "latency"` it
is the fraction of the dense model's quantity that may remain. Every report compares the
requested ratio with the one delivered and warns when it falls short.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from torch import nn

from slimkit.compress.contract import Context, MethodConfig, Report, Result, register
from slimkit.errors import UserError

TARGETS = ("sparsity", "macs", "params", "latency")
GRANULARITIES = ("element", "vector", "kernel", "channel", "filter")


def _count(name: str, value: Any, low: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < low:
        raise UserError(f"{name} must be an int >= {low}, got {value!r}")


def _positive(name: str, value: Any, zero_ok: bool = False) -> None:
    ok = isinstance(value, (int, float)) and not isinstance(value, bool) and \
        (value >= 0 if zero_ok else value > 0)
    if not ok:
        raise UserError(f"{name} must be a number {'>= 0' if zero_ok else '> 0'}, got {value!r}")


@dataclass(frozen=True)
class _Ratio(MethodConfig):
    """ratio: fraction removed (target sparsity) or kept (macs/params/latency);
    target: what the ratio constrains; finetune_epochs: plain fine-tuning afterwards (the
    zeros held); lr: learning rate of any training the method does."""

    ratio: float = 0.5
    target: str = "sparsity"
    finetune_epochs: int = 0
    lr: float = 0.01

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.target not in TARGETS:
            raise UserError(f"unknown target {self.target!r}; known: {', '.join(TARGETS)}")
        r = self.ratio
        if isinstance(r, bool) or not isinstance(r, (int, float)):
            raise UserError(f"ratio must be a number, got {r!r}")
        if self.target == "sparsity" and not 0.0 <= r < 1.0:
            raise UserError(f"ratio (the sparsity to reach) must be in [0, 1), got {r!r}")
        if self.target != "sparsity" and not 0.0 < r <= 1.0:
            raise UserError(f"ratio (the fraction of {self.target} kept) must be in (0, 1], "
                            f"got {r!r}")
        _count("finetune_epochs", self.finetune_epochs, 0)
        _positive("lr", self.lr)


@dataclass(frozen=True)
class _Structured(_Ratio):
    """round_to: channel counts kept are multiples of this."""

    round_to: int = 1

    def __post_init__(self) -> None:
        super().__post_init__()
        _count("round_to", self.round_to, 1)


@dataclass(frozen=True)
class MagnitudeConfig(_Ratio):
    """Magnitude pruning, one shot (Han et al. 2015 without retraining rounds).

    granularity: element, vector, kernel, channel or filter masks (Mao et al. 2017);
    scope: "layer" (each layer loses `ratio`) or "global" (one threshold);
    importance: element score (magnitude, random, taylor)."""

    granularity: str = "element"
    scope: str = "layer"
    importance: str = "magnitude"

    def __post_init__(self) -> None:
        super().__post_init__()
        _check_unstructured(self)


def _check_unstructured(cfg) -> None:
    from slimkit.pruning.importance import ELEMENT_IMPORTANCE

    if cfg.granularity not in GRANULARITIES:
        raise UserError(f"unknown granularity {cfg.granularity!r}; "
                        f"known: {', '.join(GRANULARITIES)}")
    if cfg.scope not in ("layer", "global"):
        raise UserError(f"scope must be 'layer' or 'global', got {cfg.scope!r}")
    imp = getattr(cfg, "importance", "magnitude")
    if imp not in ELEMENT_IMPORTANCE:
        raise UserError(f"unknown importance {imp!r}; "
                        f"known: {', '.join(ELEMENT_IMPORTANCE.names())}")


@dataclass(frozen=True)
class HanConfig(_Ratio):
    """Han et al. 2015, "Learning both weights and connections": `steps` rounds of magnitude
    pruning (density shrinking geometrically to 1 - ratio), each retrained `train_epochs`."""

    steps: int = 3
    train_epochs: int = 1
    granularity: str = "element"
    scope: str = "layer"

    def __post_init__(self) -> None:
        super().__post_init__()
        _check_unstructured(self)
        _count("steps", self.steps, 1)
        _count("train_epochs", self.train_epochs, 0)


@dataclass(frozen=True)
class AGPConfig(_Ratio):
    """Zhu & Gupta 2017, automated gradual pruning: sparsity rises on a cubic schedule
    during `train_epochs` of training."""

    train_epochs: int = 1
    granularity: str = "element"
    scope: str = "layer"
    importance: str = "magnitude"

    def __post_init__(self) -> None:
        super().__post_init__()
        _check_unstructured(self)
        _count("train_epochs", self.train_epochs, 1)


@dataclass(frozen=True)
class NMConfig(MethodConfig):
    """N:M fine-grained structured sparsity (keep `n` of every `m` consecutive inputs, e.g.
    2:4 as on NVIDIA Ampere; Mishra et al. 2021)."""

    n: int = 2
    m: int = 4
    finetune_epochs: int = 0
    lr: float = 0.01

    def __post_init__(self) -> None:
        super().__post_init__()
        _count("n", self.n, 1)
        _count("m", self.m, 1)
        if self.n >= self.m:
            raise UserError(f"need n < m, got n={self.n}, m={self.m}")
        _count("finetune_epochs", self.finetune_epochs, 0)
        _positive("lr", self.lr)


@dataclass(frozen=True)
class SensitivityConfig(MethodConfig):
    """Per-layer sparsities from a sensitivity scan (Han et al. 2015, Li et al. 2017): each
    layer alone is pruned at `sparsities` and scored by top-1 on `eval_batches` of the
    training data; the overall `ratio` is spread so that each layer's accuracy drop stays
    proportional to its tolerance (`max_drop`), then magnitude pruning applies them."""

    ratio: float = 0.5
    sparsities: tuple[float, ...] = (0.25, 0.5, 0.75, 0.9)
    max_drop: float = 0.02
    eval_batches: int = 2
    finetune_epochs: int = 0
    lr: float = 0.01

    def __post_init__(self) -> None:
        super().__post_init__()
        if isinstance(self.ratio, bool) or not isinstance(self.ratio, (int, float)) \
                or not 0 <= self.ratio < 1:
            raise UserError(f"ratio must be in [0, 1), got {self.ratio!r}")
        s = tuple(self.sparsities)
        if not s or any(not isinstance(x, (int, float)) or not 0 < x < 1 for x in s):
            raise UserError(f"sparsities must be numbers in (0, 1), got {s!r}")
        object.__setattr__(self, "sparsities", tuple(float(x) for x in s))
        _positive("max_drop", self.max_drop)
        _count("eval_batches", self.eval_batches, 1)
        _count("finetune_epochs", self.finetune_epochs, 0)
        _positive("lr", self.lr)


@dataclass(frozen=True)
class L1FilterConfig(_Structured):
    """Li et al. 2017, "Pruning filters for efficient ConvNets": filters with the smallest
    norm go; `iterative` removes them in `steps` rounds with `train_epochs` between.
    importance: l1 (the paper), l2, fpgm, taylor, random, bn_scale."""

    importance: str = "l1"
    iterative: bool = False
    steps: int = 3
    train_epochs: int = 1
    calib_batches: int = 4

    def __post_init__(self) -> None:
        super().__post_init__()
        from slimkit.pruning.importance import importance_names

        if self.importance not in importance_names():
            raise UserError(f"unknown importance {self.importance!r}; "
                            f"known: {', '.join(importance_names())}")
        if not isinstance(self.iterative, bool):
            raise UserError(f"iterative must be true or false, got {self.iterative!r}")
        _count("steps", self.steps, 1)
        _count("train_epochs", self.train_epochs, 0)
        _count("calib_batches", self.calib_batches, 1)


@dataclass(frozen=True)
class _Penalised(_Structured):
    """penalty: weight of the sparsity regulariser; train_epochs: training with it."""

    penalty: float = 1e-4
    train_epochs: int = 1

    def __post_init__(self) -> None:
        super().__post_init__()
        _positive("penalty", self.penalty, zero_ok=True)
        _count("train_epochs", self.train_epochs, 0)


@dataclass(frozen=True)
class SlimmingConfig(_Penalised):
    """Liu et al. 2017, network slimming: `train_epochs` with an L1 `penalty` on BN scales,
    then the channels with the smallest scales go."""


@dataclass(frozen=True)
class SSLConfig(_Penalised):
    """Wen et al. 2016, structured sparsity learning: group-lasso (`penalty`) training, then
    the zeroed filters go (the ratio is met by L2 norm if the lasso left too many)."""


@dataclass(frozen=True)
class SFPConfig(_Structured):
    """He et al. 2018, soft filter pruning: the weakest filters are zeroed after every epoch
    of `train_epochs` but may recover; removed at the end. importance: l2 (the paper), l1."""

    importance: str = "l2"
    train_epochs: int = 1

    def __post_init__(self) -> None:
        super().__post_init__()
        from slimkit.pruning.importance import importance_names

        if self.importance not in importance_names():
            raise UserError(f"unknown importance {self.importance!r}; "
                            f"known: {', '.join(importance_names())}")
        _count("train_epochs", self.train_epochs, 1)


@dataclass(frozen=True)
class ChannelLassoConfig(_Structured):
    """He et al. 2017, channel pruning: LASSO channel selection on `calib_batches` of
    feature maps, then least-squares reconstruction of the next layer."""

    calib_batches: int = 4

    def __post_init__(self) -> None:
        super().__post_init__()
        _count("calib_batches", self.calib_batches, 1)


# ---- handlers: the existing methods, fed a PruneConfig ----------------------------------------


def _legacy(model: nn.Module, cfg: Any, ctx: Context, method: str, structured: bool,
            **fields: Any):
    from slimkit.pruning.api import PruneConfig, prune_with_ratio
    from slimkit.pruning.masks import default_targets

    left = cfg.selection(ctx).left_out(model)
    if not structured:
        targets = set(default_targets(model))
        left = [n for n in left if n in targets]
    common = dict(method=method, ignore=tuple(left), lr=cfg.lr,
                  finetune_epochs=cfg.finetune_epochs, fit_kwargs=dict(ctx.fit_kwargs))
    if hasattr(cfg, "ratio"):
        common.update(ratio=cfg.ratio, target=getattr(cfg, "target", "sparsity"))
    old = PruneConfig(**common, **fields)
    needs_x = structured or old.target != "sparsity"
    return prune_with_ratio(model, old, ctx.example(method) if needs_x else None, ctx.train)


def _unstructured(method: str, **extra):
    def handler(model, cfg, ctx):
        fields = dict(granularity=cfg.granularity, scope=cfg.scope)
        if hasattr(cfg, "importance"):
            fields["importance"] = cfg.importance
        for k in extra:
            fields[k] = getattr(cfg, extra[k])
        if method == "han":
            fields["steps"], fields["train_epochs"] = cfg.steps, cfg.train_epochs
        if method == "agp":
            fields["train_epochs"] = cfg.train_epochs
        out, used = _legacy(model, cfg, ctx, method, False, **fields)
        return Result(out, _report(method, model, out, cfg, used, False, ctx))
    return handler


def _structured(method: str):
    def handler(model, cfg, ctx):
        fields: dict[str, Any] = dict(round_to=cfg.round_to)
        if method == "l1_filter":
            fields.update(importance=cfg.importance, calib_batches=cfg.calib_batches,
                          steps=cfg.steps if cfg.iterative else 1,
                          train_epochs=cfg.train_epochs)
        elif method in ("slimming", "ssl"):
            fields.update(penalty=cfg.penalty, train_epochs=cfg.train_epochs)
        elif method == "sfp":
            fields.update(importance=cfg.importance, train_epochs=cfg.train_epochs)
        elif method == "channel_lasso":
            fields.update(calib_batches=cfg.calib_batches)
        data = ctx.train if ctx.train is not None else ctx.calib
        import dataclasses as dc

        out, used = _legacy(model, cfg, dc.replace(ctx, train=data), method, True, **fields)
        return Result(out, _report(method, model, out, cfg, used, True, ctx))
    return handler


_TRAINS = ("train",)
register("magnitude", "prune", MagnitudeConfig, sparse=True)(_unstructured("magnitude"))
register("han", "prune", HanConfig, needs=_TRAINS, sparse=True)(_unstructured("han"))
register("agp", "prune", AGPConfig, needs=_TRAINS, sparse=True)(_unstructured("agp"))
register("l1_filter", "prune", L1FilterConfig, needs=("example",))(_structured("l1_filter"))
register("slimming", "prune", SlimmingConfig, needs=("example", "train"))(
    _structured("slimming"))
register("ssl", "prune", SSLConfig, needs=("example", "train"))(_structured("ssl"))
register("sfp", "prune", SFPConfig, needs=("example", "train"))(_structured("sfp"))
register("channel_lasso", "prune", ChannelLassoConfig, needs=("example", "calib"))(
    _structured("channel_lasso"))


@register("nm", "prune", NMConfig, sparse=True)
def _nm(model, cfg, ctx):
    """Layers whose input size (in_features, in_channels * kH * kW as masked) is not a
    multiple of m are left dense and reported."""
    import dataclasses as dc

    from slimkit.compress.selection import Selection

    def fits(m: nn.Module, name: str) -> bool:
        return m.weight.shape[1] % cfg.m == 0 and (ctx.filter_fn is None or
                                                     ctx.filter_fn(m, name))

    sel = Selection(cfg.include, cfg.exclude, fits)
    unfit = [n for n in cfg.selection(ctx).names(model) if n not in set(sel.names(model))]
    narrowed = dc.replace(ctx, filter_fn=fits)
    out, _ = _legacy(model, cfg, narrowed, "magnitude", False, granularity="nm", n=cfg.n,
                     m=cfg.m, ratio=1 - cfg.n / cfg.m)
    rep = _report("nm", model, out, cfg, 1 - cfg.n / cfg.m, False, narrowed,
                  requested=1 - cfg.n / cfg.m)
    return Result(out, Report("nm", dict(rep.summary, left_dense=unfit), rep.layers,
                              rep.warnings))


@register("sensitivity", "prune", SensitivityConfig, needs=("train",), sparse=True)
def _sensitivity(model, cfg, ctx):
    import torch

    from slimkit.pruning.keep import attach_masks, remove_masks
    from slimkit.pruning.masks import default_targets
    from slimkit.pruning.methods.magnitude import magnitude_prune
    from slimkit.pruning.sensitivity import sensitivity_analysis

    batches = ctx.batches(cfg.eval_batches, "sensitivity")

    @torch.no_grad()
    def top1(m: nn.Module) -> float:
        m.eval()
        hit = total = 0
        for x, y in batches:
            hit += int((m(x).argmax(1) == y).sum())
            total += len(y)
        return hit / max(1, total)

    names = [n for n in cfg.selection(ctx).names(model) if n in set(default_targets(model))]
    sens = sensitivity_analysis(model, top1, cfg.sparsities, layers=names)
    layer = sens.layer_ratios(cfg.ratio, cfg.max_drop)
    out = magnitude_prune(model, cfg.ratio, include=names, layer_sparsity=layer)
    if cfg.finetune_epochs:
        from slimkit.train import fit

        attach_masks(out)
        fit(out, ctx.need_train("sensitivity"), epochs=cfg.finetune_epochs, lr=cfg.lr,
            progress=False, **ctx.fit_kwargs)
        remove_masks(out)
    rep = _report("sensitivity", model, out, cfg, cfg.ratio, False, ctx)
    summary = dict(rep.summary, layer_sparsity={k: round(v, 4) for k, v in layer.items()},
                   baseline_top1=sens.baseline)
    return Result(out, Report(rep.method, summary, rep.layers, rep.warnings))


# ---- reports ----------------------------------------------------------------------------------


def _weights(model: nn.Module) -> dict[str, nn.Module]:
    return {n: m for n, m in model.named_modules() if n and isinstance(m, (nn.Conv2d, nn.Linear))}


def _report(method: str, before: nn.Module, after: nn.Module, cfg: Any, used: float,
            structured: bool, ctx: Context, requested: float | None = None) -> Report:
    """Requested vs delivered: sparsity of the selected weights (unstructured), fraction of
    the selected layers' output channels removed (structured; the network's output layer
    cannot lose outputs and is left out), or the kept fraction of MACs/params/latency."""
    from slimkit.pruning.api import measure

    target = getattr(cfg, "target", "sparsity")
    requested = getattr(cfg, "ratio", requested) if requested is None else requested
    sel = [n for n in cfg.selection(ctx).names(before)]
    a, b = _weights(before), _weights(after)
    rows = []
    for n in sel:
        if n not in b:
            continue
        w0, w1 = a[n].weight, b[n].weight
        rows.append({"layer": n, "kind": type(a[n]).__name__, "params": w0.numel(),
                     "params_after": w1.numel(), "outputs": w0.shape[0],
                     "outputs_after": w1.shape[0],
                     "sparsity": round(float((w1 == 0).sum()) / max(1, w1.numel()), 4)})
    warnings: list[str] = []
    if target == "sparsity":
        if structured:
            last = list(a)[-1] if a else None
            rs = [r for r in rows if r["layer"] != last]
            total = sum(r["outputs"] for r in rs)
            delivered = 1 - sum(r["outputs_after"] for r in rs) / total if total else 0.0
            tol = 0.05
        else:
            total = sum(r["params_after"] for r in rows)
            zeros = sum(r["sparsity"] * r["params_after"] for r in rows)
            delivered = zeros / total if total else 0.0
            tol = 0.01
        if delivered < requested - tol:
            warnings.append(f"delivered {target} ratio {delivered:.3f} is short of the "
                            f"requested {requested:.3f}")
    else:
        shape = ctx.shape(method)
        delivered = measure(after, target, shape, structured) / \
            max(1e-12, measure(before, target, shape, structured))
        if delivered > requested * 1.02 + 1e-9:
            warnings.append(f"kept {delivered:.3f} of the {target}, above the requested "
                            f"{requested:.3f}")
    summary = {"target": target, "requested": requested, "delivered": round(delivered, 4),
               "uniform_ratio_used": round(float(used), 4)}
    return Report(method, summary, tuple(rows), tuple(warnings))
