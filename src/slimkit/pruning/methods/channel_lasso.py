"""Channel pruning by LASSO selection and least-squares reconstruction (He et al., "Channel
Pruning for Accelerating Very Deep Neural Networks", ICCV 2017).

For a layer pair (producer -> consumer conv), sample the consumer's input patches X and its
original outputs Y on a few calibration batches, then

1. choose channels: min_b 1/2 ||Y - sum_c b_c X_c W_c^T||^2 + lam ||b||_1, raising lam until
   at most `n_keep` coefficients are non-zero (coordinate descent on the C x C Gram matrix);
2. reconstruct: least squares `W' = argmin ||Y - X_keep W'^T||` (`torch.linalg.lstsq`).

No fine-tuning is needed; the producer's removed filters go with the graph's `shrink`.

>>> small = channel_lasso_prune(model, torch.randn(1, 3, 32, 32), calib_batches, ratio=0.5)
"""

from __future__ import annotations

import copy
from typing import Any, Iterable

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from slimkit.errors import UserError
from slimkit.pruning._structured import build_graph, n_keep, prunable
from slimkit.pruning.masks import check_sparsity


def _patches(x: Tensor, conv: nn.Conv2d, rows: Tensor | None, max_rows: int, gen: torch.Generator) -> tuple[Tensor, Tensor]:
    """im2col rows (S, C, kh*kw) of the conv's input, at sampled output positions."""
    cols = F.unfold(x, conv.kernel_size, conv.dilation, conv.padding, conv.stride)  # (N, C*k, L)
    cols = cols.transpose(1, 2).reshape(-1, cols.shape[1])  # (N*L, C*k)
    if rows is None:
        rows = torch.randperm(cols.shape[0], generator=gen)[:max_rows]
    k = conv.kernel_size[0] * conv.kernel_size[1]
    return cols[rows].reshape(len(rows), -1, k), rows


def lasso_cd(gram: Tensor, zty: Tensor, lam: float, beta: Tensor | None = None,
             iters: int = 200, tol: float = 1e-6) -> Tensor:
    """Coordinate descent for min_b 1/2 ||y - Z b||^2 + lam ||b||_1 on the Gram form
    (gram = Z^T Z, zty = Z^T y): b_j <- soft(zty_j - (G b)_j + G_jj b_j, lam) / G_jj."""
    c = zty.numel()
    beta = torch.zeros(c, dtype=gram.dtype) if beta is None else beta.clone()
    diag = gram.diagonal().clamp_min(1e-12)
    for _ in range(iters):
        delta = 0.0
        for j in range(c):
            rho = zty[j] - gram[j] @ beta + diag[j] * beta[j]
            new = torch.sign(rho) * torch.clamp(rho.abs() - lam, min=0.0) / diag[j]
            delta = max(delta, float((new - beta[j]).abs()))
            beta[j] = new
        if delta < tol * float(beta.abs().max().clamp_min(1e-12)):
            break
    return beta


def lasso_select(patches: Tensor, weight: Tensor, target: Tensor, n_keep: int,
                 max_iter: int = 40) -> Tensor:
    """Sorted indices of the `n_keep` input channels chosen by LASSO (He'17, eq. 3):
    lam is raised (bisection on log lam) until at most `n_keep` coefficients are non-zero.

    patches (S, C, k), weight (O, C, kh, kw), target (S, O).
    """
    s, c, k = patches.shape
    w = weight.reshape(weight.shape[0], c, k)  # (O, C, k)
    z = torch.einsum("sck,ock->cso", patches.double(), w.double()).reshape(c, -1).T  # (S*O, C)
    y = target.double().reshape(-1)
    gram, zty = z.T @ z, z.T @ y
    lo, hi = 1e-10 * float(zty.abs().max()), float(zty.abs().max()) + 1e-12  # hi zeroes every b
    beta = torch.ones(c, dtype=torch.float64)
    warm = None
    for _ in range(max_iter):
        lam = (lo * hi) ** 0.5
        b = lasso_cd(gram, zty, lam, warm)
        nnz = int((b != 0).sum())
        if nnz > n_keep:
            lo, warm = lam, b
        else:
            hi, beta = lam, b
            if nnz == n_keep:
                break
    order = torch.argsort(beta.abs(), descending=True, stable=True)
    return torch.sort(order[:n_keep]).values


