"""Recipe steps: one per registered method (its name is the step's key, its config the step's
mapping), plus `finetune`, `export` and the older `prune` / `quantize` keys.

Each step declares the model kinds it accepts and the kind it produces (`float`, `quantized`:
fake-quantized layers with a `qspec`; `lowbit`: PACT/INQ/binary training layers; `shared`:
k-means codebooks; `hashed`), so `load_recipe` refuses an impossible chain (PTQ over shared
weights, int8 export of a float model, ...) before anything runs.

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

ALL_KINDS = ("float", "quantized", "lowbit", "shared", "hashed")
TRAINABLE = ("float", "lowbit", "shared", "hashed")


@dataclass
class StepContext:
    """What a step may use: loaders, an example input, where to write files, and the models
    before the recipe (`original`) and before the current step (`previous`)."""

    train_loader: Any
    calib_loader: Any
    example_inputs: torch.Tensor
    out: Any
    original: nn.Module | None = None
    previous: nn.Module | None = None
    exported: Path | None = None                      # the file the last export wrote

    @property
    def input_shape(self) -> tuple[int, ...]:
        return tuple(self.example_inputs.shape[1:])


@dataclass(frozen=True)
class Step:
    config: Callable[[Mapping[str, Any]], Any]          # raises UserError on bad params
    apply: Callable[[nn.Module, Any, StepContext], nn.Module]
    accepts: Callable[[Any], tuple[str, ...]] = lambda cfg: ("float",)
    produces: Callable[[Any, str], str] = lambda cfg, kind: kind
    bits: Callable[[Any], tuple[int, int]] = lambda cfg: (32, 32)   # for the energy model
    sparse: bool = False                                 # zeros may be skipped
    # the model that really runs (timed for latency); None: the step's own output
    deploy: Callable[[nn.Module, "StepContext"], nn.Module | None] = lambda model, ctx: None
    check: Callable[[Any, str], None] = lambda cfg, source: None  # parse-time checks
    doc: str = ""

    def weight_bits(self, cfg) -> int:
        return self.bits(cfg)[0]

    def act_bits(self, cfg) -> int:
        return self.bits(cfg)[1]


STEPS: Registry[Step] = Registry("recipe step")


def build_config(cls: type, params: Mapping[str, Any], step: str) -> Any:
    """The config of `cls` from a step's mapping: unknown keys named, values coerced."""
    from slimkit.compress.serial import config_from_dict

    if params is not None and not isinstance(params, Mapping):
        raise UserError(f"step {step!r}: parameters must be a mapping, got {params!r}")
    return config_from_dict(cls, params or {}, where=f"step {step!r}")


def _int8_onnx(model, ctx):
    """Our scales exported as a QDQ ONNX file, run by onnxruntime's int8 kernels."""
    from slimkit.deploy.onnx_int8 import int8_runtime

    return int8_runtime(model, ctx.input_shape, Path(ctx.out) / "quantized-int8.onnx",
                        calib=ctx.calib_loader)


def _context(ctx: StepContext, teacher: nn.Module | None = None):
    from slimkit.compress import Context

    return Context(example_inputs=ctx.example_inputs, train=ctx.train_loader,
                   calib=ctx.calib_loader, teacher=teacher)


# ---- one step per registered method ------------------------------------------------------------


def _method_step(spec) -> Step:
    def apply(model, cfg, ctx):
        from slimkit.compress import compress

        return compress(model, cfg, _context(ctx)).model

    produced = spec.produces
    deploy = _int8_onnx if produced == "quantized" and spec.name in ("ptq", "mixed", "qat") \
        else (lambda model, ctx: None)
    accepts = spec.accepts
    return Step(config=lambda p, cls=spec.config, n=spec.name: build_config(cls, p, n),
                apply=apply, accepts=lambda cfg: accepts,
                produces=lambda cfg, kind: produced or kind, bits=spec.bits,
                sparse=spec.sparse, deploy=deploy, doc=(spec.config.__doc__ or "").strip())


def _distill_apply(model, cfg, ctx):
    from slimkit.compress import compress

    teacher = {"": ctx.original, "original": ctx.original, "previous": ctx.previous}
    if cfg.teacher in teacher:
        return compress(model, dataclasses.replace(cfg, teacher=""),
                        _context(ctx, teacher[cfg.teacher])).model
    return compress(model, cfg, _context(ctx)).model


def _distill_check(cfg, source: str) -> None:
    if cfg.teacher in ("", "original", "previous"):
        return
    from slimkit.train import load_model

    try:
        load_model(cfg.teacher)
    except (OSError, ValueError) as exc:
        raise UserError(f"{source}: distill.teacher {cfg.teacher!r} is not a loadable model "
                        f"file: {exc}") from None


def register_method_steps() -> None:
    """A step for every registered method (called on import; idempotent)."""
    from slimkit.compress import METHODS
    from slimkit.compress.contract import _load

    _load()
    for name in METHODS.names():
        if name in STEPS:
            continue
        spec = METHODS.get(name)
        step = _method_step(spec)
        if name == "distill":
            step = dataclasses.replace(step, apply=_distill_apply, check=_distill_check,
                                       accepts=lambda cfg: TRAINABLE)
        elif name == "share":     # k-means keeps zeros (its zero code)
            step = dataclasses.replace(step, sparse=True)
        STEPS.register(name)(step)


