"""Distillation losses (survey section 2.4), each a plain function plus a registered term.

The functions work on tensors and are checked by hand in the tests:

- `kd_loss`: soft targets, Hinton, Vinyals & Dean, "Distilling the Knowledge in a Neural
  Network" (NIPS DL workshop 2015): `alpha * T^2 * KL(softmax(t/T) || softmax(s/T)) +
  (1 - alpha) * CE(s, y)`.
- `attention_map` / `at_loss`: attention transfer, Zagoruyko & Komodakis, "Paying More
  Attention to Attention" (ICLR 2017): `Q = sum_c |A_c|^p` flattened and L2-normalised per
  sample; loss is the mean squared difference of student and teacher maps (as in the authors'
  code), summed over layer pairs.
- `fsp_matrix` / `fsp_loss`: Yim et al., "A Gift from Knowledge Distillation: Fast
  Optimization, Network Minimization and Transfer Learning" (CVPR 2017): the "flow of solution
  procedure" Gram matrix `G = F1 F2^T / (H W)` between two layers, L2 between student and teacher.
- `similarity_matrix` / `sp_loss`: Tung & Mori, "Similarity-Preserving Knowledge Distillation"
  (ICCV 2019), the cross-sample similarity family of DarkRank (Chen et al., AAAI 2018):
  row-normalised batch Gram matrices `G = norm_rows(Q Q^T)`, loss `||G_s - G_t||_F^2 / N^2`.
- `mmd_poly` / `nst_loss`: neuron selectivity transfer, Huang & Wang, "Like What You Like:
  Knowledge Distill via Neuron Selectivity Transfer" (2017): each channel's spatial map is an
  L2-normalised sample; squared MMD with the polynomial kernel `k(x, y) = (x.y + c)^d`.
- adversarial distillation (Xu et al., "Training Shallow and Thin Networks ... with
  Conditional Adversarial Networks", ICLR-W 2018; Belagiannis et al., "Adversarial Network
  Compression", ECCV-W 2018): see `slimkit.distill.adversarial`.

`LOSSES` maps a name to a `LossSpec`: how to build the term (an `nn.Module` called on a
`DistillBatch`), its default weight `beta`, and whether it reads tapped features.

>>> kd_loss(student_logits, teacher_logits, y, T=4.0, alpha=0.9)  # doctest: +SKIP
>>> LOSSES.names()  # doctest: +SKIP
['adversarial', 'at', 'fsp', 'kd', 'nst', 'sp']
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from slimkit._registry import Registry

if TYPE_CHECKING:
    from slimkit.distill.config import DistillConfig


# ---------------------------------------------------------------- plain functions


def kd_loss(
    s_logits: Tensor, t_logits: Tensor, y: Tensor, T: float = 4.0, alpha: float = 0.9
) -> Tensor:
    """Hinton'15 soft-target loss mixed with hard-label cross-entropy (scalar)."""
    log_ps = F.log_softmax(s_logits / T, dim=1)  # (N, K)
    log_pt = F.log_softmax(t_logits / T, dim=1)
    soft = F.kl_div(log_ps, log_pt, reduction="batchmean", log_target=True) * (T * T)
    if alpha == 1.0:
        return soft
    return alpha * soft + (1.0 - alpha) * F.cross_entropy(s_logits, y)


def _as_map(f: Tensor) -> Tensor:
    """(N, C, H, W) as is; (N, D) as (N, D, 1, 1)."""
    if f.dim() == 2:
        return f[:, :, None, None]
    if f.dim() != 4:
        raise ValueError(f"expected a (N, C, H, W) or (N, D) feature, got shape {tuple(f.shape)}")
    return f


def _match_spatial(a: Tensor, b: Tensor) -> tuple[Tensor, Tensor]:
    """Adaptive-average-pool the larger of two (N, C, H, W) maps to the other's H x W."""
    if a.shape[-2:] == b.shape[-2:]:
        return a, b
    if a.shape[-1] * a.shape[-2] > b.shape[-1] * b.shape[-2]:
        return F.adaptive_avg_pool2d(a, b.shape[-2:]), b
    return a, F.adaptive_avg_pool2d(b, a.shape[-2:])


