"""Mixed precision: per-layer weight bit widths under an average-bits budget.

By hand: `PTQConfig(layer_bits={"features.0*": (8, 8), "*": (4, 8)})`. Automatically:
`assign_bits` measures, label-free, how much each layer alone hurts the network output at
each candidate bit width (output SQNR against the float model, from
`slimkit.quant.diagnostics.layer_sensitivity`), turns it into noise power
10^(-SQNR/10) (treated as additive across layers, as in the noise-budget analysis of
Zhou et al. 2018 "Adaptive quantization for deep neural network" and the sensitivity
ordering of HAQ / HAWQ), then greedily lowers the bits of the layer whose extra noise per
saved weight bit is smallest until the parameter-weighted average meets the budget.

>>> cfg = MixedConfig(budget_bits=5.0, candidates=(8, 4, 2))
>>> q = quantize(model, cfg, calib=batches)                    # doctest: +SKIP
>>> q.bit_assignment                                            # doctest: +SKIP
{'conv1': (8, 8), 'conv2': (4, 8), 'fc': (2, 8)}
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any

from torch import nn

from slimkit.errors import UserError
from slimkit.quant.api import calib_batches, register_quantizer
from slimkit.quant.core import MAX_BITS, MIN_BITS
from slimkit.quant.diagnostics import layer_sensitivity, output_sqnr_metric
from slimkit.quant.fold import fold_bn
from slimkit.quant.ptq import PTQConfig, fold_skip, quant_layers, quantize_ptq
from slimkit.selection import MethodConfig

__all__ = ["MixedConfig", "assign_bits", "quantize_mixed", "quantize_mixed_with_bits"]


@dataclass(frozen=True)
class MixedConfig(MethodConfig):
    """budget_bits: target mean weight bits per weight; candidates: allowed weight bits;
    act_bits: activation bits for every layer; base: other PTQ settings;
    calib_size: samples used to measure sensitivity. include / exclude: module fqn globs
    quantized / left in float (added to the base's); skip: deprecated alias of exclude."""

    budget_bits: float = 6.0
    candidates: tuple[int, ...] = (8, 6, 4, 3, 2)
    act_bits: int | None = 8
    base: PTQConfig = field(default_factory=PTQConfig)
    calib_size: int = 256
    skip: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        fold_skip(self)
        cands = tuple(sorted(set(self.candidates), reverse=True))
        if not cands:
            raise ValueError("candidates must name at least one bit width")
        for b in cands:
            if isinstance(b, bool) or not isinstance(b, int) or not MIN_BITS <= b <= MAX_BITS:
                raise ValueError(
                    f"candidate bits must be ints in [{MIN_BITS}, {MAX_BITS}], got {b!r}"
                )
        object.__setattr__(self, "candidates", cands)
        if not cands[-1] <= self.budget_bits:
            raise ValueError(
                f"budget_bits {self.budget_bits} is below the smallest candidate {cands[-1]}"
            )
        if not isinstance(self.base, PTQConfig):
            raise ValueError(f"base must be a PTQConfig, got {type(self.base).__name__}")
        if self.base.layer_bits:
            raise ValueError(
                "base.layer_bits must be empty: MixedConfig chooses the per-layer bits"
            )
        if self.calib_size < 1:
            raise ValueError(f"calib_size must be >= 1, got {self.calib_size}")
        if self.include != ("*",) and self.base.include != ("*",):
            raise UserError("set include on MixedConfig or on its base, not both")

    def ptq_base(self) -> PTQConfig:
        """The base PTQ settings with this config's layer selection added."""
        include = self.include if self.include != ("*",) else self.base.include
        exclude = self.base.exclude + tuple(g for g in self.exclude if g not in self.base.exclude)
        return replace(self.base, include=include, exclude=exclude)


def _noise(sqnr_db: float) -> float:
    return 10.0 ** (-sqnr_db / 10.0)


def assign_bits(
    model: nn.Module, calib: Any, config: MixedConfig
) -> dict[str, tuple[int, int | None]]:
    """{layer fqn: (weight_bits, act_bits)} meeting `config.budget_bits` on average."""
    batches = calib_batches(calib, config.calib_size)
    metric = output_sqnr_metric(batches, fold_bn(model).eval(), limit=None)  # input left as is
    noise: dict[str, dict[int, float]] = {}
    sizes: dict[str, int] = {}
    for b in config.candidates:
        q = quantize_ptq(
            model, replace(config.ptq_base(), weight_bits=b, act_bits=config.act_bits), batches
        )
        for row in layer_sensitivity(q, metric, weights_only=True):
            if row["layer"].startswith("("):
                continue
            noise.setdefault(row["layer"], {})[b] = _noise(row["metric"])
        for name, layer in quant_layers(q).items():
            sizes[name] = layer.weight.numel()
    bits = {n: config.candidates[0] for n in sizes}
    total = sum(sizes.values())
    target = config.budget_bits * total
    current = sum(sizes[n] * bits[n] for n in sizes)
    cands = list(config.candidates)
    while current > target + 1e-9:
        best, best_cost = None, float("inf")
        for n in sizes:
            i = cands.index(bits[n])
            if i + 1 >= len(cands):
                continue
            lower = cands[i + 1]
            cost = (noise[n][lower] - noise[n][bits[n]]) / (sizes[n] * (bits[n] - lower))
            if cost < best_cost:
                best, best_cost = n, cost
        if best is None:
            raise UserError(
                f"budget of {config.budget_bits} bits per weight cannot be met with {cands}"
            )
        lower = cands[cands.index(bits[best]) + 1]
        current -= sizes[best] * (bits[best] - lower)
        bits[best] = lower
    return {n: (b, config.act_bits) for n, b in bits.items()}


def quantize_mixed_with_bits(model: nn.Module, config: MixedConfig, calib: Any
                             ) -> tuple[nn.Module, dict[str, tuple[int, int | None]]]:
    """PTQ with bits from `assign_bits`: (quantized model, {layer: (weight_bits, act_bits)})."""
    assignment = assign_bits(model, calib, config)
    return quantize_ptq(model, replace(config.ptq_base(), layer_bits=assignment), calib), assignment


def quantize_mixed(model: nn.Module, config: MixedConfig, calib: Any) -> nn.Module:
    """`quantize_mixed_with_bits`; the result carries `.bit_assignment` (older callers) and
    `.qspec`. The contract's `mixed` method reports the assignment instead."""
    q, assignment = quantize_mixed_with_bits(model, config, calib)
    q.bit_assignment = assignment
    return q


@register_quantizer(MixedConfig)
def _mixed_handler(
    model: nn.Module, config: MixedConfig, *, calib: Any = None, **kwargs: Any
) -> nn.Module:
    if kwargs:
        raise UserError(f"unexpected arguments for mixed precision: {sorted(kwargs)}")
    return quantize_mixed(model, config, calib)
