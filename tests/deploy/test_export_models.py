"""Tiny simulated-quantized models for the deploy tests (built from slimkit.quant.modules)."""

from __future__ import annotations

import torch
from torch import nn

from slimkit.quant.core import QScheme, qparams_from_range
from slimkit.quant.modules import QuantConv2d, QuantLinear

W8 = QScheme(8, symmetric=True, per_channel=True)
A8 = QScheme(8, symmetric=False, signed=True)


class Mish(nn.Module):
    """x * tanh(softplus(x)): an activation with no int8 kernel."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * torch.tanh(nn.functional.softplus(x))


class TinyNet(nn.Module):
    """conv-relu-pool, residual conv pair, global pool, linear: (N, 3, 8, 8) -> (N, 10)."""

    def __init__(self, act: nn.Module | None = None) -> None:
        super().__init__()
        self.c1 = nn.Conv2d(3, 16, 3, padding=1)
        self.c2 = nn.Conv2d(16, 16, 3, padding=1)
        self.c3 = nn.Conv2d(16, 16, 3, padding=1)
        self.act = act if act is not None else nn.ReLU()
        self.fc = nn.Linear(16, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = nn.functional.max_pool2d(torch.relu(self.c1(x)), 2)   # (N, 16, 4, 4)
        y = self.c3(self.act(self.c2(x)))
        x = torch.relu(x + y)
        return self.fc(torch.flatten(nn.functional.adaptive_avg_pool2d(x, 1), 1))


def trained_tiny(act: nn.Module | None = None, steps: int = 30) -> tuple[nn.Module, torch.Tensor]:
    """A TinyNet fitted a little to a seeded 10-class problem; returns (model, data)."""
    g = torch.Generator().manual_seed(0)
    protos = torch.randn(10, 3, 8, 8, generator=g)
    y = torch.arange(256) % 10
    x = protos[y] + 0.7 * torch.randn(256, 3, 8, 8, generator=g)
    m = TinyNet(act)
    opt = torch.optim.Adam(m.parameters(), lr=1e-2)
    for _ in range(steps):
        opt.zero_grad()
        nn.functional.cross_entropy(m(x), y).backward()
        opt.step()
    return m.eval(), x


def quantize_tiny(model: nn.Module, calib: torch.Tensor) -> nn.Module:
    """W8 per-channel / A8 affine min-max simulated quantization of every conv/linear."""
    import copy

    q = copy.deepcopy(model)
    ranges: dict[str, list[float]] = {}
    hooks = []
    for name, mod in q.named_modules():
        if isinstance(mod, (nn.Conv2d, nn.Linear)):
            def rec(m, inp, _out, name=name):
                lo, hi = ranges.setdefault(name, [0.0, 0.0])
                ranges[name] = [min(lo, inp[0].min().item()), max(hi, inp[0].max().item())]
            hooks.append(mod.register_forward_hook(rec))
    with torch.no_grad():
        q(calib)
    for h in hooks:
        h.remove()
    for name, (lo, hi) in ranges.items():
        mod = q.get_submodule(name)
        wrapped = (QuantConv2d if isinstance(mod, nn.Conv2d) else QuantLinear)(mod, W8, A8)
        wrapped.calibrate_weight("minmax")
        wrapped.set_act_qparams(*qparams_from_range(torch.tensor(lo), torch.tensor(hi), A8))
        setattr(q, name, wrapped)
    return q.eval()