# ---- fine-tuning ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class FinetuneParams:
    """Plain fine-tuning with slimkit.train.fit; pruned zeros stay zero (masks), shared and
    hashed weights stay shared."""

    epochs: int = 1
    lr: float = 0.01

    def __post_init__(self) -> None:
        if isinstance(self.epochs, bool) or not isinstance(self.epochs, int) or self.epochs < 1:
            raise UserError(f"finetune.epochs must be a positive integer, got {self.epochs!r}")
        if isinstance(self.lr, bool) or not isinstance(self.lr, (int, float)) or not self.lr > 0:
            raise UserError(f"finetune.lr must be positive, got {self.lr!r}")


def _finetune(model, cfg, ctx):
    from slimkit.pruning.keep import attach_masks, masked_layers
    from slimkit.train import fit

    if not masked_layers(model):
        attach_masks(model)       # a model with zeros but no masks (e.g. from a file)
    fit(model, ctx.train_loader, epochs=cfg.epochs, lr=cfg.lr, progress=False)
    return model.eval()


STEPS.register("finetune")(Step(lambda p: build_config(FinetuneParams, p, "finetune"),
                                _finetune, accepts=lambda cfg: TRAINABLE,
                                doc=FinetuneParams.__doc__))


# ---- export ----------------------------------------------------------------------------------------

EXPORT_FORMATS = {
    "onnx": ("float", "lowbit", "hashed", "shared"),
    "int8": ("quantized", "float"),
    "deep_compression": ("shared",),
    "sparse": ("float",),
}


@dataclass(frozen=True)
class ExportParams:
    """Write the deployable file: format onnx (fp32), int8 (QDQ ONNX with int8 weights; a float
    model is quantized W8A8 first), deep_compression (k-means codes + Huffman, Han et al.
    2016) or sparse (CSR safetensors); file: its name inside the run folder. The six ratios
    of the model at this step are written beside it (`<file>.ratios.json`)."""

    format: str = "onnx"
    file: str = ""

    def __post_init__(self) -> None:
        if self.format not in EXPORT_FORMATS:
            raise UserError(f"export.format must be one of {sorted(EXPORT_FORMATS)}, "
                            f"got {self.format!r}")
        if not isinstance(self.file, str) or "/" in self.file or self.file.startswith(".."):
            raise UserError(f"export.file must be a plain file name, got {self.file!r}")

    @property
    def filename(self) -> str:
        ext = {"onnx": ".onnx", "int8": "-int8.onnx", "deep_compression": ".dc.safetensors",
               "sparse": ".sparse.safetensors"}[self.format]
        return self.file or f"model{ext}"


def _export(model, cfg, ctx):
    from slimkit.pruning.keep import squash

    path = Path(ctx.out) / cfg.filename
    plain = squash(model)
    if cfg.format == "onnx":
        from slimkit.deploy.onnx_export import export_onnx

        export_onnx(plain, ctx.input_shape, path)
    elif cfg.format == "int8":
        from slimkit.deploy.onnx_int8 import export_int8_onnx

        if not getattr(plain, "qspec", None):
            from slimkit.quant.ptq import PTQConfig, quantize_ptq

            plain = quantize_ptq(plain, PTQConfig(), ctx.calib_loader)
            model = plain
        export_int8_onnx(plain, ctx.input_shape, path, calib=ctx.calib_loader)
    elif cfg.format == "deep_compression":
        from slimkit.deploy.deep_compression import save_compressed

        save_compressed(plain, path)
    else:
        from slimkit.pruning.sparse import save_sparse, to_sparse

        save_sparse(to_sparse(plain), path)
    ctx.exported = path
    return model


def _export_deploy(model, ctx):
    path = ctx.exported
    if path is not None and path.suffix == ".onnx":
        from slimkit.deploy.onnx_export import OrtModule

        return OrtModule(path)
    return None


STEPS.register("export")(Step(
    lambda p: build_config(ExportParams, p, "export"), _export,
    accepts=lambda cfg: EXPORT_FORMATS[cfg.format],
    produces=lambda cfg, kind: "quantized" if cfg.format == "int8" else kind,
    deploy=_export_deploy, doc=ExportParams.__doc__))


# ---- the older keys ------------------------------------------------------------------------------


def _prune_config(params):
    from slimkit.pruning import PruneConfig

    return build_config(PruneConfig, params, "prune")


def _prune(model, cfg, ctx):
    """`prune: {method: ..., ...}` with the older all-methods PruneConfig; masks attached."""
    from slimkit.pruning.api import prune_with_ratio
    from slimkit.pruning.keep import attach_masks, squash

    out, _ = prune_with_ratio(squash(model), cfg, ctx.example_inputs, ctx.train_loader)
    return attach_masks(out)


STEPS.register("prune")(Step(_prune_config, _prune, sparse=True,
                             doc="Any pruning method through the older PruneConfig "
                                 "(prefer the per-method steps)."))


def _ptq_alias() -> None:
    """`quantize:` is PTQ (the older key)."""
    STEPS.register("quantize")(dataclasses.replace(
        STEPS.get("ptq"), config=lambda p: build_config(_ptq_cls(), p, "quantize")))


def _ptq_cls():
    from slimkit.quant.ptq import PTQConfig

    return PTQConfig


register_method_steps()
_ptq_alias()
