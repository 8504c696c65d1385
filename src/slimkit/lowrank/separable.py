"""Depthwise-separable replacement of k x k convs (survey section 3.4 and Table 8).

MobileNets (Howard et al. 2017) and Xception (Chollet 2017) build convs as a depthwise k x k
conv (one filter per input channel) followed by a pointwise 1 x 1 conv. `separate` turns each
eligible Conv2d of a trained model (groups=1, a k x k kernel with k >= ``min_kernel``, more
than one input channel) into that pair, initialised from the original kernel, for fine-tuning
or distillation afterwards (`slimkit.train.fit`, `slimkit.distill.distill`).

The initialisation is the best separable fit. The pair computes the conv whose kernel is
``W_hat[o, c] = P[o, c] * D[c]`` (D: depthwise kernels, P: pointwise weights), so for each
input channel c the slice ``W[:, c]`` (C_out x k*k) is replaced by the rank-1 matrix
``P[:, c] D[c]^T``. These slices are independent, and by Eckart-Young the least-squares
optimum for each is its leading singular triple: ``P[:, c] = sqrt(s1) u1``,
``D[c] = sqrt(s1) v1`` (the scale split evenly between the two layers). The fit is exact when
every slice has rank 1; otherwise ``||W - W_hat||_F^2`` is the sum, over c, of the squared
singular values each slice discards. The bias moves to the pointwise conv; an optional
BatchNorm between the two (off by default) starts as the identity in eval mode.

>>> import torch.nn as nn
>>> net = nn.Sequential(nn.Conv2d(16, 32, 3, padding=1), nn.ReLU(), nn.Conv2d(32, 8, 1))
>>> res = separate(net, SeparableConfig(), input_shape=(16, 8, 8))
>>> [(r.name, r.status, r.params_before, r.params_after) for r in res.layers]
[('0', 'decomposed', 4640, 688), ('2', 'skipped', 264, 264)]
"""

from __future__ import annotations

import copy
import fnmatch
import math
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Sequence

import torch
from torch import Tensor, nn

from slimkit.errors import UserError
from slimkit.lowrank._layers import ConvGeometry, bias_of
from slimkit.lowrank.api import LayerReport, LowRankResult, input_shapes

__all__ = ["SeparableConfig", "SeparableFactors", "separable_conv", "separable_factors",
           "separate"]


def _globs(value: object, name: str) -> tuple[str, ...]:
    if isinstance(value, str) or not isinstance(value, (tuple, list)) or \
            not all(isinstance(g, str) for g in value):
        raise UserError(f"{name} must be a tuple of fqn globs, got {value!r}")
    return tuple(value)


@dataclass(frozen=True)
class SeparableConfig:
    """Which convs to separate (fqn globs over the model's Conv2d layers; a glob that matches
    none raises), the smallest kernel side worth separating, and whether to put a BatchNorm
    between the depthwise and pointwise convs."""

    include: tuple[str, ...] = field(default=("*",))
    exclude: tuple[str, ...] = field(default=())
    min_kernel: int = 3
    batchnorm: bool = False

    def __post_init__(self) -> None:
        object.__setattr__(self, "include", _globs(self.include, "include"))
        object.__setattr__(self, "exclude", _globs(self.exclude, "exclude"))
        k = self.min_kernel
        if isinstance(k, bool) or not isinstance(k, int) or k < 2:
            raise UserError(f"min_kernel must be an int >= 2, got {k!r}")
        if not isinstance(self.batchnorm, bool):
            raise UserError(f"batchnorm must be true or false, got {self.batchnorm!r}")


@dataclass(frozen=True)
class SeparableFactors:
    """depthwise: (C_in, 1, kh, kw); pointwise: (C_out, C_in); discarded_sq: (C_in,) the
    squared Frobenius error of each input channel's rank-1 fit."""

    depthwise: Tensor
    pointwise: Tensor
    discarded_sq: Tensor

    def kernel(self) -> Tensor:
        """The full (C_out, C_in, kh, kw) kernel the pair computes."""
        return self.pointwise[:, :, None, None] * self.depthwise[:, 0][None]


def separable_factors(weight: Tensor) -> SeparableFactors:
    """Best rank-1-per-input-channel fit of a conv kernel ``weight`` (C_out, C_in, kh, kw)."""
    c_out, c_in, kh, kw = weight.shape
    slices = weight.detach().double().permute(1, 0, 2, 3).reshape(c_in, c_out, kh * kw)
    u, s, vh = torch.linalg.svd(slices, full_matrices=False)  # batched over input channels
    root = s[:, :1].sqrt()  # (C_in, 1)
    pointwise = (u[:, :, 0] * root).T  # (C_out, C_in)
    depthwise = (vh[:, 0, :] * root).reshape(c_in, 1, kh, kw)
    discarded = (s[:, 1:] ** 2).sum(1)
    dtype = weight.dtype
    return SeparableFactors(depthwise.to(dtype), pointwise.to(dtype), discarded)


