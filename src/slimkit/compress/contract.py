"""The method contract: a frozen config per method, registered by type to a handler.

    handler(model, config, context) -> Result(model, report)

`compress(model, config, ...)` dispatches on `type(config)`; the family verbs (`prune`,
`quantize`, `decompose`, `distill`) do the same but refuse configs of another family.
Inputs are never mutated (each handler works on a copy). Pruning masks that the input
carries (`slimkit.pruning.keep`) are carried over to every layer of the output that still
holds the same plain weight, so later training keeps the zeros.
"""

from __future__ import annotations

import copy
import dataclasses
import itertools
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from slimkit._registry import Registry
from slimkit.errors import UserError
from slimkit.selection import MethodConfig

__all__ = ["MethodConfig", "Context", "Report", "Result", "MethodSpec", "METHODS", "register",
           "spec_of", "compress", "FAMILIES", "KINDS"]

FAMILIES = ("prune", "quantize", "decompose", "distill")
# what a model "is" between steps, for chain checks: plain float layers, fake-quantized
# layers (with .qspec), k-means shared weights, hashed weights
KINDS = ("float", "quantized", "shared", "hashed")


@dataclass
class Context:
    """What a method may use besides the model.

    example_inputs / input_shape (C, H, W): one of them for methods that trace or count MACs;
    train: a labelled DataLoader of (x, y) (training methods, fine-tuning, distillation);
    calib: calibration batches (defaults to `train`); teacher: distillation's teacher;
    filter_fn(module, fqn) -> bool: narrows every config's layer selection;
    fit_kwargs: extra arguments for `slimkit.train.fit` (e.g. seed, device).
    """

    example_inputs: Any = None
    input_shape: tuple[int, ...] | None = None
    train: Iterable | None = None
    calib: Iterable | None = None
    teacher: nn.Module | None = None
    filter_fn: Callable[[nn.Module, str], bool] | None = None
    fit_kwargs: Mapping[str, Any] = field(default_factory=dict)
    masked: tuple[str, ...] = ()   # set by `compress`: layers the input model had masked

    def keep_masks(self, model: nn.Module) -> nn.Module:
        """Re-mask (from their zeros) the layers the input had masked, before training."""
        from slimkit.pruning.keep import carry_masks

        return carry_masks(model, self.masked)

    def example(self, method: str) -> torch.Tensor:
        if self.example_inputs is not None:
            return self.example_inputs
        if self.input_shape is not None:
            return torch.zeros(1, *self.input_shape)
        raise UserError(f"method {method!r} needs example_inputs or input_shape")

    def shape(self, method: str) -> tuple[int, ...]:
        if self.input_shape is not None:
            return tuple(self.input_shape)
        x = self.example(method)
        x = x[0] if isinstance(x, (tuple, list)) else x
        return tuple(int(d) for d in x.shape[1:])

    def need_train(self, method: str) -> Iterable:
        if self.train is None:
            raise UserError(f"method {method!r} needs train=<a DataLoader of (x, y)>")
        return self.train

    def need_calib(self, method: str) -> Iterable:
        data = self.calib if self.calib is not None else self.train
        if data is None:
            raise UserError(f"method {method!r} needs calib=<batches of inputs> (or train=...)")
        return data

    def batches(self, n: int, method: str) -> list:
        return list(itertools.islice(iter(self.need_calib(method)), n))


@dataclass(frozen=True)
class Report:
    """What a method did: `summary` (e.g. requested vs delivered ratio, bits), one row per
    layer where it applies, and warnings (e.g. a ratio that fell short)."""

    method: str
    summary: Mapping[str, Any] = field(default_factory=dict)
    layers: tuple[Mapping[str, Any], ...] = ()
    warnings: tuple[str, ...] = ()

    def table(self) -> str:
        """The per-layer rows as a markdown table."""
        if not self.layers:
            return ""
        cols = list(dict.fromkeys(k for row in self.layers for k in row))
        rows = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
        rows += ["| " + " | ".join(str(r.get(c, "")) for c in cols) + " |" for r in self.layers]
        return "\n".join(rows)


@dataclass(frozen=True)
class Result:
    """The new model and its report; unpacks as `model, report = result`."""

    model: nn.Module
    report: Report

    def __iter__(self):
        return iter((self.model, self.report))


Handler = Callable[[nn.Module, Any, Context], Result]


