"""Data-free quantization (Nagel, van Baalen, Blankevoort, Welling 2019, "Data-Free
Quantization Through Weight Equalization and Bias Correction").

* `equalize_(model)`: cross-layer equalization. For consecutive layers conv1 -> ReLU ->
  conv2 (ReLU is positively homogeneous: relu(x / s) = relu(x) / s), channel i of conv1's
  output is divided by s_i and conv2's input channel i multiplied by it, with
  s_i = sqrt(r1_i * r2_i) / r2_i (r1_i: max |W1| of output channel i, r2_i: max |W2| of
  input channel i), so both ranges become sqrt(r1_i r2_i). Iterated over all pairs until
  the scales settle. The float function is unchanged.
* `analytic_bias_correct_(qmodel, float_model)`: data-free bias correction. The expected
  input of a layer that follows BN (+ ReLU / ReLU6) is known from the BN's beta, gamma:
  E[clip(N(beta, gamma^2), lo, hi)]; the weight error eps = W_q - W then shifts the output
  mean by eps @ E[x], which is subtracted from the bias.
* `absorb_biases_(folded, float_model)`: high-bias absorption. For conv1 -> ReLU -> conv2
  with BN statistics (beta_i, gamma_i) on conv1's output, c_i = max(0, beta_i - 3 gamma_i)
  is moved out of conv1's bias into conv2's (b2 += W2 c), which is exact wherever the
  pre-activation stays above c_i (and away from conv2's zero padding) and narrows the
  activation range to quantize.
* Empirical bias correction from calibration data lives in `slimkit.quant.ptq.bias_correct_`.

>>> net = nn.Sequential(nn.Conv2d(3, 8, 3), nn.ReLU(), nn.Conv2d(8, 4, 3)).eval()
>>> scales = equalize_(net)
>>> sorted(scales)
['0']

ReLU6 is not scale-equivariant; like the paper, run `replace_relu6(model)` first to
equalize across it (which changes the float function where activations exceed 6).
"""

from __future__ import annotations

import copy
import math

import torch
import torch.fx as fx
import torch.nn.functional as F
from torch import Tensor, nn

from slimkit.quant.fold import find_conv_bn_pairs, trace
from slimkit.quant.modules import QuantMixin

__all__ = [
    "equalize_",
    "equalization_pairs",
    "replace_relu6",
    "input_expectations",
    "clipped_normal_mean",
    "analytic_bias_correct_",
    "absorb_biases_",
]

_PASS_MODULES = (nn.Identity, nn.Dropout)
_RELU_FUNCS = (torch.relu, F.relu, torch.nn.functional.relu)


def _is_pass(node: fx.Node, mods: dict[str, nn.Module]) -> bool:
    return node.op == "call_module" and isinstance(mods.get(node.target), _PASS_MODULES)


def _activation(node: fx.Node, mods: dict[str, nn.Module]) -> tuple[float, float] | None:
    """(lo, hi) clip of a ReLU-like node, or None if `node` is not one."""
    if node.op == "call_module":
        m = mods.get(node.target)
        if isinstance(m, nn.ReLU6):
            return (0.0, 6.0)
        if isinstance(m, nn.ReLU):
            return (0.0, math.inf)
    if node.op == "call_function" and node.target in _RELU_FUNCS:
        return (0.0, math.inf)
    if node.op == "call_method" and node.target == "relu":
        return (0.0, math.inf)
    return None


def _depthwise(conv: nn.Module) -> bool:
    return isinstance(conv, nn.Conv2d) and conv.groups == conv.in_channels == conv.out_channels


def equalization_pairs(model: nn.Module) -> list[tuple[str, str]]:
    """(conv1, conv2) fqns: conv1's output reaches only conv2, through nothing or one ReLU
    (and Identity / Dropout modules). conv2 must be dense (groups=1) or depthwise."""
    gm = trace(model)
    mods = dict(gm.named_modules())
    pairs = []
    for node in gm.graph.nodes:
        if node.op != "call_module" or not isinstance(mods.get(node.target), nn.Conv2d):
            continue
        cur, relu_seen = node, False
        while len(cur.users) == 1:
            nxt = next(iter(cur.users))
            if _is_pass(nxt, mods):
                cur = nxt
                continue
            act = _activation(nxt, mods)
            if act is not None and act == (0.0, math.inf) and not relu_seen:
                cur, relu_seen = nxt, True
                continue
            if (
                nxt.op == "call_module"
                and isinstance(mods.get(nxt.target), nn.Conv2d)
                and nxt.args[0] is cur
            ):
                c2 = mods[nxt.target]
                if c2.groups == 1 or _depthwise(c2):
                    pairs.append((str(node.target), str(nxt.target)))
            break
    return pairs


