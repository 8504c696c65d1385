"""Resize a freshly built model's layers to a (structurally pruned) state_dict.

A channel-pruned network keeps its architecture but has fewer channels. Instead of pickling
the pruned class, slimkit stores the zoo name, the state_dict and a *channel spec* (the
in/out/groups of each layer; the timm approach to pruned models). Rebuilding = create the zoo
model, then swap every Conv2d / Linear / BatchNorm whose shapes differ for a new, correctly
sized module.

>>> spec = channel_spec(pruned)                     # {"conv1": {"in": 3, "out": 12, ...}, ...}  # doctest: +SKIP
>>> model = resize_to_state_dict(zoo.create("resnet20"), pruned.state_dict(), spec)  # doctest: +SKIP
>>> model.load_state_dict(pruned.state_dict())  # doctest: +SKIP
"""

from __future__ import annotations

from typing import Any, Mapping

from torch import Tensor, nn
from torch.nn.modules.batchnorm import _NormBase


def channel_spec(model: nn.Module) -> dict[str, dict[str, int]]:
    """Per-module sizes of every Conv2d, ConvTranspose2d, Linear, BatchNorm, InstanceNorm,
    GroupNorm and LayerNorm (JSON-able)."""
    spec: dict[str, dict[str, int]] = {}
    for name, m in model.named_modules():
        if isinstance(m, nn.GroupNorm):
            spec[name] = {"features": m.num_channels, "groups": m.num_groups}
        elif isinstance(m, nn.LayerNorm):
            spec[name] = {"features": int(m.normalized_shape[0])}
        elif isinstance(m, nn.PReLU):
            spec[name] = {"features": m.num_parameters}
        elif isinstance(m, (nn.Conv2d, nn.ConvTranspose2d)):
            spec[name] = {"in": m.in_channels, "out": m.out_channels, "groups": m.groups}
        elif isinstance(m, nn.Linear):
            spec[name] = {"in": m.in_features, "out": m.out_features}
        elif isinstance(m, _NormBase):
            spec[name] = {"features": m.num_features}
    return spec


def resize_to_state_dict(
    model: nn.Module,
    state_dict: Mapping[str, Tensor],
    spec: Mapping[str, Mapping[str, int]] | None = None,
) -> nn.Module:
    """Replace (in place) Conv2d/Linear/BatchNorm modules whose shapes differ from `state_dict`.

    `spec` (from `channel_spec`) gives exact sizes and conv groups; without it sizes come from
    the state_dict's weight shapes, and a depthwise conv (groups == in == out) stays depthwise.
    Returns `model` (its sized modules are new, their weights uninitialised until you call
    `load_state_dict`).
    """
    spec = dict(spec or {})
    for name, m in list(model.named_modules()):
        prefix = f"{name}." if name else ""
        if isinstance(m, nn.Conv2d):
            new = _resize_conv(m, name, state_dict.get(prefix + "weight"), spec.get(name))
        elif isinstance(m, nn.ConvTranspose2d):
            new = _resize_conv_transpose(m, state_dict.get(prefix + "weight"), spec.get(name))
        elif isinstance(m, nn.Linear):
            new = _resize_linear(m, name, state_dict.get(prefix + "weight"), spec.get(name))
        elif isinstance(m, _NormBase):
            new = _resize_bn(m, name, state_dict, prefix, spec.get(name))
        elif isinstance(m, (nn.GroupNorm, nn.LayerNorm, nn.PReLU)):
            new = _resize_norm(m, state_dict, prefix, spec.get(name))
        else:
            continue
        if new is not m:
            if not name:
                raise ValueError("cannot resize the root module itself; wrap it in a container")
            model.set_submodule(name, new)
    return model


def _resize_conv(
    m: nn.Conv2d, name: str, w: Tensor | None, s: Mapping[str, int] | None
) -> nn.Conv2d:
    if s is not None:
        c_in, c_out, groups = int(s["in"]), int(s["out"]), int(s.get("groups", 1))
    elif w is not None:
        c_out, in_per_group = w.shape[0], w.shape[1]
        if m.groups > 1 and m.groups == m.in_channels:  # depthwise (channel multiplier k)
            k = m.out_channels // m.groups
            if c_out % k:
                raise ValueError(f"{name}: {c_out} outputs is not a multiple of {k} (depthwise)")
            groups = c_out // k
            c_in = groups * in_per_group
        else:
            groups, c_in = m.groups, m.groups * in_per_group
    else:
        return m
    if (c_in, c_out, groups) == (m.in_channels, m.out_channels, m.groups):
        return m
    if c_in % groups or c_out % groups:
        raise ValueError(f"{name}: in={c_in}, out={c_out} not divisible by groups={groups}")
    new = nn.Conv2d(
        c_in, c_out, m.kernel_size, stride=m.stride, padding=m.padding, dilation=m.dilation,
        groups=groups, bias=m.bias is not None, padding_mode=m.padding_mode,
    )
    return new.to(device=m.weight.device, dtype=m.weight.dtype)


