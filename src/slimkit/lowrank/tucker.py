"""Tucker-2 decomposition of conv kernels along the output and input channel modes.

Kim et al., "Compression of Deep Convolutional Neural Networks for Fast and Low Power Mobile
Applications" (ICLR 2016): the kernel K (C_out, C_in, kh, kw) is approximated by

    K ~ G x_0 U_out x_1 U_in,   G (R_out, R_in, kh, kw), U_out (C_out, R_out), U_in (C_in, R_in)

and the conv becomes 1x1 (C_in -> R_in), kh x kw core (R_in -> R_out, the layer's stride and
padding), 1x1 (R_out -> C_out, the layer's bias). Factors start from the truncated HOSVD
(De Lathauwer et al. 2000) and are refined by a few HOOI sweeps (De Lathauwer et al., "On the
best rank-1 and rank-(R1,...,RN) approximation of higher-order tensors", 2000).

>>> import torch, torch.nn as nn
>>> k = torch.randn(16, 8, 3, 3)
>>> res = tucker2(k, ranks=(16, 8))
>>> float((res.to_tensor() - k).abs().max()) < 1e-4   # full rank is exact
True
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn

from slimkit.errors import UserError
from slimkit.lowrank._layers import ConvGeometry, bias_of, conv_like, pointwise
from slimkit.lowrank._tensor import check_rank, leading_left_singular, mode_dot, unfold

__all__ = ["Tucker2Result", "conv_from_tucker", "tucker2", "tucker_conv"]


@dataclass(frozen=True)
class Tucker2Result:
    """Core and the two channel factors; ``to_tensor()`` rebuilds the kernel."""

    core: Tensor  # (R_out, R_in, kh, kw)
    u_out: Tensor  # (C_out, R_out)
    u_in: Tensor  # (C_in, R_in)
    errors: tuple[float, ...] = ()  # relative error after HOSVD and after each HOOI sweep

    def to_tensor(self) -> Tensor:
        return mode_dot(mode_dot(self.core, self.u_out, 0), self.u_in, 1)

    def __iter__(self):  # core, factors = tucker2(...)
        return iter((self.core, (self.u_out, self.u_in)))


def tucker2(kernel: Tensor, ranks: tuple[int, int], n_iter: int = 5) -> Tucker2Result:
    """Tucker-2 of a 4-D ``kernel`` with ``ranks=(R_out, R_in)``: HOSVD then ``n_iter`` HOOI."""
    if kernel.dim() != 4:
        raise UserError(f"tucker2 needs a 4-D kernel, got shape {tuple(kernel.shape)}")
    if not isinstance(n_iter, int) or n_iter < 0:
        raise UserError(f"n_iter must be an int >= 0, got {n_iter!r}")
    r_out = check_rank(ranks[0], kernel.shape[0], "R_out")
    r_in = check_rank(ranks[1], kernel.shape[1], "R_in")
    k = kernel.detach().double()
    norm = float(torch.linalg.norm(k)) or 1.0
    u_out = leading_left_singular(unfold(k, 0), r_out)  # HOSVD
    u_in = leading_left_singular(unfold(k, 1), r_in)

    def err(core: Tensor) -> float:  # orthonormal factors: ||K - K^||^2 = ||K||^2 - ||G||^2
        return max(norm**2 - float(torch.linalg.norm(core)) ** 2, 0.0) ** 0.5 / norm

    core = mode_dot(mode_dot(k, u_out.T, 0), u_in.T, 1)
    errors = [err(core)]
    for _ in range(n_iter):  # HOOI: each factor from the kernel projected on the other
        u_out = leading_left_singular(unfold(mode_dot(k, u_in.T, 1), 0), r_out)
        u_in = leading_left_singular(unfold(mode_dot(k, u_out.T, 0), 1), r_in)
        core = mode_dot(mode_dot(k, u_out.T, 0), u_in.T, 1)
        errors.append(err(core))
    dt = kernel.dtype
    return Tucker2Result(core.to(dt), u_out.to(dt), u_in.to(dt), tuple(errors))


def tucker_conv(layer: nn.Conv2d, ranks: tuple[int, int], n_iter: int = 5) -> nn.Sequential:
    """Replace a Conv2d by 1x1 (C_in -> R_in), core kh x kw (R_in -> R_out), 1x1 (-> C_out)."""
    if not isinstance(layer, nn.Conv2d) or layer.groups != 1:
        raise UserError(f"tucker_conv needs an ungrouped nn.Conv2d, got {layer!r}")
    return conv_from_tucker(layer, tucker2(layer.weight, ranks, n_iter))


def conv_from_tucker(layer: nn.Conv2d, res: Tucker2Result) -> nn.Sequential:
    """The three-conv replacement of ``layer`` built from the Tucker-2 of its kernel."""
    g = ConvGeometry.of(layer)
    r_out, r_in = res.core.shape[:2]
    return nn.Sequential(
        pointwise(g.c_in, r_in, res.u_in.T),  # (N, R_in, H, W)
        conv_like(g, r_in, r_out, res.core, None),  # (N, R_out, H', W')
        pointwise(r_out, g.c_out, res.u_out, bias_of(layer)),  # (N, C_out, H', W')
    )