def attention_map(f: Tensor, p: float = 2.0) -> Tensor:
    """Zagoruyko & Komodakis spatial attention `sum_c |f_c|^p`, flattened, L2-normalised.

    (N, C, H, W) -> (N, H*W)
    """
    q = _as_map(f).abs().pow(p).sum(dim=1).flatten(1)  # (N, H*W)
    return F.normalize(q, dim=1)


def at_loss(s_feats: Sequence[Tensor], t_feats: Sequence[Tensor], p: float = 2.0) -> Tensor:
    """Sum over layer pairs of `mean((Q_s - Q_t)^2)`; maps of different size are pooled to match."""
    total = s_feats[0].new_zeros(())
    for fs, ft in zip(s_feats, t_feats, strict=True):
        fs, ft = _match_spatial(_as_map(fs), _as_map(ft))
        total = total + (attention_map(fs, p) - attention_map(ft, p)).pow(2).mean()
    return total


def fsp_matrix(f1: Tensor, f2: Tensor) -> Tensor:
    """Yim et al. FSP matrix `G[i, j] = sum_hw f1[i, hw] f2[j, hw] / (H W)`. (N, C1, C2)"""
    a, b = _match_spatial(_as_map(f1), _as_map(f2))
    hw = a.shape[-1] * a.shape[-2]
    return torch.bmm(a.flatten(2), b.flatten(2).transpose(1, 2)) / hw


def fsp_loss(s_feats: Sequence[Tensor], t_feats: Sequence[Tensor]) -> Tensor:
    """Mean over consecutive layer pairs (i, i+1) of `mean((G_s - G_t)^2)`; channels must agree."""
    if len(s_feats) < 2 or len(s_feats) != len(t_feats):
        raise ValueError(
            f"fsp needs >= 2 equal-length feature lists, got {len(s_feats)} and {len(t_feats)}"
        )
    terms = []
    for i in range(len(s_feats) - 1):
        gs, gt = fsp_matrix(s_feats[i], s_feats[i + 1]), fsp_matrix(t_feats[i], t_feats[i + 1])
        if gs.shape != gt.shape:
            raise ValueError(
                f"fsp: student matrix {tuple(gs.shape)} != teacher {tuple(gt.shape)}; "
                "channel counts must match (the trainer adds 1x1 adapters)"
            )
        terms.append((gs - gt).pow(2).mean())
    return torch.stack(terms).mean()


def similarity_matrix(f: Tensor) -> Tensor:
    """Tung & Mori batch similarity `G = Q Q^T` with `Q = f.view(N, -1)`, rows L2-normalised.

    (N, ...) -> (N, N)
    """
    q = f.flatten(1)
    return F.normalize(q @ q.t(), dim=1)


def sp_loss(s_feats: Sequence[Tensor], t_feats: Sequence[Tensor]) -> Tensor:
    """Sum over layer pairs of `||G_s - G_t||_F^2 / N^2`."""
    total = s_feats[0].new_zeros(())
    for fs, ft in zip(s_feats, t_feats, strict=True):
        n = fs.shape[0]
        total = total + (similarity_matrix(fs) - similarity_matrix(ft)).pow(2).sum() / (n * n)
    return total


def mmd_poly(x: Tensor, y: Tensor, degree: int = 2, c: float = 0.0) -> Tensor:
    """Squared MMD between sample sets per batch item with `k(a, b) = (a.b + c)^degree`.

    `x` (N, n, D), `y` (N, m, D) -> (N,): `mean k(x, x') + mean k(y, y') - 2 mean k(x, y)`.
    """
    kxx = (x @ x.transpose(1, 2) + c).pow(degree).mean(dim=(1, 2))
    kyy = (y @ y.transpose(1, 2) + c).pow(degree).mean(dim=(1, 2))
    kxy = (x @ y.transpose(1, 2) + c).pow(degree).mean(dim=(1, 2))
    return kxx + kyy - 2.0 * kxy


def nst_loss(
    s_feats: Sequence[Tensor], t_feats: Sequence[Tensor], degree: int = 2, c: float = 0.0
) -> Tensor:
    """Sum over layer pairs of the batch-mean squared MMD between L2-normalised channel maps."""
    total = s_feats[0].new_zeros(())
    for fs, ft in zip(s_feats, t_feats, strict=True):
        fs, ft = _match_spatial(_as_map(fs), _as_map(ft))
        xs = F.normalize(fs.flatten(2), dim=2)  # (N, C_s, H*W)
        xt = F.normalize(ft.flatten(2), dim=2)  # (N, C_t, H*W)
        total = total + mmd_poly(xs, xt, degree, c).mean()
    return total


