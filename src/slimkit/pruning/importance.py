"""Importance criteria: which channels (or weights) matter least.

Two registries, one contract each:

- `IMPORTANCE`: structured criteria, plain functions `group -> Tensor (group.size,)`, one
  score per coupled channel (higher = more important). They read the group's weights
  (`group.out_weights()`, `group.bn_weights()`), so they work on any `slimkit.graph.Group`.
- `ELEMENT_IMPORTANCE`: unstructured criteria, `weight -> Tensor` of the weight's shape.

Criteria that need data (first-order Taylor) are factories in `DATA_IMPORTANCE`:
`taylor(model, batches) -> (group -> scores)`; `get_importance(name, model, batches)` hides
the difference.

Papers: L1 norm of filters (Li et al., "Pruning Filters for Efficient ConvNets", ICLR 2017);
BN scale (Liu et al., "Learning Efficient Convolutional Networks through Network Slimming",
ICCV 2017); first-order Taylor (Molchanov et al., "Pruning Convolutional Neural Networks for
Resource Efficient Inference", ICLR 2017); geometric median (He et al., "Filter Pruning via
Geometric Median", CVPR 2019); random (Liu et al., "Rethinking the Value of Network
Pruning", ICLR 2019).

>>> import torch
>>> class G:  # any object with out_weights() works
...     size = 3
...     def out_weights(self): return [torch.tensor([[1., -2.], [0., 1.], [3., 0.]])]
>>> l1(G()).tolist()
[3.0, 1.0, 3.0]
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

import torch
from torch import Tensor, nn

from slimkit._registry import Registry
from slimkit.errors import UserError

GroupScore = Callable[..., Tensor]

IMPORTANCE: Registry[GroupScore] = Registry("importance")
ELEMENT_IMPORTANCE: Registry[Callable[[Tensor], Tensor]] = Registry("element importance")
DATA_IMPORTANCE: Registry[Callable[..., GroupScore]] = Registry("data-driven importance")


def _stacked_out(group) -> Tensor:
    """All producers' weights side by side: (size, sum of fan-ins)."""
    ws = [w.detach().reshape(group.size, -1).float() for w in group.out_weights()]
    if not ws:
        raise UserError(f"group {getattr(group, 'id', '?')!r} has no producer weights to score")
    return torch.cat(ws, dim=1)


@IMPORTANCE.register("l1")
def l1(group) -> Tensor:
    """Sum of |w| of each channel's filters (Li et al. 2017)."""
    return _stacked_out(group).abs().sum(1)


@IMPORTANCE.register("l2")
def l2(group) -> Tensor:
    """Euclidean norm of each channel's filters."""
    return _stacked_out(group).pow(2).sum(1).sqrt()


@IMPORTANCE.register("bn_scale")
def bn_scale(group) -> Tensor:
    """|gamma| of the group's BatchNorm layers, summed (Liu et al. 2017)."""
    gammas = [g.detach().abs().float() for g in group.bn_weights()]
    if not gammas:
        raise UserError(
            f"importance 'bn_scale' needs a BatchNorm layer, but group "
            f"{getattr(group, 'id', '?')!r} has none; use 'l1' or 'l2' for it"
        )
    return torch.stack(gammas).sum(0)


@IMPORTANCE.register("fpgm")
def fpgm(group) -> Tensor:
    """Sum of Euclidean distances to the group's other filters (He et al. 2019).

    Filters near the geometric median are replaceable by the others: small score = prune.
    """
    w = _stacked_out(group)  # (size, d)
    return torch.cdist(w, w, p=2).sum(1)


@IMPORTANCE.register("random")
def random(group) -> Tensor:
    """Uniform random scores: the baseline of 'Rethinking the value of network pruning'."""
    return torch.rand(group.size)


# ---- element-wise criteria (unstructured pruning) ---------------------------------------


