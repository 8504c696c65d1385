"""Binary and ternary weights trained with a straight-through estimator.

- ``binaryconnect``: Courbariaux, Bengio & David, "BinaryConnect: Training Deep Neural
  Networks with binary weights during propagations", NeurIPS 2015. ``w_b = sign(w)``; the
  gradient passes straight through where ``|w| <= 1`` (hard-tanh STE, as in BinaryNet) and
  the real-valued weights are clipped to [-1, 1] after each update (:class:`ClipLatent`).
- ``xnor``: Rastegari et al., "XNOR-Net", ECCV 2016 (its binary-weight network). ``w_b =
  alpha_c * sign(w)`` with ``alpha_c = mean |w|`` over each output channel ``c``; autograd
  through ``alpha`` gives the paper's gradient ``(1/n + alpha * 1_{|w|<=1}) * g``.
- ``ternary``: Li & Liu, "Ternary Weight Networks", 2016. ``delta = 0.7 * mean |w|``,
  ``w_t = alpha * {-1, 0, +1}`` with ``alpha`` the mean ``|w|`` over ``|w| > delta``
  (per layer, as in the paper); identity STE to the real-valued weights.

>>> import torch
>>> from torch import nn
>>> net = nn.Sequential(nn.Linear(8, 16), nn.ReLU(), nn.Linear(16, 16), nn.ReLU(),
...                     nn.Linear(16, 2))
>>> b = prepare_binary(net, mode="xnor")          # the first and last layers stay float
>>> type(b[2]).__name__, b[2].quantized_weight().abs().unique().numel() <= 16
('BinaryLinear', True)
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Callable

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from slimkit._registry import Registry
from slimkit.selection import MethodConfig
from slimkit.errors import UserError
from slimkit.train.hooks import Hook

__all__ = ["WEIGHT_QUANTIZERS", "sign_ste", "binaryconnect", "xnor", "ternary",
           "ternary_threshold", "BinaryConfig", "BinaryLinear", "BinaryConv2d",
           "prepare_binary", "ClipLatent"]

WeightQuantizer = Callable[[Tensor], Tensor]
WEIGHT_QUANTIZERS: Registry[WeightQuantizer] = Registry("binary weight quantizer")
# storage bits per weight of each mode (ternary: 2-bit codes)
MODE_BITS = {"binaryconnect": 1, "xnor": 1, "ternary": 2}


class _SignSTE(torch.autograd.Function):
    """sign with ``sign(0) = +1``; backward passes the gradient where ``|w| <= 1``."""

    @staticmethod
    def forward(ctx, w: Tensor) -> Tensor:
        ctx.save_for_backward(w)
        return torch.where(w >= 0, torch.ones_like(w), -torch.ones_like(w))

    @staticmethod
    def backward(ctx, g: Tensor) -> Tensor:
        (w,) = ctx.saved_tensors
        return g * (w.abs() <= 1).to(g.dtype)


def sign_ste(w: Tensor) -> Tensor:
    """±1 with a hard-tanh straight-through gradient."""
    return _SignSTE.apply(w)


@WEIGHT_QUANTIZERS.register("binaryconnect")
def binaryconnect(w: Tensor) -> Tensor:
    """Deterministic BinaryConnect: ``sign(w)``."""
    return sign_ste(w)


@WEIGHT_QUANTIZERS.register("xnor")
def xnor(w: Tensor) -> Tensor:
    """``alpha_c * sign(w)`` with ``alpha_c = mean |w|`` per output channel (dim 0)."""
    alpha = w.abs().flatten(1).mean(1).reshape(-1, *([1] * (w.dim() - 1)))   # (C_out, 1, ..)
    return alpha * sign_ste(w)


def ternary_threshold(w: Tensor) -> tuple[Tensor, Tensor]:
    """TWN's approximate optimum: ``(delta, alpha)`` with ``delta = 0.7 * mean|w|``."""
    a = w.detach().abs()
    delta = 0.7 * a.mean()
    keep = a > delta
    alpha = a[keep].mean() if keep.any() else a.new_zeros(())
    return delta, alpha


@WEIGHT_QUANTIZERS.register("ternary")
def ternary(w: Tensor) -> Tensor:
    """``alpha * t`` with ``t = sign(w) * 1_{|w| > delta}``; identity STE."""
    delta, alpha = ternary_threshold(w)
    t = torch.sign(w.detach()) * (w.detach().abs() > delta)
    return w + (alpha * t - w).detach()


