"""PACT: parameterized clipping activation with a learned clipping level per layer.

Choi et al., "PACT: Parameterized Clipping Activation for Quantized Neural Networks", 2018.
A ReLU feeding a quantized layer becomes

    y   = clip(x, 0, alpha)                          (Eq. 1)
    y_q = round(y * (2^k - 1) / alpha) * alpha / (2^k - 1)

with the straight-through estimator for ``round``, which gives (Eq. 3)
``d y_q / d x = 1`` for ``0 <= x < alpha`` (else 0) and ``d y_q / d alpha = 1`` for
``x >= alpha`` (else 0). ``alpha`` is L2-regularised (:class:`PACTRegularizer`) and starts
at 10, as in the paper. Weights are quantized with DoReFa (Zhou et al. 2016), as the paper
does: ``w_q = 2 quantize_k(tanh(w) / (2 max|tanh w|) + 1/2) - 1``, times a per-layer fp32
scale ``max|w|`` (our addition, so that networks without BatchNorm such as LeNet keep their
activation scale); the first and last layers keep float weights.

>>> import torch
>>> from torch import nn
>>> net = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 2))
>>> p = prepare_pact(net, bits=4)
>>> type(p[1]).__name__, float(p[1].alpha.detach())
('PACT', 10.0)
"""

from __future__ import annotations

import copy
from dataclasses import dataclass

import torch
import torch.fx as fx
import torch.nn.functional as F
from torch import Tensor, nn

from slimkit.selection import MethodConfig
from slimkit.errors import UserError
from slimkit.train.hooks import Hook

__all__ = ["PACTConfig", "pact_quantize", "PACT", "init_alpha_", "PACTRegularizer", "dorefa_weight", "DoReFaConv2d",
           "DoReFaLinear", "prepare_pact", "relus_feeding_layers"]


class _PACTFn(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x: Tensor, alpha: Tensor, bits: int) -> Tensor:
        ctx.save_for_backward(x, alpha)
        n = 2**bits - 1
        y = torch.minimum(x.clamp_min(0), alpha)
        return torch.round(y * (n / alpha)) * (alpha / n)

    @staticmethod
    def backward(ctx, g: Tensor):
        x, alpha = ctx.saved_tensors
        gx = g * ((x >= 0) & (x < alpha)).to(g.dtype)
        galpha = (g * (x >= alpha).to(g.dtype)).sum().reshape(alpha.shape)
        return gx, galpha, None


def pact_quantize(x: Tensor, alpha: Tensor, bits: int) -> Tensor:
    """``round(clip(x, 0, alpha) * (2^k-1)/alpha) * alpha/(2^k-1)`` with PACT's gradients."""
    return _PACTFn.apply(x, alpha, bits)


def _check_bits(bits: int, what: str, lo: int = 1) -> None:
    if not isinstance(bits, int) or isinstance(bits, bool) or not lo <= bits <= 16:
        raise UserError(f"{what} must be an int in {lo}..16, got {bits!r}")


class PACT(nn.Module):
    """Drop-in ReLU replacement: clipped at a learnable ``alpha`` and quantized to ``bits``."""

    def __init__(self, bits: int = 4, alpha: float = 10.0) -> None:
        super().__init__()
        _check_bits(bits, "bits")
        if alpha <= 0:
            raise UserError(f"alpha must be > 0, got {alpha}")
        self.bits = bits
        self.alpha = nn.Parameter(torch.tensor(float(alpha)))

    def forward(self, x: Tensor) -> Tensor:
        return pact_quantize(x, self.alpha, self.bits)

    def extra_repr(self) -> str:
        return f"bits={self.bits}, alpha={float(self.alpha.detach()):.4g}"