# ---------------------------------------------------------------- registered terms


@dataclass
class DistillBatch:
    """What a loss term sees for one batch; feature lists follow `feature_pairs` order."""

    s_logits: Tensor  # (N, K), with grad
    t_logits: Tensor  # (N, K), no grad
    y: Tensor  # (N,)
    s_feats: list[Tensor]
    t_feats: list[Tensor]


@dataclass(frozen=True)
class LossSpec:
    """A registered loss: `build(config, s_shapes, t_shapes, num_classes) -> nn.Module`, a term
    called on a `DistillBatch`.

    `base=True` marks a term that replaces the hard-label cross-entropy (kd); the others are
    added to it with weight `beta` (`default_beta` when the config gives none).
    """

    build: Callable[[DistillConfig, list[torch.Size], list[torch.Size], int], nn.Module]
    default_beta: float
    uses_features: bool
    base: bool = False
    min_pairs: int = 1


LOSSES: Registry[LossSpec] = Registry("distillation loss")


class KDTerm(nn.Module):
    def __init__(self, T: float, alpha: float) -> None:
        super().__init__()
        self.T, self.alpha = T, alpha

    def forward(self, b: DistillBatch) -> Tensor:
        return kd_loss(b.s_logits, b.t_logits, b.y, self.T, self.alpha)


class FeatureTerm(nn.Module):
    """Applies `fn(s_feats, t_feats)`, first mapping student features through 1x1 adapters
    (Romero et al., FitNets, ICLR 2015) where the loss needs equal channel counts."""

    def __init__(
        self, fn: Callable[..., Tensor], adapters: Sequence[nn.Module | None] = ()
    ) -> None:
        super().__init__()
        self.fn = fn
        self.adapters = nn.ModuleList([a if a is not None else nn.Identity() for a in adapters])

    def forward(self, b: DistillBatch) -> Tensor:
        s = [a(f) for a, f in zip(self.adapters, b.s_feats)] if len(self.adapters) else b.s_feats
        return self.fn(s, b.t_feats)


def channel_adapters(
    s_shapes: Sequence[torch.Size], t_shapes: Sequence[torch.Size]
) -> list[nn.Module | None]:
    """A 1x1 conv (or linear, for (N, D) features) per pair whose channel counts differ."""
    out: list[nn.Module | None] = []
    for ss, ts in zip(s_shapes, t_shapes, strict=True):
        if len(ss) != len(ts):
            raise ValueError(f"feature ranks differ: student {tuple(ss)} vs teacher {tuple(ts)}")
        if ss[1] == ts[1]:
            out.append(None)
        elif len(ss) == 4:
            out.append(nn.Conv2d(ss[1], ts[1], kernel_size=1, bias=False))
        elif len(ss) == 2:
            out.append(nn.Linear(ss[1], ts[1], bias=False))
        else:
            raise ValueError(f"cannot adapt features of shape {tuple(ss)}")
    return out


LOSSES.register("kd")(
    LossSpec(
        build=lambda cfg, s, t, k: KDTerm(cfg.T, cfg.alpha),
        default_beta=1.0,
        uses_features=False,
        base=True,
        min_pairs=0,
    )
)
LOSSES.register("at")(
    LossSpec(
        build=lambda cfg, s, t, k: FeatureTerm(lambda a, b: at_loss(a, b, cfg.p)),
        default_beta=500.0,
        uses_features=True,
    )
)
LOSSES.register("fsp")(
    LossSpec(
        build=lambda cfg, s, t, k: FeatureTerm(fsp_loss, channel_adapters(s, t)),
        default_beta=1.0,
        uses_features=True,
        min_pairs=2,
    )
)
LOSSES.register("sp")(
    LossSpec(
        build=lambda cfg, s, t, k: FeatureTerm(sp_loss), default_beta=3000.0, uses_features=True
    )
)
LOSSES.register("nst")(
    LossSpec(
        build=lambda cfg, s, t, k: FeatureTerm(nst_loss), default_beta=50.0, uses_features=True
    )
)
