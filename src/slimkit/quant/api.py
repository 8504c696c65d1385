"""One entry point: `quantize(model, config, calib=...)`, dispatched on the config's class.

The `QUANTIZERS` registry maps a config class name (e.g. "PTQConfig") to a handler
`handler(model, config, *, calib=None, **kwargs) -> nn.Module`. A method joins with

    @register_quantizer(MyConfig)
    def _my_method(model, config, *, calib=None, **kwargs):
        ...

placed in its own module; list that module in `_METHOD_MODULES` below (a missing module is
skipped) so `quantize` imports it before dispatching.

>>> from slimkit.quant.ptq import PTQConfig
>>> net = nn.Sequential(nn.Linear(4, 3))
>>> q = quantize(net, PTQConfig(weight_bits=8, act_bits=8), calib=[torch.randn(8, 4)])
>>> sorted(q.qspec)
['0']

Calibration data (`calib`) is unlabeled: a tensor (one batch), or an iterable of tensors or
of (x, y, ...) batches (labels are ignored), e.g. a DataLoader.
"""

from __future__ import annotations

import importlib
from typing import Any, Callable, Iterable

import torch
from torch import Tensor, nn

from slimkit._registry import Registry
from slimkit.errors import UserError

__all__ = ["QUANTIZERS", "register_quantizer", "quantize", "calib_batches"]

Handler = Callable[..., nn.Module]
QUANTIZERS: Registry[Handler] = Registry("quantization config")

# modules that register handlers on import; absent ones are skipped
_METHOD_MODULES = (
    "slimkit.quant.ptq",
    "slimkit.quant.mixed",
    "slimkit.quant.qat",
    "slimkit.quant.pact",
    "slimkit.quant.inq",
    "slimkit.quant.binary",
    "slimkit.quant.sharing",
    "slimkit.quant.hashed",
)


def register_quantizer(config_cls: type) -> Callable[[Handler], Handler]:
    """Register `handler(model, config, *, calib=None, **kw)` for configs of `config_cls`."""
    return QUANTIZERS.register(config_cls.__name__)


def _load_methods() -> None:
    for name in _METHOD_MODULES:
        try:
            importlib.import_module(name)
        except ModuleNotFoundError as exc:
            if exc.name != name:  # a real missing dependency inside the module
                raise


def quantize(model: nn.Module, config: Any, calib: Any = None, **kwargs: Any) -> nn.Module:
    """Quantize `model` with the method that handles `type(config)`; returns a new module.

    Configs registered only with the method contract (QAT, PACT, INQ, binary, sharing,
    hashing) go through `slimkit.compress.quantize`; `kwargs` are then its context fields
    (e.g. `train=loader`). New code: `slimkit.compress.quantize`, which also returns the
    report."""
    if not isinstance(model, nn.Module):
        raise UserError(f"model must be an nn.Module, got {type(model).__name__}")
    _load_methods()
    if type(config).__name__ not in QUANTIZERS:
        from slimkit.compress import quantize as quantize_contract

        return quantize_contract(model, config, calib=calib, **kwargs).model
    handler = QUANTIZERS.get(type(config).__name__)
    return handler(model, config, calib=calib, **kwargs)


def calib_batches(calib: Any, limit: int | None = None) -> list[Tensor]:
    """Materialise unlabeled calibration inputs as a list of float tensors (labels dropped).

    `limit` caps the number of samples (not batches). Raises UserError when empty.
    """
    if calib is None:
        raise UserError("calibration data is required (an iterable of input batches); got None")
    items: Iterable[Any] = [calib] if isinstance(calib, Tensor) else calib
    out: list[Tensor] = []
    seen = 0
    try:
        iterator = iter(items)
    except TypeError:
        raise UserError(
            f"calibration data must be a tensor or an iterable of batches, "
            f"got {type(calib).__name__}"
        ) from None
    for item in iterator:
        x = item[0] if isinstance(item, (tuple, list)) else item
        if not isinstance(x, Tensor):
            raise UserError(
                f"calibration batches must be tensors or (x, y) pairs, got {type(x).__name__}"
            )
        if x.numel() == 0:
            continue
        if limit is not None and seen + x.shape[0] > limit:
            x = x[: limit - seen]
        out.append(x.float())
        seen += x.shape[0]
        if limit is not None and seen >= limit:
            break
    if not out:
        raise UserError("calibration data is empty: need at least one non-empty input batch")
    return out


@torch.no_grad()
def run_batches(model: nn.Module, batches: list[Tensor]) -> None:
    """Forward every batch through `model` (eval, no grad), discarding the outputs."""
    for x in batches:
        model(x)