class PACTRegularizer(Hook):
    """Adds ``lam * sum(alpha^2)`` over the PACT modules to the loss (the paper's L2 on alpha;
    use the network's weight decay, e.g. 5e-4, or more)."""

    def __init__(self, lam: float = 5e-4) -> None:
        if lam < 0:
            raise UserError(f"lam must be >= 0, got {lam}")
        self.lam = lam

    def regularizer(self, model: nn.Module) -> Tensor | None:
        alphas = [m.alpha for m in model.modules() if isinstance(m, PACT)]
        if not alphas or self.lam == 0:
            return None
        return self.lam * sum(a.square() for a in alphas)


@torch.no_grad()
def init_alpha_(model: nn.Module, x: Tensor, percentile: float = 99.9) -> dict[str, float]:
    """Set every PACT ``alpha`` to a percentile of its input on the batch ``x`` (in place).

    When fine-tuning a trained network this starts from a clipping level that fits the
    activations instead of the paper's from-scratch value 10. Returns name -> alpha.
    """
    if not 0 < percentile <= 100:
        raise UserError(f"percentile must be in (0, 100], got {percentile}")
    seen: dict[str, float] = {}
    handles = []
    for name, m in model.named_modules():
        if isinstance(m, PACT):
            def grab(mod, inp, name=name):
                v = inp[0].detach().clamp_min(0).reshape(-1).float()
                seen[name] = max(float(torch.quantile(v[:1_000_000], percentile / 100)), 1e-3)
            handles.append(m.register_forward_pre_hook(grab))
    was_training = model.training
    try:
        model.eval()(x)
    finally:
        for h in handles:
            h.remove()
        model.train(was_training)
    for name, a in seen.items():
        model.get_submodule(name).alpha.fill_(a)
    return seen


class _RoundSTE(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x: Tensor) -> Tensor:
        return torch.round(x)

    @staticmethod
    def backward(ctx, g: Tensor) -> Tensor:
        return g


def dorefa_weight(w: Tensor, bits: int, scale: bool = False) -> Tensor:
    """DoReFa-Net k-bit weights in [-1, 1] (straight-through rounding); with ``scale`` the
    codes are multiplied by the layer's ``max|w|`` (a constant, fp32 scale) so that networks
    without BatchNorm keep their activation scale."""
    n = 2**bits - 1
    t = torch.tanh(w)
    t = t / (2 * t.abs().max().clamp_min(1e-12)) + 0.5              # in [0, 1]
    q = 2 * _RoundSTE.apply(t * n) / n - 1
    return q * w.detach().abs().max() if scale else q


class _DoReFa:
    weight: Tensor
    weight_bits: int

    weight_scale: bool = True

    def quantized_weight(self) -> Tensor:
        return dorefa_weight(self.weight, self.weight_bits, self.weight_scale)

    def storage_bytes(self) -> int:
        """Packed ``weight_bits`` codes + one fp32 scale + fp32 bias."""
        bias = 0 if self.bias is None else 4 * self.bias.numel()
        return (self.weight.numel() * self.weight_bits + 7) // 8 + 4 + bias


class DoReFaConv2d(_DoReFa, nn.Conv2d):
    def forward(self, x: Tensor) -> Tensor:
        return self._conv_forward(x, self.quantized_weight(), self.bias)


class DoReFaLinear(_DoReFa, nn.Linear):
    def forward(self, x: Tensor) -> Tensor:
        return F.linear(x, self.quantized_weight(), self.bias)


_PASS = (nn.MaxPool2d, nn.AvgPool2d, nn.AdaptiveAvgPool2d, nn.Flatten, nn.Dropout,
         nn.Identity)
_PASS_FN = {torch.flatten, F.max_pool2d, F.avg_pool2d, F.adaptive_avg_pool2d, F.dropout}
_PASS_METHOD = {"view", "reshape", "flatten", "contiguous"}


