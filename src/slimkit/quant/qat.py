"""Quantization-aware training with simulated integer arithmetic.

Jacob et al., "Quantization and Training of Neural Networks for Efficient Integer-Arithmetic-
Only Inference", CVPR 2018 (Section 3). Every Conv2d/Linear computes
``op(fq(x), fq(W)) + b`` in float, where ``fq`` rounds onto the integer grid and back; the
backward pass is float with a straight-through estimator (gradient passed inside the
clipping range, zero outside). Weight ranges follow the current weights (min/max, per tensor
or per output channel); input-activation ranges are an exponential moving average of the
per-batch min/max during training, as in the paper.

BatchNorm is folded into its conv *before* training (:func:`slimkit.quant.fold.fold_bn`):
the network is fine-tuned without BN, so what is trained is exactly what is deployed. This
is the simplest correct option for fine-tuning a trained model with a small learning rate;
the paper's alternative (keep BN statistics during training, fold at convert) is not done.
``QATConfig(fold=False)`` keeps each BatchNorm as a float layer after its quantized conv (not
integer-only at deployment, but it keeps BN's normalisation while training). In
benchmarks/quant_training.py, fine-tuning a folded CIFAR ResNet-20 at lr 0.01 lost accuracy
within a few steps while ``fold=False`` did not; use it (or a smaller rate) for such nets.

>>> import torch
>>> from torch import nn
>>> net = nn.Sequential(nn.Conv2d(1, 4, 3), nn.BatchNorm2d(4), nn.ReLU(), nn.Flatten(),
...                     nn.Linear(4 * 6 * 6, 3)).eval()
>>> qat = prepare_qat(net, QATConfig(weight_bits=4, act_bits=8))
>>> _ = qat.train()(torch.randn(8, 1, 8, 8))        # fit(qat, loader, epochs=1) in practice
>>> final = convert(qat)                            # ranges frozen, model.qspec filled
>>> sorted(final.qspec)
['0', '4']
"""

from __future__ import annotations

import copy
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from slimkit.selection import MethodConfig
from slimkit.errors import UserError
from slimkit.quant.core import QScheme
from slimkit.quant.fold import fold_bn
from slimkit.quant.modules import QuantConv2d, QuantLinear, QuantMixin
from slimkit.quant.observers import OBSERVERS

__all__ = ["QATConfig", "QATConv2d", "QATLinear", "prepare_qat", "convert", "qat_layers"]


@dataclass(frozen=True)
class QATConfig(MethodConfig):
    """weight_bits 2..16 (symmetric signed), act_bits 2..16 (affine unsigned, or None for
    weight-only), per_channel weight scales, observer: the activation range observer used
    during training (a key of ``OBSERVERS``; ``ema_minmax`` as in the paper),
    ema: its averaging constant, fold: fold BatchNorm before training; epochs / lr: the
    fine-tuning run of ``slimkit.compress.quantize`` (epochs=0: ranges from a few batches)."""

    weight_bits: int = 8
    act_bits: int | None = 8
    per_channel: bool = True
    observer: str = "ema_minmax"
    ema: float = 0.01
    fold: bool = True
    epochs: int = 1
    lr: float = 0.001

    def __post_init__(self) -> None:
        super().__post_init__()
        if isinstance(self.epochs, bool) or not isinstance(self.epochs, int) or self.epochs < 0:
            raise UserError(f"epochs must be an int >= 0, got {self.epochs!r}")
        if not isinstance(self.lr, (int, float)) or not self.lr > 0:
            raise UserError(f"lr must be > 0, got {self.lr!r}")
        for name, b in (("weight_bits", self.weight_bits), ("act_bits", self.act_bits)):
            if b is None and name == "act_bits":
                continue
            if not isinstance(b, int) or isinstance(b, bool) or not 2 <= b <= 16:
                raise UserError(f"{name} must be an int in 2..16, got {b!r} (use "
                                "slimkit.quant.binary for 1-bit weights)")
        if self.observer not in OBSERVERS:
            raise UserError(f"unknown observer {self.observer!r}; known: "
                            f"{', '.join(OBSERVERS.names())}")
        if not 0 < self.ema <= 1:
            raise UserError(f"ema must be in (0, 1], got {self.ema}")

    def weight_scheme(self) -> QScheme:
        return QScheme(bits=self.weight_bits, symmetric=True, per_channel=self.per_channel,
                       signed=True)

    def act_scheme(self) -> QScheme | None:
        if self.act_bits is None:
            return None
        return QScheme(bits=self.act_bits, symmetric=False, per_channel=False, signed=False)


