"""HAWQ-style weight bits from Hessian traces (Dong et al., HAWQ-V2, NeurIPS 2020).

A layer's sensitivity to quantizing its weights W to b bits is estimated by the second-order
perturbation ``Omega(b) = Tr(H) / n * ||Q_b(W) - W||^2``, where ``Tr(H)`` is the trace of the
loss Hessian with respect to W (Hutchinson's estimator: ``E[v^T H v]`` over Rademacher
vectors v, each Hessian-vector product one double backward) and n the number of weights.
Bits start at ``max_bits`` everywhere and are lowered one at a time where the added
perturbation per saved weight bit is smallest, until the weight bytes meet the budget.
"""

from __future__ import annotations

from typing import Iterable, Sequence

import torch
from torch import nn

from slimkit.errors import UserError
from slimkit.quant.core import QScheme, fake_quantize, qparams_from_range

__all__ = ["hessian_traces", "hawq_bits"]


def hessian_traces(model: nn.Module, names: Sequence[str], batches: Iterable, samples: int = 16,
                   seed: int = 0) -> dict[str, float]:
    """Hutchinson estimates of Tr(d^2 loss / dW^2) for each named layer's weight."""
    gen = torch.Generator().manual_seed(seed)
    params = [model.get_submodule(n).weight for n in names]
    traces = dict.fromkeys(names, 0.0)
    count = 0
    model.eval()
    for x, y in batches:
        loss = nn.functional.cross_entropy(model(x), y)
        grads = torch.autograd.grad(loss, params, create_graph=True)
        for _ in range(samples):
            vs = [torch.randint(0, 2, p.shape, generator=gen).float() * 2 - 1 for p in params]
            hvs = torch.autograd.grad(grads, params, grad_outputs=vs, retain_graph=True)
            for n, v, hv in zip(names, vs, hvs):
                traces[n] += float((v * hv).sum())
        count += samples
    if count == 0:
        raise UserError("hawq: no batches to estimate Hessian traces from")
    return {n: t / count for n, t in traces.items()}


def _weight_error(w: torch.Tensor, bits: int) -> float:
    """||Q_b(W) - W||^2 with the PTQ default: symmetric per-output-channel scales."""
    scheme = QScheme(bits=bits, symmetric=True, per_channel=True, ch_axis=0, signed=True)
    flat = w.detach().flatten(1)
    scale, zp = qparams_from_range(flat.min(1).values, flat.max(1).values, scheme)
    return float(((fake_quantize(w.detach(), scale, zp, scheme) - w.detach()) ** 2).sum())


def hawq_bits(model: nn.Module, names: Sequence[str], traces: dict[str, float], budget_bytes: float,
              candidates: Sequence[int] = (8, 7, 6, 5, 4, 3, 2)) -> dict[str, int]:
    """Weight bits per layer meeting ``budget_bytes`` (params x bits / 8) with the least total
    Hessian-weighted perturbation (greedy on perturbation per saved bit)."""
    bits_list = sorted(set(candidates), reverse=True)
    weights = {n: model.get_submodule(n).weight for n in names}
    omega = {n: {b: max(traces[n], 0.0) / weights[n].numel() * _weight_error(weights[n], b) for b in bits_list}
             for n in names}
    level = dict.fromkeys(names, 0)  # index into bits_list

    def size() -> float:
        return sum(weights[n].numel() * bits_list[level[n]] / 8 for n in names)

    if sum(weights[n].numel() * bits_list[-1] / 8 for n in names) > budget_bytes:
        raise UserError(f"hawq: {budget_bytes:.0f} bytes cannot be met even at {bits_list[-1]} bits everywhere")
    while size() > budget_bytes:
        best = None
        for n in names:
            if level[n] + 1 < len(bits_list):
                b0, b1 = bits_list[level[n]], bits_list[level[n] + 1]
                cost = (omega[n][b1] - omega[n][b0]) / (weights[n].numel() * (b0 - b1))
                if best is None or cost < best[0]:
                    best = (cost, n)
        level[best[1]] += 1
    return {n: bits_list[level[n]] for n in names}
