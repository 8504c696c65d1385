"""Channel pruning by LASSO selection and least-squares reconstruction (He et al., "Channel
Pruning for Accelerating Very Deep Neural Networks", ICCV 2017).

For a layer pair (producer -> consumer conv), sample the consumer's input patches X and its
original outputs Y on a few calibration batches, then

1. choose channels: min_b 1/2 ||Y - sum_c b_c X_c W_c^T||^2 + lam ||b||_1, raising lam until
   at most `n_keep` coefficients are non-zero (FISTA on the C x C Gram matrix);
2. reconstruct: least squares `W' = argmin ||Y - X_keep W'^T||` (`torch.linalg.lstsq`).

No fine-tuning is needed; the producer's removed filters go with the graph's `shrink`.

>>> small = channel_lasso_prune(model, torch.randn(1, 3, 32, 32), calib_batches, ratio=0.5)  # doctest: +SKIP
"""

from __future__ import annotations

import copy
from collections.abc import Iterable
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from slimkit.errors import UserError
from slimkit.pruning._structured import build_graph, n_keep, prunable
from slimkit.pruning.masks import check_sparsity


def _patches(
    x: Tensor, conv: nn.Conv2d, rows: Tensor | None, max_rows: int, gen: torch.Generator
) -> tuple[Tensor, Tensor]:
    """im2col rows (S, C, kh*kw) of the conv's input, at sampled output positions."""
    cols = F.unfold(x, conv.kernel_size, conv.dilation, conv.padding, conv.stride)  # (N, C*k, L)
    cols = cols.transpose(1, 2).reshape(-1, cols.shape[1])  # (N*L, C*k)
    if rows is None:
        rows = torch.randperm(cols.shape[0], generator=gen)[:max_rows]
    k = conv.kernel_size[0] * conv.kernel_size[1]
    return cols[rows].reshape(len(rows), -1, k), rows


def lasso_gram(
    gram: Tensor,
    zty: Tensor,
    lam: float,
    beta: Tensor | None = None,
    iters: int = 500,
    tol: float = 1e-7,
) -> Tensor:
    """min_b 1/2 ||y - Z b||^2 + lam ||b||_1 on the Gram form (gram = Z^T Z, zty = Z^T y) by
    FISTA (Beck & Teboulle 2009): b <- soft(v - (G v - Z^T y) / L, lam / L), with momentum.
    Soft-thresholding gives exact zeros, which is what channel selection counts."""
    step = 1.0 / float(torch.linalg.eigvalsh(gram).max().clamp_min(1e-12))  # 1 / Lipschitz
    b = torch.zeros_like(zty) if beta is None else beta.clone()
    v, t = b.clone(), 1.0
    for _ in range(iters):
        u = v - step * (gram @ v - zty)
        b_new = torch.sign(u) * torch.clamp(u.abs() - lam * step, min=0.0)
        t_new = (1 + (1 + 4 * t * t) ** 0.5) / 2
        v = b_new + ((t - 1) / t_new) * (b_new - b)
        done = float((b_new - b).abs().max()) <= tol * float(b_new.abs().max().clamp_min(1e-12))
        b, t = b_new, t_new
        if done:
            break
    return b


def lasso_select(
    patches: Tensor, weight: Tensor, target: Tensor, n_keep: int, max_iter: int = 40
) -> Tensor:
    """Sorted indices of the `n_keep` input channels chosen by LASSO (He'17, eq. 3):
    lam is raised (bisection on log lam) until at most `n_keep` coefficients are non-zero.

    patches (S, C, k), weight (O, C, kh, kw), target (S, O).
    """
    _, c, k = patches.shape
    w = weight.reshape(weight.shape[0], c, k)  # (O, C, k)
    z = torch.einsum("sck,ock->cso", patches.double(), w.double()).reshape(c, -1).T  # (S*O, C)
    y = target.double().reshape(-1)
    gram, zty = z.T @ z, z.T @ y
    lo, hi = 1e-10 * float(zty.abs().max()), float(zty.abs().max()) + 1e-12  # hi zeroes every b
    beta = torch.ones(c, dtype=torch.float64)
    warm = None
    for _ in range(max_iter):
        lam = (lo * hi) ** 0.5
        b = lasso_gram(gram, zty, lam, warm)
        nnz = int((b != 0).sum())
        if nnz > n_keep:
            lo, warm = lam, b
        else:
            hi, beta = lam, b
            if nnz == n_keep:
                break
    order = torch.argsort(beta.abs(), descending=True, stable=True)
    return torch.sort(order[:n_keep]).values


def least_squares_weight(
    patches: Tensor, keep: Tensor, target: Tensor, out_channels: int, kernel_size: tuple[int, int]
) -> Tensor:
    """W' (O, len(keep), kh, kw) minimising ||target - patches[:, keep] W'^T||."""
    a = patches[:, keep].reshape(patches.shape[0], -1).double()  # (S, k*kh*kw)
    sol = torch.linalg.lstsq(a, target.double(), driver="gelsy").solution  # (k*kh*kw, O)
    return sol.T.reshape(out_channels, len(keep), *kernel_size).float()


