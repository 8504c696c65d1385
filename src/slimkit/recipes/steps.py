"""Recipe steps: each turns its YAML mapping into a validated config, then applies it.

A step is registered under the key it has in a recipe:

    @STEPS.register("prune")
    class PruneStep: ...  # config(params) -> frozen config; apply(model, config, ctx) -> model

The families never import each other; a recipe chains them (the survey's outlook: fusing
pruning, quantization, low-rank and distillation passes each one's ceiling).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Mapping

import torch
from torch import nn

from slimkit._registry import Registry
from slimkit.errors import UserError


@dataclass
class StepContext:
    """What a step may use: loaders, an example input and where to write files."""

    train_loader: Any
    calib_loader: Any
    example_inputs: torch.Tensor
    out: Any


@dataclass(frozen=True)
class Step:
    config: Callable[[Mapping[str, Any]], Any]          # raises UserError on bad params
    apply: Callable[[nn.Module, Any, StepContext], nn.Module]
    weight_bits: Callable[[Any], int] = lambda cfg: 32  # for the energy model
    act_bits: Callable[[Any], int] = lambda cfg: 32
    sparse: bool = False                                 # zeros may be skipped
    # the model that really runs (timed for latency); None: the step's own output
    deploy: Callable[[nn.Module, "StepContext"], nn.Module | None] = lambda model, ctx: None


STEPS: Registry[Step] = Registry("recipe step")


def build_config(cls: type, params: Mapping[str, Any], step: str) -> Any:
    """`cls(**params)` with unknown keys named, and tuples where the dataclass wants them."""
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(params) - names)
    if unknown:
        raise UserError(f"step {step!r}: unknown key(s) {unknown}; known: {sorted(names)}")
    fixed = {k: tuple(v) if isinstance(v, list) else v for k, v in params.items()}
    try:
        return cls(**fixed)
    except (TypeError, ValueError) as exc:
        raise UserError(f"step {step!r}: {exc}") from None


def _prune_config(params):
    from slimkit.pruning import PruneConfig

    return build_config(PruneConfig, params, "prune")


def _prune(model, cfg, ctx):
    from slimkit.pruning import prune

    return prune(model, cfg, example_inputs=ctx.example_inputs, data=ctx.train_loader)


STEPS.register("prune")(Step(_prune_config, _prune, sparse=True))


def _ptq_config(params):
    from slimkit.quant.ptq import PTQConfig

    params = dict(params)
    if "layer_bits" in params:
        params["layer_bits"] = {k: tuple(v) for k, v in params["layer_bits"].items()}
    return build_config(PTQConfig, params, "quantize")


def _ptq(model, cfg, ctx):
    from slimkit.quant.api import quantize

    return quantize(model, cfg, calib=ctx.calib_loader)


def _int8_onnx(model, ctx):
    """Our scales exported as a QDQ ONNX file, run by onnxruntime's int8 kernels."""
    from slimkit.deploy.onnx_int8 import int8_runtime

    return int8_runtime(model, tuple(ctx.example_inputs.shape[1:]),
                        Path(ctx.out) / "quantized-int8.onnx", calib=ctx.calib_loader)


STEPS.register("quantize")(Step(_ptq_config, _ptq, weight_bits=lambda c: c.weight_bits,
                                act_bits=lambda c: c.act_bits or 32, deploy=_int8_onnx))


@dataclass(frozen=True)
class ShareParams:
    """Deep Compression stage 2: per-layer k-means weight sharing (Han et al. 2016)."""

    bits: int = 5
    init: str = "linear"

    def __post_init__(self) -> None:
        if not isinstance(self.bits, int) or not 1 <= self.bits <= 8:
            raise UserError(f"share.bits must be an integer in 1..8, got {self.bits!r}")
        if self.init not in ("linear", "density", "random"):
            raise UserError(f"share.init must be linear, density or random, got {self.init!r}")


def _share(model, cfg, ctx):
    from slimkit.quant.sharing import kmeans_share

    return kmeans_share(model, bits=cfg.bits, init=cfg.init)


STEPS.register("share")(Step(lambda p: build_config(ShareParams, p, "share"), _share,
                             weight_bits=lambda c: c.bits, sparse=True))


@dataclass(frozen=True)
class FinetuneParams:
    """Plain fine-tuning with slimkit.train.fit (masks and shared weights stay in place)."""

    epochs: int = 1
    lr: float = 0.01

    def __post_init__(self) -> None:
        if not isinstance(self.epochs, int) or self.epochs < 1:
            raise UserError(f"finetune.epochs must be a positive integer, got {self.epochs!r}")
        if not self.lr > 0:
            raise UserError(f"finetune.lr must be positive, got {self.lr!r}")


def _finetune(model, cfg, ctx):
    from slimkit.train import fit

    fit(model, ctx.train_loader, epochs=cfg.epochs, lr=cfg.lr, progress=False)
    return model.eval()


STEPS.register("finetune")(Step(lambda p: build_config(FinetuneParams, p, "finetune"), _finetune))


def _lowrank_config(params):
    from slimkit.lowrank import LowRankConfig

    return build_config(LowRankConfig, params, "lowrank")


def _lowrank(model, cfg, ctx):
    from slimkit.lowrank import decompose

    return decompose(model, cfg, input_shape=tuple(ctx.example_inputs.shape[1:]))


STEPS.register("lowrank")(Step(_lowrank_config, _lowrank))
