"""Pruning masks at every granularity, and a sparsifier that keeps them applied.

A mask has the weight's shape, 1 = kept, 0 = pruned; `sparsity = 1 - density` is the
fraction of *groups* removed (elements, kernel rows, 2-D kernels, input channels, output
filters). Scores are element-wise (e.g. `|w|`); a group's score is the sum of its elements'.

Granularities (survey section 2.1; Mao et al., "Exploring the Granularity of Sparsity in
CNNs", 2017), for a conv weight (O, I, kH, kW) or a linear weight (O, I):

- ``element``: single weights.        - ``vector``: kernel rows w[o, i, h, :] (conv only).
- ``kernel``: 2-D kernels w[o, i].    - ``channel``: input channels w[:, i].
- ``filter``: output filters w[o].    - ``nm``: N of every M consecutive inputs kept (2:4).

>>> import torch
>>> w = torch.tensor([[1., -4., 2., 3.], [5., 0.5, -6., 1.]])
>>> element_mask(w.abs(), 0.5).int().tolist()
[[0, 1, 0, 1], [1, 0, 1, 0]]
>>> nm_mask(w.abs(), n=2, m=4).int().tolist()
[[0, 1, 0, 1], [1, 0, 1, 0]]
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

import torch
from torch import Tensor, nn

from slimkit._registry import Registry
from slimkit.errors import UserError
from slimkit.pruning.importance import ELEMENT_IMPORTANCE
from slimkit.train.hooks import Hook

MASKS: Registry[Callable[..., Tensor]] = Registry("granularity")


def check_sparsity(sparsity: float, what: str = "sparsity") -> float:
    if not isinstance(sparsity, (int, float)) or not 0.0 <= float(sparsity) < 1.0:
        raise UserError(f"{what} must be in [0, 1), got {sparsity!r}")
    return float(sparsity)


def _keep_top(group_scores: Tensor, sparsity: float) -> Tensor:
    """Boolean mask over a 1-D score vector keeping the highest (1 - sparsity) fraction."""
    n = group_scores.numel()
    n_prune = round(check_sparsity(sparsity) * n)
    keep = torch.ones(n, dtype=torch.bool)
    if n_prune:
        order = torch.argsort(group_scores.flatten(), stable=True)  # ascending; ties: first
        keep[order[:n_prune]] = False
    return keep


@MASKS.register("element")
def element_mask(scores: Tensor, sparsity: float) -> Tensor:
    return _keep_top(scores.flatten(), sparsity).reshape(scores.shape)


@MASKS.register("vector")
def vector_mask(scores: Tensor, sparsity: float) -> Tensor:
    if scores.dim() != 4:
        raise UserError(
            f"granularity 'vector' (kernel rows) needs a 4-D conv weight, got {tuple(scores.shape)}"
        )
    rows = scores.sum(3)  # (O, I, kH)
    return (
        _keep_top(rows.flatten(), sparsity)
        .reshape(rows.shape)
        .unsqueeze(3)
        .expand_as(scores)
        .clone()
    )


@MASKS.register("kernel")
def kernel_mask(scores: Tensor, sparsity: float) -> Tensor:
    k = scores.flatten(2).sum(2) if scores.dim() > 2 else scores  # (O, I)
    keep = _keep_top(k.flatten(), sparsity).reshape(k.shape)
    return keep.reshape(*k.shape, *([1] * (scores.dim() - 2))).expand_as(scores).clone()


@MASKS.register("channel")
def channel_mask(scores: Tensor, sparsity: float) -> Tensor:
    c = scores.transpose(0, 1).flatten(1).sum(1)  # (I,)
    keep = _keep_top(c, sparsity)
    return keep.reshape(1, -1, *([1] * (scores.dim() - 2))).expand_as(scores).clone()


@MASKS.register("filter")
def filter_mask(scores: Tensor, sparsity: float) -> Tensor:
    f = scores.flatten(1).sum(1)  # (O,)
    keep = _keep_top(f, sparsity)
    return keep.reshape(-1, *([1] * (scores.dim() - 1))).expand_as(scores).clone()


@MASKS.register("nm")
def nm_mask(scores: Tensor, sparsity: float | None = None, n: int = 2, m: int = 4) -> Tensor:
    """Keep the n largest of every m consecutive weights along the input dimension.

    For a conv weight the blocks run along I for each (o, h, w) position, as in NVIDIA's
    2:4 sparse tensor cores (Mishra et al., "Accelerating Sparse Deep Neural Networks", 2021).
    `sparsity` is ignored (it is 1 - n/m).
    """
    if not (0 < n <= m):
        raise UserError(f"N:M needs 0 < n <= m, got n={n}, m={m}")
    s = scores.permute(0, *range(2, scores.dim()), 1) if scores.dim() > 2 else scores  # (..., I)
    if s.shape[-1] % m:
        raise UserError(
            f"N:M with m={m} needs the input size to be a multiple of {m}, got {s.shape[-1]}"
        )
    blocks = s.reshape(-1, m)  # (blocks, m)
    idx = torch.topk(blocks, n, dim=1).indices
    keep = torch.zeros_like(blocks, dtype=torch.bool).scatter_(1, idx, True).reshape(s.shape)
    if scores.dim() > 2:
        keep = keep.permute(0, scores.dim() - 1, *range(1, scores.dim() - 1))
    return keep.contiguous()


GRANULARITIES = tuple(MASKS.names())


def compute_mask(
    scores: Tensor, sparsity: float, granularity: str = "element", n: int = 2, m: int = 4
) -> Tensor:
    """Mask (bool, the scores' shape) at `granularity` removing a `sparsity` fraction of groups."""
    fn = _granularity(granularity)
    if granularity == "nm":
        return fn(scores, sparsity, n=n, m=m)
    return fn(scores, sparsity)


def _granularity(name: str) -> Callable[..., Tensor]:
    if name not in MASKS:
        raise UserError(f"unknown granularity {name!r}; known: {', '.join(MASKS.names())}")
    return MASKS.get(name)


def global_element_masks(scores: dict[str, Tensor], sparsity: float) -> dict[str, Tensor]:
    """One threshold across all tensors: the lowest `sparsity` fraction of all scores is pruned."""
    flat = torch.cat([s.flatten().float() for s in scores.values()])
    keep = _keep_top(flat, sparsity)
    out, i = {}, 0
    for k, s in scores.items():
        out[k] = keep[i : i + s.numel()].reshape(s.shape)
        i += s.numel()
    return out


def default_targets(model: nn.Module, types: tuple = (nn.Conv2d, nn.Linear)) -> list[str]:
    """Names of the conv and linear layers of `model` (depthwise convs left out)."""
    return [
        name
        for name, m in model.named_modules()
        if isinstance(m, types) and not (isinstance(m, nn.Conv2d) and m.groups > 1)
    ]


def select_targets(
    model: nn.Module, include: Iterable[str] | None = None, ignore: Iterable[str] = ()
) -> list[str]:
    """Layer names to prune: `include` globs (default: all conv/linear) minus `ignore` globs,
    matched by `slimkit.selection` (a glob that matches no layer raises, so typos are caught)."""
    from slimkit.selection import match_globs

    names = default_targets(model)
    chosen = set(names) if include is None else match_globs(names, list(include), "include")
    chosen -= match_globs(names, list(ignore), "ignore")
    return [n for n in names if n in chosen]


class Pruner:
    """A sparsifier shaped like `torch.optim` / `torch.ao.pruning`.

    >>> p = Pruner(sparsity=0.5)
    >>> model = p.prepare(nn.Linear(4, 2))       # masks computed and applied (in place)
    >>> hook = p.hook()                          # pass to slimkit.train.fit(hooks=[hook])
    >>> p.step(0.75)                             # raise sparsity (iterative pruning, AGP)
    >>> dense_again = p.squash_mask()            # forget masks; weights keep their zeros

    `scope="layer"` prunes each layer to `sparsity` (or `layer_sparsity[name]`),
    `scope="global"` applies one threshold to all layers (element granularity).
    """

    def __init__(
        self,
        sparsity: float = 0.5,
        granularity: str = "element",
        importance: str = "magnitude",
        scope: str = "layer",
        n: int = 2,
        m: int = 4,
        include: Iterable[str] | None = None,
        ignore: Iterable[str] = (),
        layer_sparsity: dict[str, float] | None = None,
    ) -> None:
        self.sparsity = self.base_sparsity = check_sparsity(sparsity)
        _granularity(granularity)
        self.granularity = granularity
        self.importance = (
            ELEMENT_IMPORTANCE.get(importance) if importance in ELEMENT_IMPORTANCE else None
        )
        if self.importance is None:
            raise UserError(
                f"unknown element importance {importance!r}; known: {', '.join(ELEMENT_IMPORTANCE.names())}"
            )
        if scope not in ("layer", "global"):
            raise UserError(f"scope must be 'layer' or 'global', got {scope!r}")
        if scope == "global" and granularity != "element":
            raise UserError("scope='global' supports granularity 'element' only")
        self.scope, self.n, self.m = scope, n, m
        self.include, self.ignore = include, tuple(ignore)
        self.layer_sparsity = {
            k: check_sparsity(v, f"sparsity of {k}") for k, v in (layer_sparsity or {}).items()
        }
        self.model: nn.Module | None = None
        self.masks: dict[str, Tensor] = {}

    # -- torch.optim-like life cycle ------------------------------------------------------
    def prepare(self, model: nn.Module) -> nn.Module:
        """Attach to `model` (edited in place), compute masks and apply them."""
        self.model = model
        self.targets = select_targets(model, self.include, self.ignore)
        unknown = set(self.layer_sparsity) - set(self.targets)
        if unknown:
            raise UserError(
                f"layer_sparsity names unknown layers {sorted(unknown)}; layers: {', '.join(self.targets)}"
            )
        self.step(self.sparsity)
        return model

    def _modules(self) -> dict[str, nn.Module]:
        if self.model is None:
            raise UserError("Pruner.prepare(model) must be called first")
        mods = dict(self.model.named_modules())
        return {n: mods[n] for n in self.targets}

    @torch.no_grad()
    def step(self, sparsity: float | None = None) -> None:
        """Recompute the masks from the current weights at `sparsity` and apply them."""
        if sparsity is not None:
            self.sparsity = check_sparsity(sparsity)
        mods = self._modules()
        scores = {n: self.importance(m.weight) for n, m in mods.items()}
        if self.scope == "global":
            self.masks = global_element_masks(scores, self.sparsity)
        else:
            for n, s in scores.items():
                sp = self.sparsity
                if n in self.layer_sparsity:  # per-layer ratios scale with the schedule
                    frac = self.sparsity / self.base_sparsity if self.base_sparsity > 0 else 1.0
                    sp = min(self.layer_sparsity[n] * frac, 0.999)
                self.masks[n] = compute_mask(s, sp, self.granularity, self.n, self.m)
        self.apply()

    @torch.no_grad()
    def apply(self) -> None:
        """Zero the pruned weights again (after an optimizer step)."""
        for n, m in self._modules().items():
            m.weight.mul_(self.masks[n].to(m.weight.dtype))

    @torch.no_grad()
    def mask_grads(self) -> None:
        for n, m in self._modules().items():
            if m.weight.grad is not None:
                m.weight.grad.mul_(self.masks[n].to(m.weight.grad.dtype))

    def squash_mask(self) -> nn.Module:
        """Bake the masks into the weights, detach from the model and return it."""
        if self.model is None:
            raise UserError("Pruner.prepare(model) must be called first")
        self.apply()
        model, self.model, self.masks = self.model, None, {}
        return model

    def hook(self) -> MaskHook:
        return MaskHook(self)

    def state_dict(self) -> dict:
        return {
            "sparsity": self.sparsity,
            "granularity": self.granularity,
            "scope": self.scope,
            "masks": {k: v.clone() for k, v in self.masks.items()},
        }

    def load_state_dict(self, state: dict) -> None:
        self.sparsity = check_sparsity(state["sparsity"])
        self.masks = {k: v.bool() for k, v in state["masks"].items()}

    def layer_sparsities(self) -> dict[str, float]:
        """Achieved sparsity (fraction of zero weights) of each target layer."""
        return {n: 1.0 - m.float().mean().item() for n, m in self.masks.items()}


class MaskHook(Hook):
    """Keeps a `Pruner`'s masks applied through training: masked gradients are zeroed after
    backward, and masked weights re-zeroed after each optimizer step (momentum and weight
    decay would otherwise revive them)."""

    def __init__(self, pruner: Pruner) -> None:
        self.pruner = pruner

    def on_after_backward(self, model: nn.Module) -> None:
        self.pruner.mask_grads()

    def on_step_end(self, model: nn.Module, step: int) -> None:
        self.pruner.apply()


def sparsity_of(model: nn.Module, names: Iterable[str] | None = None) -> float:
    """Fraction of zero weights over the given (default: all conv/linear) layers."""
    mods = dict(model.named_modules())
    names = list(names) if names is not None else default_targets(model)
    total = sum(mods[n].weight.numel() for n in names)
    zeros = sum(int((mods[n].weight == 0).sum()) for n in names)
    return zeros / max(total, 1)