def _resize_linear(
    m: nn.Linear, name: str, w: Tensor | None, s: Mapping[str, int] | None
) -> nn.Linear:
    if s is not None:
        f_in, f_out = int(s["in"]), int(s["out"])
    elif w is not None:
        f_out, f_in = w.shape
    else:
        return m
    if (f_in, f_out) == (m.in_features, m.out_features):
        return m
    new = nn.Linear(f_in, f_out, bias=m.bias is not None)
    return new.to(device=m.weight.device, dtype=m.weight.dtype)


def _resize_conv_transpose(
    m: nn.ConvTranspose2d, w: Tensor | None, s: Mapping[str, int] | None
) -> nn.ConvTranspose2d:
    """Weight layout (C_in, C_out / groups, kH, kW)."""
    if s is not None:
        c_in, c_out, groups = int(s["in"]), int(s["out"]), int(s.get("groups", 1))
    elif w is not None:
        groups = m.groups
        c_in, c_out = w.shape[0], w.shape[1] * groups
    else:
        return m
    if (c_in, c_out, groups) == (m.in_channels, m.out_channels, m.groups):
        return m
    new = nn.ConvTranspose2d(
        c_in, c_out, m.kernel_size, stride=m.stride, padding=m.padding,
        output_padding=m.output_padding, groups=groups, bias=m.bias is not None,
        dilation=m.dilation, padding_mode=m.padding_mode,
    )
    return new.to(device=m.weight.device, dtype=m.weight.dtype)


def _resize_norm(
    m: nn.Module, sd: Mapping[str, Tensor], prefix: str, s: Mapping[str, int] | None
) -> nn.Module:
    """GroupNorm (whole groups pruned: channels per group kept), LayerNorm over channels and
    per-channel PReLU."""
    ref = sd.get(prefix + "weight")
    n = int(s["features"]) if s is not None else (ref.shape[0] if ref is not None else None)
    if isinstance(m, nn.PReLU):
        if n is None or n == m.num_parameters:
            return m
        new_p = nn.PReLU(n)
        return new_p.to(device=m.weight.device, dtype=m.weight.dtype)
    if isinstance(m, nn.GroupNorm):
        if n is None or n == m.num_channels:
            return m
        groups = int(s["groups"]) if s is not None and "groups" in s else (
            1 if m.num_groups == 1 else n // (m.num_channels // m.num_groups))
        new: nn.Module = nn.GroupNorm(groups, n, eps=m.eps, affine=m.affine)
    else:
        if n is None or n == m.normalized_shape[0]:
            return m
        new = nn.LayerNorm((n, *m.normalized_shape[1:]), eps=m.eps,
                           elementwise_affine=m.elementwise_affine, bias=m.bias is not None)
    ref_t = getattr(m, "weight", None)
    return new.to(device=ref_t.device, dtype=ref_t.dtype) if ref_t is not None else new


def _resize_bn(
    m: _NormBase, name: str, sd: Mapping[str, Tensor], prefix: str, s: Mapping[str, int] | None
) -> _NormBase:
    if s is not None:
        n = int(s["features"])
    else:
        ref = sd.get(prefix + "weight", sd.get(prefix + "running_mean"))
        if ref is None:
            return m
        n = ref.shape[0]
    if n == m.num_features:
        return m
    new = type(m)(
        n, eps=m.eps, momentum=m.momentum, affine=m.affine,
        track_running_stats=m.track_running_stats,
    )
    ref_t: Any = m.weight if m.weight is not None else m.running_mean
    return new.to(device=ref_t.device, dtype=ref_t.dtype) if ref_t is not None else new


def shapes_match(model: nn.Module, state_dict: Mapping[str, Tensor]) -> list[str]:
    """Names of state_dict entries whose shapes differ from `model`'s (empty when all match)."""
    own = model.state_dict()
    return [k for k, v in state_dict.items() if k in own and tuple(own[k].shape) != tuple(v.shape)]
