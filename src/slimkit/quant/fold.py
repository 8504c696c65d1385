"""Fold BatchNorm into the preceding conv / linear (Jacob et al. 2018, Sec. 3.2; Krishnamoorthi 2018).

In eval mode BN is the affine map y = gamma * (x - mean) / sqrt(var + eps) + beta, so a
conv followed by BN equals one conv with

    W' = W * gamma / sqrt(var + eps)       (per output channel)
    b' = (b - mean) * gamma / sqrt(var + eps) + beta

>>> m = nn.Sequential(nn.Conv2d(1, 4, 3), nn.BatchNorm2d(4)).eval()
>>> f = fold_bn(m)
>>> type(f[1]).__name__
'Identity'

Pairs are found with torch.fx: a BN whose input is a Conv2d / Linear (groups allowed) whose
output feeds nothing else. The returned model is a deep copy of the original class, with
each folded BN replaced by `nn.Identity`; the input is untouched.
"""

from __future__ import annotations

import copy

import torch
import torch.fx as fx
from torch import nn

from slimkit.errors import UserError

__all__ = ["fold_bn", "find_conv_bn_pairs", "fold_conv_bn_weights", "trace"]

_BN = (nn.BatchNorm1d, nn.BatchNorm2d)
_LAYERS = (nn.Conv2d, nn.Linear)


def trace(model: nn.Module) -> fx.GraphModule:
    """torch.fx symbolic trace with a clear error when the model is not traceable."""
    try:
        return fx.symbolic_trace(model)
    except Exception as exc:  # fx raises many types (TraceError, TypeError, ...)
        raise UserError(
            f"cannot trace {type(model).__name__} with torch.fx ({type(exc).__name__}: {exc}); "
            "quantization needs an fx-traceable model"
        ) from exc


def find_conv_bn_pairs(model: nn.Module) -> list[tuple[str, str]]:
    """(layer_fqn, bn_fqn) for every BN that directly follows a conv / linear."""
    gm = trace(model)
    mods = dict(gm.named_modules())
    pairs: list[tuple[str, str]] = []
    for node in gm.graph.nodes:
        if node.op != "call_module" or not isinstance(mods.get(node.target), _BN):
            continue
        src = node.args[0] if node.args else None
        if not isinstance(src, fx.Node) or src.op != "call_module":
            continue
        if not isinstance(mods.get(src.target), _LAYERS) or len(src.users) != 1:
            continue
        pairs.append((str(src.target), str(node.target)))
    # a layer module called twice (shared weights) cannot be folded for one caller only
    counts: dict[str, int] = {}
    for node in gm.graph.nodes:
        if node.op == "call_module":
            counts[str(node.target)] = counts.get(str(node.target), 0) + 1
    return [(c, b) for c, b in pairs if counts[c] == 1 and counts[b] == 1]


@torch.no_grad()
def fold_conv_bn_weights(layer: nn.Module, bn: nn.Module) -> None:
    """Fold `bn` (eval statistics) into `layer` in place; `layer` gains a bias if it had none."""
    if bn.running_mean is None or bn.running_var is None:
        raise UserError(
            "cannot fold a BatchNorm without running statistics (track_running_stats=False)"
        )
    if bn.num_features != layer.weight.shape[0]:
        raise UserError(
            f"BatchNorm has {bn.num_features} features but the layer has "
            f"{layer.weight.shape[0]} outputs"
        )
    inv_std = torch.rsqrt(bn.running_var + bn.eps)
    gamma = bn.weight if bn.weight is not None else torch.ones_like(inv_std)
    beta = bn.bias if bn.bias is not None else torch.zeros_like(inv_std)
    factor = gamma * inv_std  # (C_out,)
    shape = (-1,) + (1,) * (layer.weight.dim() - 1)
    layer.weight.mul_(factor.reshape(shape))
    bias = layer.bias if layer.bias is not None else torch.zeros_like(bn.running_mean)
    new_bias = (bias - bn.running_mean) * factor + beta
    if layer.bias is None:
        layer.bias = nn.Parameter(new_bias.to(layer.weight.dtype))
    else:
        layer.bias.copy_(new_bias)


def fold_bn(model: nn.Module) -> nn.Module:
    """New model (same class, deep copy) with every conv->BN / linear->BN pair folded.

    Exact for eval-mode inference; BNs without a preceding conv/linear are kept.
    """
    pairs = find_conv_bn_pairs(model)
    out = copy.deepcopy(model)
    for layer_name, bn_name in pairs:
        fold_conv_bn_weights(out.get_submodule(layer_name), out.get_submodule(bn_name))
        out.set_submodule(bn_name, nn.Identity())
    return out