@torch.no_grad()
def _equalize_pair(c1: nn.Conv2d, c2: nn.Conv2d) -> Tensor:
    r1 = c1.weight.abs().flatten(1).amax(1)  # (C,) per output channel of conv1
    if _depthwise(c2):
        r2 = c2.weight.abs().flatten(1).amax(1)
    else:
        r2 = c2.weight.abs().transpose(0, 1).flatten(1).amax(1)  # per input channel of conv2
    s = torch.where((r1 > 0) & (r2 > 0), torch.sqrt(r1 * r2) / r2, torch.ones_like(r1))
    c1.weight.div_(s.reshape(-1, 1, 1, 1))
    if c1.bias is not None:
        c1.bias.div_(s)
    if _depthwise(c2):
        c2.weight.mul_(s.reshape(-1, 1, 1, 1))
    else:
        c2.weight.mul_(s.reshape(1, -1, 1, 1))
    return s


def equalize_(model: nn.Module, iterations: int = 50, tol: float = 1e-4) -> dict[str, Tensor]:
    """Cross-layer equalization in place (fold BN first). Returns, per conv1 fqn, the total
    scale s its output channels were divided by."""
    if iterations < 1:
        raise ValueError(f"iterations must be >= 1, got {iterations}")
    pairs = equalization_pairs(model)
    total: dict[str, Tensor] = {}
    for _ in range(iterations):
        change = 0.0
        for n1, n2 in pairs:
            s = _equalize_pair(model.get_submodule(n1), model.get_submodule(n2))
            total[n1] = total.get(n1, torch.ones_like(s)) * s
            change = max(change, float((s - 1).abs().max()))
        if change < tol:
            break
    return total


def replace_relu6(model: nn.Module) -> nn.Module:
    """New model with every nn.ReLU6 replaced by nn.ReLU (as done in the DFQ paper)."""
    out = copy.deepcopy(model)
    for name, mod in list(out.named_modules()):
        for cname, child in list(mod.named_children()):
            if isinstance(child, nn.ReLU6):
                setattr(mod, cname, nn.ReLU())
    return out


def clipped_normal_mean(mu: Tensor, sigma: Tensor, lo: float, hi: float) -> Tensor:
    """E[clip(X, lo, hi)] for X ~ N(mu, sigma^2), elementwise (lo / hi may be infinite)."""
    mu, sigma = mu.double(), sigma.double().abs().clamp_min(1e-12)
    a, b = (lo - mu) / sigma, (hi - mu) / sigma
    pdf = lambda t: torch.exp(-0.5 * t**2) / math.sqrt(2 * math.pi)  # noqa: E731
    cdf = torch.special.ndtr
    out = mu * (cdf(b) - cdf(a)) + sigma * (pdf(a) - pdf(b))
    if math.isfinite(lo):
        out = out + lo * cdf(a)
    if math.isfinite(hi):
        out = out + hi * (1 - cdf(b))
    return out.float()