def prune_conv_input(
    x: Tensor,
    conv: nn.Conv2d,
    n_keep_: int,
    *,
    max_rows: int = 4000,
    seed: int = 0,
    target: Tensor | None = None,
) -> tuple[Tensor, Tensor]:
    """Channel selection + reconstruction for one conv on its input batch `x` (N, C, H, W).

    Returns (kept input-channel indices, new weight). `target` defaults to the conv's own
    output (without bias) at the sampled positions.
    """
    gen = torch.Generator().manual_seed(seed)
    patches, _ = _patches(x, conv, None, max_rows, gen)
    if target is None:
        target = patches.flatten(1) @ conv.weight.detach().flatten(1).T  # (S, O)
    keep = lasso_select(patches, conv.weight.detach(), target, n_keep_)
    return keep, least_squares_weight(patches, keep, target, conv.out_channels, conv.kernel_size)


def _inputs(model: nn.Module, names: list[str], batches: list[Tensor]) -> dict[str, Tensor]:
    """The inputs of the named modules over all batches, from one pass per batch."""
    seen: dict[str, list[Tensor]] = {n: [] for n in names}
    hooks = [
        model.get_submodule(n).register_forward_hook(
            lambda m, i, o, n=n: seen[n].append(i[0].detach())
        )
        for n in names
    ]
    try:
        with torch.no_grad():
            for x in batches:
                model(x)
    finally:
        for h in hooks:
            h.remove()
    return {n: torch.cat(v) for n, v in seen.items()}


def _layer_pairs(graph) -> list[tuple[Any, Any]]:
    """(group, consumer member) where a prunable group feeds exactly one plain conv (and no
    depthwise or grouped conv, whose filters would have to follow the channel choice)."""
    pairs = []
    for g in prunable(graph):
        ins = [m for m in g.members if m.role == "in"]
        if (
            len(ins) == 1
            and isinstance(ins[0].module, nn.Conv2d)
            and ins[0].module.groups == 1
            and ins[0].module.in_channels == g.size
            and int(ins[0].offset) == 0
            and not any(m.role in ("depthwise", "grouped") for m in g.members)
        ):
            pairs.append((g, ins[0]))
    return pairs


def channel_lasso_prune(
    model: nn.Module,
    example_inputs: Any,
    calib: Iterable,
    ratio: float,
    *,
    ignore: Iterable[str] = (),
    round_to: int = 1,
    max_rows: int = 4000,
    seed: int = 0,
) -> nn.Module:
    """A new, smaller model: every single-consumer layer pair loses `ratio` of its channels,
    chosen and compensated layer by layer (inputs from the pruned net, targets from the
    original, as in the paper). Residual-coupled groups are left whole."""
    check_sparsity(ratio, "ratio")
    batches = [b[0] if isinstance(b, (tuple, list)) else b for b in calib]
    if not batches:
        raise UserError("channel_lasso_prune needs at least one calibration batch")
    original = copy.deepcopy(model).eval()
    work = copy.deepcopy(model).eval()  # full size; removed input columns are zeroed as we go
    graph = build_graph(work, example_inputs, ignore, round_to)
    pairs = _layer_pairs(graph)
    if not pairs:
        raise UserError(
            "no prunable layer pair (a channel group feeding exactly one conv) was found"
        )
    x_orig_all = _inputs(
        original, [c.module_name for _, c in pairs], batches
    )  # targets: original net
    keeps: dict[str, Tensor] = {}
    for group, consumer in pairs:
        k = n_keep(group.size, ratio)
        if round_to > 1:
            k = min(group.size, max(round_to, round(k / round_to) * round_to))
        if k >= group.size:
            continue
        name = consumer.module_name
        conv_now, conv_orig = work.get_submodule(name), original.get_submodule(name)
        gen = torch.Generator().manual_seed(seed)
        p_orig, rows = _patches(x_orig_all.pop(name), conv_orig, None, max_rows, gen)
        # inputs from the partly pruned net, so that each layer compensates earlier errors
        p_now, _ = _patches(_inputs(work, [name], batches)[name], conv_now, rows, max_rows, gen)
        target = p_orig.flatten(1) @ conv_orig.weight.detach().flatten(1).T  # (S, O)
        keep = lasso_select(p_now, conv_now.weight.detach(), target, k)
        new_w = least_squares_weight(
            p_now, keep, target, conv_now.out_channels, conv_now.kernel_size
        )
        with torch.no_grad():  # the group's only consumer ignores removed channels: same as removal
            conv_now.weight.zero_()
            conv_now.weight[:, keep] = new_w
        keeps[group.id] = keep
    from slimkit.graph import shrink

    return shrink(work, graph, keeps) if keeps else work