def separable_conv(conv: nn.Conv2d, batchnorm: bool = False) -> tuple[nn.Sequential, float]:
    """(depthwise -> [BatchNorm2d] -> pointwise, relative kernel error ||W - W_hat||/||W||)."""
    g = ConvGeometry.of(conv)
    f = separable_factors(conv.weight)
    dw = nn.Conv2d(g.c_in, g.c_in, (g.kh, g.kw), stride=g.stride, padding=g.padding,
                   dilation=g.dilation, groups=g.c_in, bias=False, padding_mode=conv.padding_mode)
    pw = nn.Conv2d(g.c_in, g.c_out, 1, bias=conv.bias is not None)
    with torch.no_grad():
        dw.weight.copy_(f.depthwise)
        pw.weight.copy_(f.pointwise.reshape(g.c_out, g.c_in, 1, 1))
        if conv.bias is not None:
            pw.bias.copy_(bias_of(conv))
    parts: list[tuple[str, nn.Module]] = [("depthwise", dw)]
    if batchnorm:
        bn = nn.BatchNorm2d(g.c_in)
        with torch.no_grad():  # identity in eval mode: (x - 0) / sqrt(var + eps) = x
            bn.running_var.fill_(1.0 - bn.eps)
        parts.append(("bn", bn))
    parts.append(("pointwise", pw))
    seq = nn.Sequential(OrderedDict(parts)).to(device=conv.weight.device, dtype=conv.weight.dtype)
    norm = conv.weight.detach().double().norm().item()
    err = math.sqrt(f.discarded_sq.sum().item()) / norm if norm > 0 else 0.0
    seq.train(conv.training)
    return seq, err


def _reason(conv: nn.Conv2d, cfg: SeparableConfig) -> str | None:
    if type(conv) is not nn.Conv2d:
        return f"{type(conv).__name__} is a Conv2d subclass (only plain Conv2d)"
    if conv.groups != 1:
        return f"grouped conv (groups={conv.groups})"
    kh, kw = conv.kernel_size
    if max(kh, kw) < cfg.min_kernel:
        return f"kernel {kh}x{kw} is below min_kernel={cfg.min_kernel}"
    if conv.in_channels == 1:
        return "one input channel: depthwise + pointwise cannot save anything"
    return None


def _costs(conv: nn.Conv2d, in_hw, batchnorm: bool) -> tuple[int, int, int | None, int | None]:
    """(params before, after, MACs before, after); MACs None without an input shape."""
    g = ConvGeometry.of(conv)
    bias = 0 if conv.bias is None else g.c_out
    k2 = g.kh * g.kw
    p0 = g.c_out * g.c_in * k2 + bias
    p1 = g.c_in * k2 + g.c_in * g.c_out + bias + (2 * g.c_in if batchnorm else 0)
    if in_hw is None:
        return p0, p1, None, None
    oh, ow = g.out_hw(in_hw)
    return p0, p1, oh * ow * g.c_out * g.c_in * k2, oh * ow * g.c_in * (k2 + g.c_out)


def _select(names: list[str], cfg: SeparableConfig) -> list[str]:
    chosen: set[str] = set()
    for what, globs in (("include", cfg.include), ("exclude", cfg.exclude)):
        for pattern in globs:
            hit = {n for n in names if fnmatch.fnmatchcase(n, pattern)}
            if not hit:
                shown = ", ".join(names[:12]) + (", ..." if len(names) > 12 else "")
                raise UserError(f"{what} glob {pattern!r} matches no Conv2d layer; "
                                f"Conv2d layers: {shown or 'none'}")
            chosen = chosen | hit if what == "include" else chosen - hit
    return [n for n in names if n in chosen]


def separate(model: nn.Module, config: SeparableConfig,
             input_shape: Sequence[int] | None = None) -> LowRankResult:
    """A copy of ``model`` with its eligible convs made depthwise-separable, and one
    `LayerReport` per selected conv (status "decomposed" or "skipped", rank 1 per input
    channel, params/MACs before and after, relative kernel error). ``input_shape`` (C, H, W)
    enables MAC counts. The input model is not modified."""
    if not isinstance(model, nn.Module):
        raise UserError(f"model must be an nn.Module, got {type(model).__name__}")
    if not isinstance(config, SeparableConfig):
        raise UserError(f"config must be a SeparableConfig, got {type(config).__name__}")
    new = copy.deepcopy(model)
    convs = {n: m for n, m in new.named_modules() if n and isinstance(m, nn.Conv2d)}
    order = _select(list(convs), config)
    shapes = input_shapes(new, order, input_shape) if input_shape is not None else {}
    reports = []
    for name in order:
        conv = convs[name]
        shape = shapes.get(name)
        in_hw = None if shape is None else (shape[-2], shape[-1])
        p0, p1, m0, m1 = _costs(conv, in_hw, config.batchnorm)
        base = dict(name=name, kind="Conv2d", params_before=p0, macs_before=m0)
        reason = _reason(conv, config)
        if reason is None and p1 >= p0:
            reason = f"would not reduce params ({p0:,} -> {p1:,})"
        if reason is not None:
            reports.append(LayerReport(status="skipped", params_after=p0, macs_after=m0,
                                       reason=f"separable: {reason}", **base))
            continue
        replacement, err = separable_conv(conv, config.batchnorm)
        new.set_submodule(name, replacement)
        reports.append(LayerReport(status="decomposed", rank=1, params_after=p1, macs_after=m1,
                                   rel_error=err, reason="depthwise + pointwise", **base))
    return LowRankResult(new, tuple(reports))
