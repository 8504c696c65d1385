"""One verb per family; each dispatches on the config's type like `compress`, refuses
configs of another family, and returns a new model with its report (`Result`)."""

from __future__ import annotations

from typing import Any

from torch import nn

from slimkit.compress.contract import Context, Result, compress


def prune(model: nn.Module, config: Any, context: Context | None = None, **kw: Any) -> Result:
    """Prune a copy of `model` (`MagnitudeConfig`, `L1FilterConfig`, ...)."""
    return compress(model, config, context, family="prune", **kw)


def quantize(model: nn.Module, config: Any, context: Context | None = None, **kw: Any) -> Result:
    """Quantize a copy of `model` (`PTQConfig`, `QATConfig`, `ShareConfig`, ...)."""
    return compress(model, config, context, family="quantize", **kw)


def decompose(model: nn.Module, config: Any, context: Context | None = None,
              **kw: Any) -> Result:
    """Factorise a copy of `model` (`LowRankConfig`)."""
    return compress(model, config, context, family="decompose", **kw)


def distill(model: nn.Module, config: Any, context: Context | None = None, **kw: Any) -> Result:
    """Train a copy of `model` against a teacher (`DistillConfig`)."""
    return compress(model, config, context, family="distill", **kw)


def prune_(model: nn.Module, config: Any, context: Context | None = None, **kw: Any) -> Result:
    """`prune`, then load the result into `model` itself when the architecture is unchanged
    (unstructured methods); structured methods change shapes and raise."""
    res = prune(model, config, context, **kw)
    _load_into(model, res.model)
    return Result(model, res.report)


def _load_into(model: nn.Module, new: nn.Module) -> None:
    from slimkit.errors import UserError
    from slimkit.pruning.keep import attach_masks, masked_layers, remove_masks

    masks = masked_layers(new)
    remove_masks(model)
    plain = remove_masks(new)
    try:
        model.load_state_dict(plain.state_dict())
    except RuntimeError:
        raise UserError("prune_ works in place only for methods that keep the architecture "
                        "(unstructured ones); use prune") from None
    attach_masks(model, masks)
