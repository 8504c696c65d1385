"""Incremental Network Quantization: powers-of-two weights, a growing frozen portion at a time.

Zhou, Yao, Guo, Xu & Chen, "Incremental Network Quantization: Towards Lossless CNNs with
Low-Precision Weights", ICLR 2017. For a layer with ``s = max|W|`` and bit width ``b``
the allowed values are ``P = {±2^n2, ..., ±2^n1, 0}`` with

    n1 = floor(log2(4 s / 3)),    n2 = n1 + 1 - 2^(b-1) / 2          (Eq. 2-3)

(one bit for zero, ``b-1`` bits for ``2^(b-1)/2`` magnitudes and a sign). A weight becomes
``beta * sgn(w)`` when ``(alpha + beta) / 2 <= |w| < 3 beta / 2`` for adjacent ``alpha <
beta`` in ``P`` (Eq. 4), i.e. its nearest value in ``P``. Training proceeds in steps: at
each accumulated portion (e.g. 50%, 75%, 87.5%, 100%) the largest-magnitude weights not yet
quantized are quantized and frozen, and the rest are retrained to compensate.

>>> import torch
>>> from torch import nn
>>> net = nn.Sequential(nn.Linear(8, 4))
>>> model, inq = prepare_inq(net, INQConfig(bits=5))
>>> inq.advance(model)                    # quantize + freeze the first 50%
0.5
>>> # fit(model, loader, epochs=1, hooks=[inq]); inq.advance(model); ... until 1.0
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from slimkit.selection import MethodConfig
from slimkit.errors import UserError
from slimkit.train.hooks import Hook

__all__ = ["INQConfig", "power_levels", "quantize_pow2", "INQ", "prepare_inq"]


@dataclass(frozen=True)
class INQConfig(MethodConfig):
    """bits: 2..8 per weight (including the zero code); portions: increasing accumulated
    fractions of each layer's weights quantized at each step, ending at 1.0; epochs_per_step
    / lr: retraining after each portion in ``slimkit.compress.quantize``."""

    bits: int = 5
    portions: tuple[float, ...] = (0.5, 0.75, 0.875, 1.0)
    epochs_per_step: int = 1
    lr: float = 0.001

    def __post_init__(self) -> None:
        super().__post_init__()
        object.__setattr__(self, "portions", tuple(self.portions))
        e = self.epochs_per_step
        if isinstance(e, bool) or not isinstance(e, int) or e < 0:
            raise UserError(f"epochs_per_step must be an int >= 0, got {e!r}")
        if not isinstance(self.lr, (int, float)) or not self.lr > 0:
            raise UserError(f"lr must be > 0, got {self.lr!r}")
        if not isinstance(self.bits, int) or isinstance(self.bits, bool) or \
                not 2 <= self.bits <= 8:
            raise UserError(f"bits must be an int in 2..8, got {self.bits!r}")
        p = tuple(self.portions)
        if not p or any(not 0 < a <= 1 for a in p) or any(b <= a for a, b in zip(p, p[1:])) \
                or p[-1] != 1.0:
            raise UserError(f"portions must increase within (0, 1] and end at 1.0, got {p}")


def power_levels(s: float, bits: int) -> tuple[int, int]:
    """``(n1, n2)``: the largest and smallest exponents for a layer with ``max|W| = s``."""
    if s <= 0:
        raise UserError("cannot quantize an all-zero layer to powers of two")
    n1 = math.floor(math.log2(4 * s / 3))
    n2 = n1 + 1 - 2 ** (bits - 1) // 2
    return n1, n2


def quantize_pow2(w: Tensor, n1: int, n2: int) -> Tensor:
    """Each weight to its nearest value in ``{0, ±2^n2, ..., ±2^n1}`` (INQ's Eq. 4)."""
    mags = torch.tensor([0.0] + [2.0**e for e in range(n2, n1 + 1)], dtype=w.dtype)
    bounds = (mags[1:] + mags[:-1]) / 2                       # (alpha + beta) / 2
    idx = torch.bucketize(w.abs(), bounds, right=True)         # >= bound goes up
    return torch.sign(w) * mags[idx]


class INQ(Hook):
    """The INQ schedule: :meth:`advance` quantizes the next portion; as a training hook it
    zeroes the gradient of frozen weights and restores their values after each step (so
    momentum and weight decay cannot move them)."""

    def __init__(self, model: nn.Module, config: INQConfig,
                 layers: list[str] | None = None) -> None:
        self.config = config
        self.names = None if layers is None else list(layers)
        self.step_index = 0
        self.levels: dict[str, tuple[int, int]] = {}
        self.masks: dict[str, Tensor] = {}
        self.values: dict[str, Tensor] = {}
        for name, m in _layers(model, self.names).items():
            w = m.weight.detach()
            self.levels[name] = power_levels(float(w.abs().max()), config.bits)
            self.masks[name] = torch.zeros_like(w, dtype=torch.bool)
            self.values[name] = torch.zeros_like(w)

    @property
    def portion(self) -> float:
        """Fraction of each layer's weights quantized so far."""
        return 0.0 if self.step_index == 0 else self.config.portions[self.step_index - 1]

    @torch.no_grad()
    def advance(self, model: nn.Module) -> float:
        """Quantize and freeze the next portion of every layer; returns the new portion."""
        if self.step_index >= len(self.config.portions):
            raise UserError("INQ already quantized all weights")
        target = self.config.portions[self.step_index]
        for name, m in _layers(model, self.names).items():
            mask = self.masks[name]
            w = m.weight.detach()
            n_new = round(target * w.numel()) - int(mask.sum())
            if n_new > 0:
                score = w.abs().masked_fill(mask, -1.0).reshape(-1)   # frozen ones last
                pick = score.topk(n_new).indices
                mask.view(-1)[pick] = True
            n1, n2 = self.levels[name]
            self.values[name] = torch.where(mask, quantize_pow2(w, n1, n2), 0.0)
            m.weight.copy_(torch.where(mask, self.values[name], w))
        self.step_index += 1
        return target

    @torch.no_grad()
    def on_after_backward(self, model: nn.Module) -> None:
        for name, m in _layers(model, self.names).items():
            if m.weight.grad is not None:
                m.weight.grad.masked_fill_(self.masks[name], 0.0)

    @torch.no_grad()
    def on_step_end(self, model: nn.Module, step: int) -> None:
        for name, m in _layers(model, self.names).items():
            m.weight.copy_(torch.where(self.masks[name], self.values[name], m.weight))

    def storage_bytes(self, model: nn.Module) -> int:
        """``bits`` per quantized weight + fp32 for the rest and for biases."""
        total = 0
        for name, m in _layers(model, self.names).items():
            q = int(self.masks[name].sum())
            total += (q * self.config.bits + 7) // 8 + 4 * (m.weight.numel() - q)
            total += 0 if m.bias is None else 4 * m.bias.numel()
        return total


def _layers(model: nn.Module, names: list[str] | None = None) -> dict[str, nn.Module]:
    return {n: m for n, m in model.named_modules() if isinstance(m, (nn.Conv2d, nn.Linear))
            and (names is None or n in names)}


def prepare_inq(model: nn.Module, config: INQConfig | None = None,
                layers: list[str] | None = None) -> tuple[nn.Module, INQ]:
    """A copy of ``model`` and its :class:`INQ` schedule (levels from the copy's weights)."""
    out = copy.deepcopy(model)
    return out, INQ(out, config or INQConfig(), layers)