@dataclass(frozen=True)
class BinaryConfig(MethodConfig):
    """mode: a key of :data:`WEIGHT_QUANTIZERS` (binaryconnect: Courbariaux et al. 2015,
    xnor: Rastegari et al. 2016, ternary: Li et al. 2016 TWN); skip_first_last keeps the first
    and last weight layers in float (as those papers do); epochs / lr / clip: the training run
    of ``slimkit.compress.quantize`` (clip: BinaryConnect's latent-weight bound)."""

    mode: str = "binaryconnect"
    skip_first_last: bool = True
    epochs: int = 1
    lr: float = 0.01
    clip: float = 1.0

    def __post_init__(self) -> None:
        super().__post_init__()
        if isinstance(self.epochs, bool) or not isinstance(self.epochs, int) or self.epochs < 0:
            raise UserError(f"epochs must be an int >= 0, got {self.epochs!r}")
        for name in ("lr", "clip"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not v > 0:
                raise UserError(f"{name} must be > 0, got {v!r}")
        if self.mode not in WEIGHT_QUANTIZERS:
            raise UserError(f"unknown binary mode {self.mode!r}; known: "
                            f"{', '.join(WEIGHT_QUANTIZERS.names())}")


class _BinaryWeight:
    """Mixin: real-valued latent ``weight``; the forward pass uses the quantized one."""

    mode: str
    weight: Tensor
    bias: Tensor | None

    def quantized_weight(self) -> Tensor:
        return WEIGHT_QUANTIZERS.get(self.mode)(self.weight)

    def storage_bytes(self) -> int:
        """Packed 1-bit (binary) or 2-bit (ternary) codes + fp32 scales + fp32 bias."""
        n = self.weight.numel()
        scales = {"binaryconnect": 0, "xnor": self.weight.shape[0], "ternary": 1}[self.mode]
        bias = 0 if self.bias is None else self.bias.numel()
        return (n * MODE_BITS[self.mode] + 7) // 8 + 4 * (scales + bias)


class BinaryLinear(_BinaryWeight, nn.Linear):
    def forward(self, x: Tensor) -> Tensor:
        return F.linear(x, self.quantized_weight(), self.bias)


class BinaryConv2d(_BinaryWeight, nn.Conv2d):
    def forward(self, x: Tensor) -> Tensor:
        return self._conv_forward(x, self.quantized_weight(), self.bias)


def _convert(layer: nn.Module, mode: str) -> nn.Module:
    if isinstance(layer, nn.Conv2d):
        new = BinaryConv2d(layer.in_channels, layer.out_channels, layer.kernel_size,
                           layer.stride, layer.padding, layer.dilation, layer.groups,
                           layer.bias is not None, layer.padding_mode)
    else:
        new = BinaryLinear(layer.in_features, layer.out_features, layer.bias is not None)
    new.mode = mode
    new.load_state_dict(layer.state_dict())
    return new


def prepare_binary(model: nn.Module, mode: str = "binaryconnect", *,
                   skip_first_last: bool = True, layers: list[str] | None = None) -> nn.Module:
    """A copy of ``model`` whose Conv2d/Linear layers train with binary/ternary weights."""
    cfg = BinaryConfig(mode=mode, skip_first_last=skip_first_last)
    out = copy.deepcopy(model)
    names = [n for n, m in out.named_modules() if type(m) in (nn.Conv2d, nn.Linear)]
    if cfg.skip_first_last:
        names = names[1:-1]
    if layers is not None:
        names = [n for n in names if n in set(layers)]
    for name in names:
        out.set_submodule(name, _convert(out.get_submodule(name), cfg.mode))
    return out


class ClipLatent(Hook):
    """BinaryConnect's weight clipping: latent weights of ``binaryconnect``/``xnor`` layers
    are clipped to ``[-bound, bound]`` after every optimizer step."""

    def __init__(self, bound: float = 1.0) -> None:
        if bound <= 0:
            raise UserError(f"bound must be > 0, got {bound}")
        self.bound = bound

    @torch.no_grad()
    def on_step_end(self, model: nn.Module, step: int) -> None:
        for m in model.modules():
            if isinstance(m, _BinaryWeight) and m.mode != "ternary":
                m.weight.clamp_(-self.bound, self.bound)
