"""Truncated SVD of Linear and Conv2d layers.

Linear: Denton et al., "Exploiting Linear Structure Within Convolutional Networks for
Efficient Evaluation" (NeurIPS 2014) and Sainath et al. (ICASSP 2013): ``W ~ (U_r S_r^1/2)
(S_r^1/2 V_r^T)``, i.e. Linear(in -> r, no bias) then Linear(r -> out, bias). By Eckart-Young
the error ``||W - W_r||_F^2`` is the sum of the discarded squared singular values.

Conv2d, two schemes on the kernel W (C_out, C_in, kh, kw):
- ``"channel"``: SVD of W as (C_out, C_in*kh*kw): a (r x C_in x kh x kw) conv with the layer's
  stride/padding, then a 1x1 conv r -> C_out (Zhang et al. 2016 style channel decomposition).
- ``"spatial"``: Jaderberg, Vedaldi & Zisserman, "Speeding up Convolutional Neural Networks
  with Low Rank Expansions" (BMVC 2014, scheme 2) as solved in closed form by Tai et al.,
  "Convolutional neural networks with low-rank regularization" (ICLR 2016): SVD of W as
  (C_in*kh, C_out*kw): a vertical kh x 1 conv C_in -> r then a horizontal 1 x kw conv
  r -> C_out.

>>> import torch.nn as nn
>>> two = svd_linear(nn.Linear(64, 32), rank=8)
>>> [type(m).__name__ for m in two], two[0].out_features
(['Linear', 'Linear'], 8)
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn

from slimkit._registry import Registry
from slimkit.errors import UserError
from slimkit.lowrank._layers import ConvGeometry, bias_of, conv_like, linear, pointwise
from slimkit.lowrank._tensor import check_rank, thin_svd

__all__ = ["SCHEMES", "SVDResult", "conv_from_svd", "conv_matrix", "linear_from_svd",
           "rank_for_energy", "svd_conv", "svd_linear", "truncated_svd"]


@dataclass(frozen=True)
class SVDResult:
    """Rank-r factors with ``u @ diag(s) @ vh ~ matrix``."""

    u: Tensor  # (m, r)
    s: Tensor  # (r,)
    vh: Tensor  # (r, n)
    discarded: Tensor  # singular values dropped, (min(m, n) - r,)

    def to_tensor(self) -> Tensor:
        return (self.u * self.s) @ self.vh

    def split(self) -> tuple[Tensor, Tensor]:
        """Balanced factors (U S^1/2, S^1/2 V^T)."""
        root = self.s.sqrt()
        return self.u * root, root[:, None] * self.vh


def truncated_svd(matrix: Tensor, rank: int) -> SVDResult:
    """Best rank-``rank`` approximation of a 2-D tensor (computed in float64)."""
    if matrix.dim() != 2:
        raise UserError(f"truncated_svd needs a matrix, got shape {tuple(matrix.shape)}")
    check_rank(rank, min(matrix.shape), "rank")
    u, s, vh = thin_svd(matrix.detach().double())
    return SVDResult(u[:, :rank], s[:rank], vh[:rank], s[rank:])


def rank_for_energy(s: Tensor, energy: float) -> int:
    """Smallest r whose leading singular values keep ``energy`` of ``sum(s^2)``."""
    if not 0.0 < energy <= 1.0:
        raise UserError(f"energy must be in (0, 1], got {energy!r}")
    e = s.double() ** 2
    total = float(e.sum())
    if total == 0.0:
        return 1
    kept = torch.cumsum(e, 0) / total
    return min(int((kept < energy - 1e-12).sum()) + 1, s.numel())


# scheme name -> (kernel -> matrix, factors -> nn.Sequential)
SCHEMES: Registry[str] = Registry("SVD conv scheme")
SCHEMES.register("channel")("(C_out, C_in*kh*kw): kh x kw conv to r, then 1x1")
SCHEMES.register("spatial")("(C_in*kh, C_out*kw): kh x 1 conv to r, then 1 x kw")


def conv_matrix(weight: Tensor, scheme: str = "channel") -> Tensor:
    """The matrix whose SVD the conv ``scheme`` truncates."""
    SCHEMES.get(scheme)
    c_out, c_in, kh, kw = weight.shape
    if scheme == "channel":
        return weight.reshape(c_out, c_in * kh * kw)
    # M[(c, i), (o, j)] = W[o, c, i, j]
    return weight.permute(1, 2, 0, 3).reshape(c_in * kh, c_out * kw)


def svd_linear(layer: nn.Linear, rank: int) -> nn.Sequential:
    """Replace ``layer`` by Linear(in -> rank) then Linear(rank -> out) (new modules)."""
    if not isinstance(layer, nn.Linear):
        raise UserError(f"svd_linear needs an nn.Linear, got {type(layer).__name__}")
    return linear_from_svd(layer, truncated_svd(layer.weight, rank))


def linear_from_svd(layer: nn.Linear, res: SVDResult) -> nn.Sequential:
    """The two-Linear replacement of ``layer`` from the truncated SVD of its weight."""
    left, right = (t.to(layer.weight.dtype) for t in res.split())  # (out, r), (r, in)
    rank = res.s.numel()
    return nn.Sequential(linear(layer.in_features, rank, right),
                         linear(rank, layer.out_features, left, bias_of(layer)))


def svd_conv(layer: nn.Conv2d, rank: int, scheme: str = "channel") -> nn.Sequential:
    """Replace a Conv2d by two convs of rank ``rank`` (see the module docstring)."""
    if not isinstance(layer, nn.Conv2d) or layer.groups != 1:
        raise UserError(f"svd_conv needs an ungrouped nn.Conv2d, got {layer!r}")
    return conv_from_svd(layer, truncated_svd(conv_matrix(layer.weight, scheme), rank), scheme)


def conv_from_svd(layer: nn.Conv2d, res: SVDResult, scheme: str = "channel") -> nn.Sequential:
    """The two-conv replacement of ``layer`` from the truncated SVD of `conv_matrix`."""
    g = ConvGeometry.of(layer)
    left, right = (t.to(layer.weight.dtype) for t in res.split())
    rank = res.s.numel()
    if scheme == "channel":  # left (C_out, r), right (r, C_in*kh*kw)
        first = conv_like(g, g.c_in, rank, right.reshape(rank, g.c_in, g.kh, g.kw), None)
        return nn.Sequential(first, pointwise(rank, g.c_out, left, bias_of(layer)))
    # left (C_in*kh, r) -> vertical (r, C_in, kh, 1); right (r, C_out*kw) -> (C_out, r, 1, kw)
    vert = left.reshape(g.c_in, g.kh, rank).permute(2, 0, 1).unsqueeze(-1)
    horiz = right.reshape(rank, g.c_out, g.kw).permute(1, 0, 2).unsqueeze(2)
    return nn.Sequential(conv_like(g, g.c_in, rank, vert, None, axis=0),
                         conv_like(g, rank, g.c_out, horiz, bias_of(layer), axis=1))
