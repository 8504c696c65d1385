"""Quantization methods under the contract: PTQ (observers, DFQ, bias correction, presets),
mixed precision, QAT, PACT, INQ, binary/ternary, k-means sharing and hashing.

The configs live beside their methods in `slimkit.quant.*`; this module registers them and
turns each into `Result(model, report)` (per-layer bits; no attributes left on the model
except `qspec`, which the int8 exporters read).
"""

from __future__ import annotations

import dataclasses
import itertools
from typing import Any

import torch
from torch import nn

from slimkit.compress.contract import Context, Report, Result, register
from slimkit.compress.selection import Selection
from slimkit.quant.binary import BinaryConfig, ClipLatent, prepare_binary
from slimkit.quant.hashed import HashConfig, hash_compress
from slimkit.quant.inq import INQConfig, prepare_inq
from slimkit.quant.mixed import MixedConfig, quantize_mixed_with_bits
from slimkit.quant.pact import PACTConfig, PACTRegularizer, prepare_pact
from slimkit.quant.ptq import PTQConfig, quantize_ptq
from slimkit.quant.qat import QATConfig, convert, prepare_qat
from slimkit.quant.sharing import ShareConfig, kmeans_share, shared_layers


def _fit(model: nn.Module, ctx: Context, method: str, epochs: int, lr: float, hooks=()) -> None:
    from slimkit.train import fit

    if epochs > 0:
        fit(model, ctx.need_train(method), epochs=epochs, lr=lr, hooks=list(hooks),
            progress=False, **ctx.fit_kwargs)


def _bits_rows(model: nn.Module) -> tuple[dict, ...]:
    spec = getattr(model, "qspec", {}) or {}
    return tuple({"layer": n, "weight_bits": s["weight_bits"], "act_bits": s["act_bits"]}
                 for n, s in spec.items())


def _mean_bits(model: nn.Module, rows) -> float | None:
    sizes = {n: model.get_submodule(r["layer"]).weight.numel() for n, r in
             ((r["layer"], r) for r in rows)}
    total = sum(sizes.values())
    return None if not total else round(sum(sizes[r["layer"]] * r["weight_bits"]
                                             for r in rows) / total, 3)


def _ptq_skip(model: nn.Module, cfg: PTQConfig, ctx: Context) -> PTQConfig:
    """The context's filter_fn narrows PTQ's selection (added to its `exclude`)."""
    if ctx.filter_fn is None:
        return cfg
    sel = Selection(filter_fn=ctx.filter_fn)
    extra = tuple(n for n in sel.left_out(model) if n not in cfg.exclude)
    return dataclasses.replace(cfg, exclude=cfg.exclude + extra) if extra else cfg


def _quant_report(method: str, model: nn.Module, **summary: Any) -> Report:
    rows = _bits_rows(model)
    return Report(method, {"mean_weight_bits": _mean_bits(model, rows), **summary}, rows)


def _ptq_bits(cfg):
    return cfg.weight_bits, cfg.act_bits or 32


@register("ptq", "quantize", PTQConfig, needs=("calib",), produces="quantized", bits=_ptq_bits)
def _ptq(model, cfg, ctx):
    q = quantize_ptq(model, _ptq_skip(model, cfg, ctx), ctx.need_calib("ptq"))
    return Result(q, _quant_report("ptq", q))


@register("mixed", "quantize", MixedConfig, needs=("calib",), produces="quantized",
          bits=lambda c: (max(c.candidates), c.act_bits or 32))
def _mixed(model, cfg, ctx):
    calib = ctx.need_calib("mixed")
    cfg = dataclasses.replace(cfg, base=_ptq_skip(model, cfg.base, ctx))
    q, assignment = quantize_mixed_with_bits(model, cfg, calib)
    return Result(q, _quant_report("mixed", q, budget_bits=cfg.budget_bits,
                                   assignment={k: list(v) for k, v in assignment.items()}))


def _names(model: nn.Module, cfg, ctx: Context) -> list[str]:
    return cfg.selection(ctx).names(model)


@register("qat", "quantize", QATConfig, needs=("train",), produces="quantized",
          bits=lambda c: (c.weight_bits, c.act_bits or 32))
def _qat(model, cfg, ctx):
    from slimkit.pruning.keep import remove_masks
    from slimkit.quant.fold import fold_bn

    base = fold_bn(model.eval()) if cfg.fold else model
    names = set(_names(base, cfg, ctx))
    skip = tuple(n for n in Selection().names(base) if n not in names)
    qat = prepare_qat(model, cfg, skip=skip)
    ctx.keep_masks(qat)                       # pruned zeros stay zero while training
    if cfg.epochs > 0:
        _fit(qat, ctx, "qat", cfg.epochs, cfg.lr)
    else:                                     # ranges from a few batches
        qat.train()
        with torch.no_grad():
            for x, *_ in itertools.islice(iter(ctx.need_calib("qat")), 4):
                qat(x)
    q = convert(remove_masks(qat))
    return Result(q, _quant_report("qat", q, epochs=cfg.epochs))