@ELEMENT_IMPORTANCE.register("magnitude")
def magnitude(weight: Tensor) -> Tensor:
    """|w| (Han et al., "Learning both Weights and Connections", NeurIPS 2015)."""
    return weight.detach().abs()


@ELEMENT_IMPORTANCE.register("random")
def element_random(weight: Tensor) -> Tensor:
    return torch.rand_like(weight, dtype=torch.float32)


@ELEMENT_IMPORTANCE.register("taylor")
def element_taylor(weight: Tensor) -> Tensor:
    """|w * dL/dw|: first-order change of the loss when w is removed; needs `weight.grad`."""
    if weight.grad is None:
        raise UserError("element importance 'taylor' needs gradients: run a backward pass first")
    return (weight.detach() * weight.grad.detach()).abs()


# ---- data-driven criteria -----------------------------------------------------------------


@DATA_IMPORTANCE.register("taylor")
def taylor(model: nn.Module, batches: Iterable, loss_fn: Callable | None = None) -> GroupScore:
    """First-order Taylor (Molchanov et al. 2017): |mean_spatial(a * dL/da)| per example.

    Runs `batches` of `(x, y)` through `model` with hooks on every conv/linear output, and
    returns a criterion `group -> scores` summing the producers' averaged values.
    """
    loss_fn = loss_fn or (lambda out, y: nn.functional.cross_entropy(out, y))
    sums: dict[str, Tensor] = {}
    counts: dict[str, int] = {}
    handles = []

    def tap(name: str):
        def forward_hook(_m, _inp, out: Tensor) -> None:
            if not out.requires_grad:
                return

            def grad_hook(g: Tensor) -> None:
                prod = out.detach() * g  # (N, C, ...) per example and channel
                per = prod.flatten(2).mean(2).abs() if prod.dim() > 2 else prod.abs()
                sums[name] = sums.get(name, 0) + per.sum(0)
                counts[name] = counts.get(name, 0) + per.shape[0]

            out.register_hook(grad_hook)

        return forward_hook

    for name, m in model.named_modules():
        if isinstance(m, (nn.Conv2d, nn.Linear, nn.Conv1d)):
            handles.append(m.register_forward_hook(tap(name)))
    was_training = model.training
    model.eval()
    try:
        seen = 0
        for x, y in batches:
            model.zero_grad(set_to_none=True)
            loss_fn(model(x), y).backward()
            seen += 1
        if seen == 0:
            raise UserError("importance 'taylor' needs at least one batch of data")
    finally:
        for h in handles:
            h.remove()
        model.zero_grad(set_to_none=True)
        model.train(was_training)
    scores = {k: v / counts[k] for k, v in sums.items()}

    def criterion(group) -> Tensor:
        total = torch.zeros(group.size)
        found = False
        for mem in group.members:
            if mem.role != "out" or mem.module_name not in scores:
                continue
            s = scores[mem.module_name]
            off = int(getattr(mem, "offset", 0) or 0)
            n = min(s.numel(), group.size - off)
            total[off : off + n] += s[:n]
            found = True
        if not found:
            raise UserError(f"no Taylor scores were collected for group {group.id!r}")
        return total

    return criterion


def get_importance(
    name: str,
    model: nn.Module | None = None,
    batches: Iterable | None = None,
    loss_fn: Callable | None = None,
) -> GroupScore:
    """The criterion `group -> scores` called `name`; data-driven ones need model and batches."""
    if name in IMPORTANCE:
        return IMPORTANCE.get(name)
    if name in DATA_IMPORTANCE:
        if model is None or batches is None:
            raise UserError(f"importance {name!r} needs a model and data batches")
        return DATA_IMPORTANCE.get(name)(model, batches, loss_fn)
    known = ", ".join(sorted(set(IMPORTANCE.names()) | set(DATA_IMPORTANCE.names())))
    raise UserError(f"unknown importance {name!r}; known: {known}")


def importance_names() -> list[str]:
    return sorted(set(IMPORTANCE.names()) | set(DATA_IMPORTANCE.names()))