def input_expectations(model: nn.Module) -> dict[str, tuple[Tensor, str | None]]:
    """For each conv / linear whose input comes from a BN (optionally through a ReLU/ReLU6,
    pooling, mean, flatten, Identity or Dropout;
    means are taken over the spatial dims, which keep the per-channel expectation), E[input] per
    channel and the fqn of the layer
    feeding that BN (None if none). Uses the unfolded float model's BN parameters."""
    gm = trace(model)
    mods = dict(gm.named_modules())
    out: dict[str, tuple[Tensor, str | None]] = {}
    for node in gm.graph.nodes:
        if node.op != "call_module" or not isinstance(
            mods.get(node.target), (nn.Conv2d, nn.Linear)
        ):
            continue
        src, clip = node.args[0], (-math.inf, math.inf)
        while isinstance(src, fx.Node):
            m = mods.get(src.target) if src.op == "call_module" else None
            if (
                _is_pass(src, mods)
                or isinstance(m, (nn.AdaptiveAvgPool2d, nn.AvgPool2d))
                or (src.op == "call_function" and src.target in (torch.flatten, torch.mean))
                or (src.op == "call_method" and src.target in ("flatten", "mean"))
            ):
                src = src.args[0]
                continue
            act = _activation(src, mods)
            if act is not None and clip == (-math.inf, math.inf):
                clip, src = act, src.args[0]
                continue
            break
        if not (
            isinstance(src, fx.Node)
            and src.op == "call_module"
            and isinstance(mods.get(src.target), (nn.BatchNorm2d, nn.BatchNorm1d))
        ):
            continue
        bn = mods[src.target]
        gamma = bn.weight.detach() if bn.weight is not None else torch.ones(bn.num_features)
        beta = bn.bias.detach() if bn.bias is not None else torch.zeros(bn.num_features)
        prod = src.args[0]
        producer = (
            str(prod.target) if isinstance(prod, fx.Node) and prod.op == "call_module" else None
        )
        out[str(node.target)] = (clipped_normal_mean(beta, gamma, *clip), producer)
    return out


@torch.no_grad()
def analytic_bias_correct_(
    qmodel: nn.Module, float_model: nn.Module, scales: dict[str, Tensor] | None = None
) -> nn.Module:
    """Data-free bias correction of a quantized model built from `float_model` (same fqns).

    `scales`: per-conv equalization scales from `equalize_` (inputs fed by an equalized
    layer are divided by them). Layers whose input statistics are unknown are left alone.
    """
    stats = input_expectations(float_model)
    scales = scales or {}
    for name, layer in qmodel.named_modules():
        if not isinstance(layer, QuantMixin) or name not in stats:
            continue
        ex, producer = stats[name]
        if producer in scales:
            ex = ex / scales[producer]
        eps = layer.quant_weight().detach() - layer.weight.detach()
        if isinstance(layer, nn.Conv2d):
            if ex.numel() != layer.in_channels:
                continue
            shift = F.conv2d(
                ex.reshape(1, -1, 1, 1), eps.sum((2, 3), keepdim=True), groups=layer.groups
            )
            shift = shift.reshape(-1)
        else:
            if ex.numel() != layer.in_features:
                continue
            shift = eps @ ex
        if layer.bias is None:
            layer.bias = nn.Parameter(torch.zeros(layer.weight.shape[0]))
        layer.bias.sub_(shift)
    return qmodel


@torch.no_grad()
def absorb_biases_(
    folded: nn.Module,
    float_model: nn.Module,
    scales: dict[str, Tensor] | None = None,
    n_sigma: float = 3.0,
) -> dict[str, Tensor]:
    """High-bias absorption in place on a BN-folded (and possibly equalized) copy of
    `float_model`; returns the absorbed c per conv1 fqn. `scales` from `equalize_`."""
    bns = dict(find_conv_bn_pairs(float_model))
    scales = scales or {}
    absorbed: dict[str, Tensor] = {}
    for n1, n2 in equalization_pairs(folded):
        if n1 not in bns:
            continue
        bn = float_model.get_submodule(bns[n1])
        if bn.weight is None or bn.bias is None:
            continue
        gamma, beta = bn.weight.detach().abs(), bn.bias.detach()
        s = scales.get(n1, torch.ones_like(beta))
        c = torch.clamp(beta / s - n_sigma * gamma / s, min=0.0)
        if not bool((c > 0).any()):
            continue
        c1, c2 = folded.get_submodule(n1), folded.get_submodule(n2)
        if c1.bias is None:
            continue
        if c2.bias is None:
            c2.bias = nn.Parameter(torch.zeros(c2.out_channels))
        c1.bias.sub_(c)
        if _depthwise(c2):
            c2.bias.add_(c2.weight.sum((1, 2, 3)) * c)
        else:
            c2.bias.add_(c2.weight.sum((2, 3)) @ c)
        absorbed[n1] = c
    return absorbed