@register("pact", "quantize", PACTConfig, needs=("train",), produces="lowbit",
          bits=lambda c: (c.weight_bits or 32, c.bits))
def _pact(model, cfg, ctx):
    from slimkit.pruning.keep import remove_masks
    from slimkit.quant.pact import PACT

    out = prepare_pact(model, cfg.bits, weight_bits=cfg.weight_bits, alpha=cfg.alpha,
                       skip_first_last=cfg.skip_first_last, layers=_names(model, cfg, ctx))
    ctx.keep_masks(out)
    _fit(out, ctx, "pact", cfg.epochs, cfg.lr, [PACTRegularizer(cfg.alpha_decay)])
    remove_masks(out)
    rows = tuple({"layer": n, "act_bits": m.bits, "alpha": round(float(m.alpha.detach()), 4)}
                 for n, m in out.named_modules() if isinstance(m, PACT))
    rows += tuple({"layer": n, "weight_bits": m.weight_bits} for n, m in out.named_modules()
                  if hasattr(m, "weight_bits") and isinstance(m, (nn.Conv2d, nn.Linear)))
    return Result(out.eval(), Report("pact", {"act_bits": cfg.bits,
                                              "weight_bits": cfg.weight_bits}, rows))


@register("inq", "quantize", INQConfig, needs=("train",), produces="lowbit",
          bits=lambda c: (c.bits, 32))
def _inq(model, cfg, ctx):
    out, sched = prepare_inq(model, cfg, layers=_names(model, cfg, ctx))
    ctx.keep_masks(out)
    for _ in cfg.portions:
        sched.advance(out)
        _fit(out, ctx, "inq", cfg.epochs_per_step, cfg.lr, [sched])
    from slimkit.pruning.keep import remove_masks

    remove_masks(out)
    rows = tuple({"layer": n, "bits": cfg.bits, "levels": list(lv)}
                 for n, lv in sched.levels.items())
    return Result(out.eval(), Report("inq", {"bits": cfg.bits,
                                             "storage_bytes": sched.storage_bytes(out)}, rows))


_MODE_BITS = {"binaryconnect": 1, "xnor": 1, "ternary": 2}


@register("binary", "quantize", BinaryConfig, needs=("train",), produces="lowbit",
          bits=lambda c: (_MODE_BITS.get(c.mode, 2), 32))
def _binary(model, cfg, ctx):
    from slimkit.pruning.keep import remove_masks

    out = prepare_binary(model, cfg.mode, skip_first_last=cfg.skip_first_last,
                         layers=_names(model, cfg, ctx))
    ctx.keep_masks(out)
    _fit(out, ctx, "binary", cfg.epochs, cfg.lr, [ClipLatent(cfg.clip)])
    remove_masks(out)
    rows = tuple({"layer": n, "mode": m.mode} for n, m in out.named_modules()
                 if hasattr(m, "mode") and isinstance(m, (nn.Conv2d, nn.Linear)))
    return Result(out.eval(), Report("binary", {"mode": cfg.mode}, rows))


@register("share", "quantize", ShareConfig, produces="shared", sparse=True,
          bits=lambda c: (c.bits, 32))
def _share(model, cfg, ctx):
    out = kmeans_share(model, cfg.bits, init=cfg.init, layer_bits=cfg.layer_bits,
                       max_iter=cfg.max_iter, seed=cfg.seed, layers=_names(model, cfg, ctx))
    _fit(out, ctx, "share", cfg.finetune_epochs, cfg.lr)
    rows = tuple({"layer": n, "bits": m.bits, "zero_code": bool(m.zero_code)}
                 for n, m in shared_layers(out).items())
    return Result(out.eval(), Report("share", {"bits": cfg.bits}, rows))


@register("hash", "quantize", HashConfig, produces="hashed")
def _hash(model, cfg, ctx):
    from slimkit.quant.hashed import _Hashed

    out = hash_compress(model, cfg.compression, init=cfg.init, seed=cfg.seed,
                        layers=_names(model, cfg, ctx))
    _fit(out, ctx, "hash", cfg.epochs, cfg.lr)
    rows = tuple({"layer": n, "real_weights": m.k} for n, m in out.named_modules()
                 if isinstance(m, _Hashed))
    return Result(out.eval(), Report("hash", {"compression": cfg.compression}, rows))