class _QATMixin(QuantMixin):
    """Weight ranges follow the current weights on every forward; activation ranges are
    updated (EMA) on training forwards only."""

    def _init_qat(self, cfg: QATConfig) -> None:
        self.frozen = False
        kwargs = {"averaging_constant": cfg.ema} if cfg.observer == "ema_minmax" else {}
        self.act_observer_train = (None if self.act_scheme is None
                                   else OBSERVERS.get(cfg.observer)(self.act_scheme, **kwargs))
        self.calibrate_weight("minmax")

    def _update_ranges(self, x: Tensor) -> None:
        if self.frozen:
            return
        self.calibrate_weight("minmax")              # weights: always their current range
        if self.training and self.act_observer_train is not None:
            self.act_observer_train.update(x.detach())
            self.set_act_qparams(*self.act_observer_train.qparams())


class QATConv2d(_QATMixin, QuantConv2d):
    def __init__(self, conv: nn.Conv2d, cfg: QATConfig) -> None:
        super().__init__(conv, cfg.weight_scheme(), cfg.act_scheme())
        self._init_qat(cfg)

    def forward(self, x: Tensor) -> Tensor:
        self._update_ranges(x)
        return super().forward(x)


class QATLinear(_QATMixin, QuantLinear):
    def __init__(self, linear: nn.Linear, cfg: QATConfig) -> None:
        super().__init__(linear, cfg.weight_scheme(), cfg.act_scheme())
        self._init_qat(cfg)

    def forward(self, x: Tensor) -> Tensor:
        self._update_ranges(x)
        return super().forward(x)


def prepare_qat(model: nn.Module, config: QATConfig | None = None, *,
                skip: tuple[str, ...] = ()) -> nn.Module:
    """A copy of ``model`` (BN folded) whose Conv2d/Linear layers train fake-quantized.

    ``skip`` lists layer names kept in float; a name that is not a Conv2d/Linear raises.
    The model is returned in training mode; train it with ``slimkit.train.fit``.
    """
    cfg = config or QATConfig()
    out = fold_bn(model.eval()) if cfg.fold else copy.deepcopy(model)
    targets = [n for n, m in out.named_modules() if type(m) in (nn.Conv2d, nn.Linear)]
    unknown = set(skip) - set(targets)
    if unknown:
        raise UserError(f"skip names no Conv2d/Linear layer: {sorted(unknown)}")
    for name in targets:
        if name in skip:
            continue
        layer = out.get_submodule(name)
        cls = QATConv2d if isinstance(layer, nn.Conv2d) else QATLinear
        out.set_submodule(name, cls(layer, cfg))
    return out.train()


def qat_layers(model: nn.Module) -> dict[str, _QATMixin]:
    return {n: m for n, m in model.named_modules() if isinstance(m, _QATMixin)}


@torch.no_grad()
def convert(model: nn.Module) -> nn.Module:
    """Freeze the learned ranges: a copy in eval mode whose QAT layers become plain
    :class:`QuantConv2d`/:class:`QuantLinear` (same buffers), with ``model.qspec`` set."""
    layers = qat_layers(model)
    if not layers:
        raise UserError("convert() needs a model from prepare_qat (no QAT layers found)")
    out = copy.deepcopy(model).eval()
    qspec = {}
    for name, m in qat_layers(out).items():
        base = QuantConv2d if isinstance(m, nn.Conv2d) else QuantLinear
        plain = base(m, m.weight_scheme, m.act_scheme)
        plain.calibrate_weight("minmax")          # weights final: ranges of the final weights
        plain.act_scale.copy_(m.act_scale)
        plain.act_zp.copy_(m.act_zp)
        plain.eval()
        out.set_submodule(name, plain)
        qspec[name] = plain.qspec_entry()
    out.qspec = qspec
    return out