def least_squares_weight(patches: Tensor, keep: Tensor, target: Tensor, out_channels: int,
                         kernel_size: tuple[int, int]) -> Tensor:
    """W' (O, len(keep), kh, kw) minimising ||target - patches[:, keep] W'^T||."""
    a = patches[:, keep].reshape(patches.shape[0], -1).double()  # (S, k*kh*kw)
    sol = torch.linalg.lstsq(a, target.double(), driver="gelsd").solution  # (k*kh*kw, O)
    return sol.T.reshape(out_channels, len(keep), *kernel_size).float()


def prune_conv_input(x: Tensor, conv: nn.Conv2d, n_keep_: int, *, max_rows: int = 4000,
                     seed: int = 0, target: Tensor | None = None) -> tuple[Tensor, Tensor]:
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


def _inputs(model: nn.Module, name: str, batches: list[Tensor]) -> Tensor:
    seen: list[Tensor] = []
    h = model.get_submodule(name).register_forward_hook(lambda m, i, o: seen.append(i[0].detach()))
    try:
        with torch.no_grad():
            for x in batches:
                model(x)
    finally:
        h.remove()
    return torch.cat(seen)


def _layer_pairs(graph) -> list[tuple[Any, Any]]:
    """(group, consumer member) where a prunable group feeds exactly one plain conv."""
    pairs = []
    for g in prunable(graph):
        ins = [m for m in g.members if m.role == "in"]
        if len(ins) == 1 and isinstance(ins[0].module, nn.Conv2d) and ins[0].module.groups == 1 \
                and ins[0].module.in_channels == g.size and int(ins[0].offset) == 0 \
                and not any(m.role == "depthwise" for m in g.members):
            pairs.append((g, ins[0]))
    return pairs


def channel_lasso_prune(model: nn.Module, example_inputs: Any, calib: Iterable, ratio: float, *,
                        ignore: Iterable[str] = (), round_to: int = 1, max_rows: int = 4000,
                        seed: int = 0) -> nn.Module:
    """A new, smaller model: every single-consumer layer pair loses `ratio` of its channels,
    chosen and compensated layer by layer (inputs from the pruned net, targets from the
    original, as in the paper). Residual-coupled groups are left whole."""
    from slimkit.graph import shrink

    check_sparsity(ratio, "ratio")
    batches = [b[0] if isinstance(b, (tuple, list)) else b for b in calib]
    if not batches:
        raise UserError("channel_lasso_prune needs at least one calibration batch")
    original = copy.deepcopy(model).eval()
    out = copy.deepcopy(model).eval()
    pairs = _layer_pairs(build_graph(out, example_inputs, ignore, round_to))
    if not pairs:
        raise UserError("no prunable layer pair (a channel group feeding exactly one conv) was found")
    for gid, consumer_name in [(g.id, c.module_name) for g, c in pairs]:
        graph = build_graph(out, example_inputs, ignore, round_to)
        group = next(g for g in graph.groups if g.id == gid)
        k = n_keep(group.size, ratio)
        if round_to > 1:
            k = min(group.size, max(round_to, round(k / round_to) * round_to))
        if k >= group.size:
            continue
        conv_now = out.get_submodule(consumer_name)
        conv_orig = original.get_submodule(consumer_name)
        gen = torch.Generator().manual_seed(seed)
        x_orig = _inputs(original, consumer_name, batches)
        x_now = _inputs(out, consumer_name, batches)
        p_orig, rows = _patches(x_orig, conv_orig, None, max_rows, gen)
        p_now, _ = _patches(x_now, conv_now, rows, max_rows, gen)
        target = p_orig.flatten(1) @ conv_orig.weight.detach().flatten(1).T  # (S, O)
        keep = lasso_select(p_now, conv_now.weight.detach(), target, k)
        new_w = least_squares_weight(p_now, keep, target, conv_now.out_channels, conv_now.kernel_size)
        out = shrink(out, graph, {gid: keep})
        with torch.no_grad():
            out.get_submodule(consumer_name).weight.copy_(new_w)
    return out