@dataclass(frozen=True)
class MethodSpec:
    """One registered method: its name (recipe step, CLI --method), family, config class,
    handler, what it needs from the context, and the model kinds it accepts / produces."""

    name: str
    family: str
    config: type
    handler: Handler
    needs: tuple[str, ...] = ()          # "example", "train", "calib", "teacher"
    accepts: tuple[str, ...] = ("float",)
    produces: str | None = None          # None: same kind as the input
    sparse: bool = False                 # zeros may be skipped when counting MACs/energy
    bits: Callable[[Any], tuple[int, int]] = lambda cfg: (32, 32)  # (weight, act) bits


METHODS: Registry[MethodSpec] = Registry("compression method")
_BY_TYPE: dict[type, MethodSpec] = {}


def register(name: str, family: str, config: type, *, needs: tuple[str, ...] = (),
             accepts: tuple[str, ...] = ("float",), produces: str | None = None,
             sparse: bool = False, bits: Callable[[Any], tuple[int, int]] | None = None,
             ) -> Callable[[Handler], Handler]:
    """Decorator: register `handler(model, config, ctx) -> Result` for configs of `config`."""
    if family not in FAMILIES:
        raise ValueError(f"unknown family {family!r}; known: {FAMILIES}")
    if not (dataclasses.is_dataclass(config) and config.__dataclass_params__.frozen):
        raise TypeError(f"{config.__name__} must be a frozen dataclass")

    def deco(handler: Handler) -> Handler:
        spec = MethodSpec(name, family, config, handler, tuple(needs), tuple(accepts), produces,
                          sparse, bits or (lambda cfg: (32, 32)))
        METHODS.register(name)(spec)
        _BY_TYPE[config] = spec
        return handler

    return deco


# modules whose import registers methods; loaded by name on first use, so packages built on
# the contract (slimkit.auto) can register without an import cycle through slimkit.compress
METHOD_MODULES = ("slimkit.compress.methods", "slimkit.auto.methods")


def _load() -> None:
    import importlib

    for name in METHOD_MODULES:
        importlib.import_module(name)


def spec_of(config: Any) -> MethodSpec:
    """The registered method for `type(config)`."""
    _load()
    spec = _BY_TYPE.get(type(config))
    if spec is None:
        known = ", ".join(sorted(c.__name__ for c in _BY_TYPE))
        raise UserError(f"no method is registered for {type(config).__name__}; known: {known}")
    return spec


def compress(model: nn.Module, config: Any, context: Context | None = None, *,
             strict: bool = False, family: str | None = None, **ctx: Any) -> Result:
    """Apply the method registered for `type(config)` to a copy of `model`.

    Context fields may be passed as keywords (`example_inputs=x, train=loader`). With
    `strict=True` a report warning (e.g. a pruning ratio that fell short) raises instead.
    """
    if not isinstance(model, nn.Module):
        raise UserError(f"model must be an nn.Module, got {type(model).__name__}")
    spec = spec_of(config)
    if family is not None and spec.family != family:
        raise UserError(f"{type(config).__name__} is a {spec.family!r} method, not {family!r}; "
                        f"use slimkit.compress.{spec.family} or compress")
    if context is None:
        context = Context(**ctx)
    elif ctx:
        context = dataclasses.replace(context, **ctx)
    from slimkit.pruning.keep import carry_masks, masked_layers, remove_masks

    masked = tuple(masked_layers(model))
    context = dataclasses.replace(context, masked=masked)
    work = remove_masks(copy.deepcopy(model))   # handlers see plain layers
    result = spec.handler(work, config, context)
    if (masked or spec.sparse) and spec.produces != "quantized":
        # frozen fake-quantized models are not trained further: their zeros stay as they are
        names = set(masked) | (set(_zero_layers(result.model)) if spec.sparse else set())
        carry_masks(result.model, sorted(names))
    if strict and result.report.warnings:
        raise UserError(f"{spec.name}: " + "; ".join(result.report.warnings))
    for w in result.report.warnings:
        import warnings

        warnings.warn(f"{spec.name}: {w}", stacklevel=2)
    return result


def _zero_layers(model: nn.Module) -> list[str]:
    return [n for n, m in model.named_modules() if isinstance(m, (nn.Conv2d, nn.Linear))
            and isinstance(getattr(m, "weight", None), torch.Tensor) and bool((m.weight == 0).any())]
