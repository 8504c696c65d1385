"""CP (CANDECOMP/PARAFAC) decomposition of conv kernels by alternating least squares.

Lebedev et al., "Speeding-up Convolutional Neural Networks Using Fine-tuned CP-Decomposition"
(ICLR 2015): the kernel K (C_out, C_in, kh, kw) is a sum of R rank-one terms

    K[o, c, i, j] ~ sum_r A[o, r] B[c, r] Y[i, r] X[j, r]

so the conv becomes four cheap ones: 1x1 (C_in -> R), depthwise kh x 1, depthwise 1 x kw
(the layer's stride/padding split per axis) and 1x1 (R -> C_out, the layer's bias). Lebedev et
al. fit the factors by non-linear least squares; here they are fit by the standard ALS of
Kolda & Bader (2009, section 3.4) from an HOSVD-style start, then fine-tuned by training.

>>> import torch, torch.nn as nn
>>> seq = cp_conv(nn.Conv2d(8, 16, 3, padding=1), rank=6)
>>> [m.groups for m in seq]
[1, 6, 6, 1]
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn

from slimkit.errors import UserError
from slimkit.lowrank._layers import ConvGeometry, bias_of, conv_like, pointwise
from slimkit.lowrank._tensor import khatri_rao, leading_left_singular, mttkrp, unfold

__all__ = ["CPResult", "conv_from_cp", "cp_als", "cp_conv"]


@dataclass(frozen=True)
class CPResult:
    """Column weights and one factor per mode; ``to_tensor()`` rebuilds the tensor."""

    weights: Tensor  # (R,)
    factors: tuple[Tensor, ...]  # factor n: (I_n, R)
    errors: tuple[float, ...] = ()  # relative error after each ALS sweep

    def to_tensor(self) -> Tensor:
        shape = [f.shape[0] for f in self.factors]
        flat = (self.factors[0] * self.weights) @ khatri_rao(self.factors[1:]).T
        return flat.reshape(shape)

    def __iter__(self):  # weights, factors = cp_als(...)
        return iter((self.weights, self.factors))


def _init(x: Tensor, rank: int, gen: torch.Generator) -> list[Tensor]:
    factors = []
    for n in range(x.dim()):
        u = leading_left_singular(unfold(x, n), min(rank, x.shape[n]))
        if rank > u.shape[1]:  # more components than the mode's size: random extra columns
            extra = torch.randn(x.shape[n], rank - u.shape[1], generator=gen, dtype=x.dtype)
            u = torch.cat([u, extra], 1)
        factors.append(u)
    return factors


def cp_als(tensor: Tensor, rank: int, n_iter: int = 100, tol: float = 1e-7,
           seed: int = 0) -> CPResult:
    """Rank-``rank`` CP of ``tensor`` by ALS (float64), stopping when the relative error
    improves by less than ``tol`` or after ``n_iter`` sweeps."""
    if tensor.dim() < 2:
        raise UserError(f"cp_als needs a tensor of order >= 2, got shape {tuple(tensor.shape)}")
    if isinstance(rank, bool) or not isinstance(rank, int) or rank < 1:
        raise UserError(f"rank must be an int >= 1, got {rank!r}")
    if not isinstance(n_iter, int) or n_iter < 1:
        raise UserError(f"n_iter must be an int >= 1, got {n_iter!r}")
    x = tensor.detach().double()
    gen = torch.Generator().manual_seed(seed)
    factors = _init(x, rank, gen)
    weights = torch.ones(rank, dtype=x.dtype)
    norm = float(torch.linalg.norm(x)) or 1.0
    errors: list[float] = []
    modes = range(x.dim())
    for _ in range(n_iter):
        for n in modes:
            others = [factors[m] for m in modes if m != n]
            gram = torch.ones(rank, rank, dtype=x.dtype)
            for f in others:
                gram = gram * (f.T @ f)
            m = mttkrp(x, factors, n)  # (I_n, R)
            a = m @ torch.linalg.pinv(gram)
            weights = torch.linalg.norm(a, dim=0).clamp_min(1e-30)
            factors[n] = a / weights
        # ||X - X^||^2 = ||X||^2 - 2 <X, X^> + ||X^||^2 from the last mode's MTTKRP and grams
        inner = float((m * factors[n] * weights).sum())
        gram_all = gram * (factors[n].T @ factors[n])
        fit_sq = float(weights @ gram_all @ weights)
        errors.append(max(norm**2 - 2 * inner + fit_sq, 0.0) ** 0.5 / norm)
        if len(errors) > 1 and abs(errors[-2] - errors[-1]) < tol:
            break
    dt = tensor.dtype
    return CPResult(weights.to(dt), tuple(f.to(dt) for f in factors), tuple(errors))


def cp_conv(layer: nn.Conv2d, rank: int, n_iter: int = 100, seed: int = 0) -> nn.Sequential:
    """Replace a Conv2d by 1x1 -> depthwise kh x 1 -> depthwise 1 x kw -> 1x1 (rank R)."""
    if not isinstance(layer, nn.Conv2d) or layer.groups != 1:
        raise UserError(f"cp_conv needs an ungrouped nn.Conv2d, got {layer!r}")
    return conv_from_cp(layer, cp_als(layer.weight, rank, n_iter=n_iter, seed=seed))


def conv_from_cp(layer: nn.Conv2d, res: CPResult) -> nn.Sequential:
    """The four-conv replacement of ``layer`` built from the CP of its kernel."""
    g = ConvGeometry.of(layer)
    weights, (a, b, y, x) = res
    rank = weights.numel()
    if [f.shape[0] for f in res.factors] != [g.c_out, g.c_in, g.kh, g.kw]:
        raise UserError(f"CP factors of shapes {[tuple(f.shape) for f in res.factors]} do not "
                        f"match the kernel {tuple(layer.weight.shape)}")
    return nn.Sequential(
        pointwise(g.c_in, rank, b.T),  # (N, R, H, W)
        conv_like(g, rank, rank, y.T.reshape(rank, 1, g.kh, 1), None, groups=rank, axis=0),
        conv_like(g, rank, rank, x.T.reshape(rank, 1, 1, g.kw), None, groups=rank, axis=1),
        pointwise(rank, g.c_out, a * weights, bias_of(layer)),  # (N, C_out, H', W')
    )