def relus_feeding_layers(model: nn.Module) -> list[str]:
    """Names of the nn.ReLU modules whose output reaches a Conv2d/Linear directly or through
    pooling / flatten / dropout (found with torch.fx)."""
    try:
        gm = fx.symbolic_trace(model)
    except Exception as exc:  # fx raises many types
        raise UserError(f"cannot trace {type(model).__name__} with torch.fx: {exc}") from exc
    mods = dict(gm.named_modules())

    def feeds(node: fx.Node) -> bool:
        for user in node.users:
            if user.op == "call_module":
                m = mods[str(user.target)]
                if isinstance(m, (nn.Conv2d, nn.Linear)):
                    return True
                if isinstance(m, _PASS) and feeds(user):
                    return True
            elif ((user.op == "call_function" and user.target in _PASS_FN)
                  or (user.op == "call_method" and user.target in _PASS_METHOD)) and feeds(user):
                return True
        return False

    return [str(n.target) for n in gm.graph.nodes if n.op == "call_module"
            and isinstance(mods[str(n.target)], nn.ReLU) and feeds(n)]


@dataclass(frozen=True)
class PACTConfig(MethodConfig):
    """PACT (Choi et al. 2018): ``bits``-bit activations clipped at a learned ``alpha``
    (initial value ``alpha``, L2 ``alpha_decay``); ``weight_bits`` adds DoReFa weights (Zhou
    et al. 2016) to the selected inner layers (first and last float when ``skip_first_last``);
    epochs / lr: the training run of ``slimkit.compress.quantize``."""

    bits: int = 4
    weight_bits: int | None = None
    alpha: float = 10.0
    alpha_decay: float = 5e-4
    skip_first_last: bool = True
    epochs: int = 1
    lr: float = 0.01

    def __post_init__(self) -> None:
        super().__post_init__()
        _check_bits(self.bits, "bits")
        if self.weight_bits is not None:
            _check_bits(self.weight_bits, "weight_bits", lo=2)
        for name in ("alpha", "lr"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not v > 0:
                raise UserError(f"{name} must be > 0, got {v!r}")
        if not isinstance(self.alpha_decay, (int, float)) or self.alpha_decay < 0:
            raise UserError(f"alpha_decay must be >= 0, got {self.alpha_decay!r}")
        if isinstance(self.epochs, bool) or not isinstance(self.epochs, int) or self.epochs < 0:
            raise UserError(f"epochs must be an int >= 0, got {self.epochs!r}")


def prepare_pact(model: nn.Module, bits: int = 4, *, weight_bits: int | None = None,
                 alpha: float = 10.0, skip_first_last: bool = True,
                 layers: list[str] | None = None) -> nn.Module:
    """A copy of ``model`` whose ReLUs feeding a Conv2d/Linear become :class:`PACT`
    (``bits``-bit activations); with ``weight_bits``, inner Conv2d/Linear layers get DoReFa
    weights (the first and last stay float when ``skip_first_last``; ``layers``, when given,
    narrows them further to those names)."""
    _check_bits(bits, "bits")
    if weight_bits is not None:
        _check_bits(weight_bits, "weight_bits", lo=2)
    out = copy.deepcopy(model)
    for name in relus_feeding_layers(out):
        out.set_submodule(name, PACT(bits, alpha))
    if weight_bits is not None:
        names = [n for n, m in out.named_modules() if type(m) in (nn.Conv2d, nn.Linear)]
        chosen = names[1:-1] if skip_first_last else names
        if layers is not None:
            chosen = [n for n in chosen if n in set(layers)]
        for name in chosen:
            out.set_submodule(name, _dorefa(out.get_submodule(name), weight_bits))
    return out


def _dorefa(layer: nn.Module, bits: int) -> nn.Module:
    if isinstance(layer, nn.Conv2d):
        new: nn.Module = DoReFaConv2d(layer.in_channels, layer.out_channels, layer.kernel_size,
                                      layer.stride, layer.padding, layer.dilation, layer.groups,
                                      layer.bias is not None, layer.padding_mode)
    else:
        new = DoReFaLinear(layer.in_features, layer.out_features, layer.bias is not None)
    new.weight_bits = bits
    new.load_state_dict(layer.state_dict())
    return new


