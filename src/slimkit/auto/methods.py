"""AMC, NetAdapt and HAQ under the method contract (`slimkit.compress`): each is a config
registered to a handler, so it is a recipe step, a `slimkit compress` command and a candidate
for `slimkit auto` like every other method.

The searches score candidates on labelled batches: the first `VAL_BATCHES` of the context's
training loader (a held-out split is better: pass one as `train` and fine-tune elsewhere).
"""

from __future__ import annotations

import itertools
import warnings

from slimkit.auto.amc import AMCConfig, amc
from slimkit.auto.haq import HAQConfig, haq
from slimkit.auto.netadapt import NetAdaptConfig, netadapt
from slimkit.compress.contract import Report, Result, register

VAL_BATCHES = 4


def _val(ctx, method: str) -> list:
    return list(itertools.islice(iter(ctx.need_train(method)), VAL_BATCHES))


def _pruned(name: str, requested: float, delivered: float, summary: dict, rows: tuple) -> Report:
    short = delivered < requested - 0.05
    warn = (f"{name}: delivered {delivered:.3f} is short of the requested {requested:.3f}",) if short else ()
    for w in warn:
        warnings.warn(w, stacklevel=3)
    return Report(name, {"requested": requested, "delivered": delivered, **summary}, rows, warn)


@register("amc", "prune", AMCConfig, needs=("example", "train"))
def _amc(model, cfg, ctx):
    ignore = tuple(cfg.selection(ctx).left_out(model))
    res = amc(model, cfg, input_shape=ctx.shape("amc"), val_loader=_val(ctx, "amc"), ignore=ignore)
    rows = tuple({"group": g, "kept": round(k, 4)} for g, k in res.keep.items())
    report = _pruned("amc", 1 - cfg.target_macs, 1 - res.macs / res.original_macs,
                     {"target": "macs", "held_out_top1": res.reward, "macs": res.macs}, rows)
    return Result(res.model, report)


@register("netadapt", "prune", NetAdaptConfig, needs=("example", "train"))
def _netadapt(model, cfg, ctx):
    ignore = tuple(cfg.selection(ctx).left_out(model))
    res = netadapt(model, cfg, input_shape=ctx.shape("netadapt"), train_loader=ctx.need_train("netadapt"),
                   val_loader=_val(ctx, "netadapt"), ignore=ignore)
    final = res.iterations[-1].predicted_ms if res.iterations else res.original_ms
    rows = tuple(dict(vars(i)) for i in res.iterations)
    report = _pruned("netadapt", 1 - cfg.target, 1 - final / res.original_ms,
                     {"target": "latency", "original_ms": res.original_ms, "reached": res.reached}, rows)
    return Result(res.model, report)


@register("haq", "quantize", HAQConfig, needs=("example", "train", "calib"), produces="quantized",
          bits=lambda cfg: (cfg.min_bits, cfg.act_bits or cfg.min_bits))
def _haq(model, cfg, ctx):
    from slimkit.quant.api import calib_batches

    shape = ctx.shape("haq")
    skip = tuple(cfg.selection(ctx).left_out(model))
    res = haq(model, cfg, input_shape=shape, calib=calib_batches(ctx.need_calib("haq"), 256),
              val_loader=_val(ctx, "haq"), skip=skip)
    rows = tuple({"layer": n, "weight_bits": w, "act_bits": a} for n, (w, a) in res.bits.items())
    summary = {"budget": cfg.budget, "cost_fraction": res.cost / res.cost_8bit, "held_out_top1": res.reward}
    return Result(res.model, Report("haq", summary, rows))
