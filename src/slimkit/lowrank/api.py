"""One entry point: `decompose(model, LowRankConfig(...))` -> a new, factorised module.

Every Linear/Conv2d whose name matches ``include`` (fqn globs) and none of ``exclude`` is replaced
by the method's factorisation (svd: two layers; tucker: three convs; cp: four convs) at the
rank chosen by ``rank_selection``. A layer the method does not handle, or whose factorisation
would not cut its parameters (or, with an example input, would raise its MACs), is left as it
is and reported with the reason. A glob that matches no layer raises.

>>> import torch.nn as nn
>>> net = nn.Sequential(nn.Linear(64, 64), nn.ReLU(), nn.Linear(64, 10))
>>> res = decompose_with_report(net, LowRankConfig(method="svd", rank=8, include=("0",)))
>>> [r.status for r in res.layers], res.layers[0].params_after
(['decomposed'], 1088)
"""

from __future__ import annotations

import copy
from dataclasses import InitVar, dataclass, field
from typing import Any, Sequence

import torch
from torch import nn

from slimkit.selection import MethodConfig
from slimkit.selection import Selection
from slimkit.errors import UserError
from slimkit.lowrank.methods import METHODS, Site, original_cost
from slimkit.lowrank.ranks import RANK_SELECTIONS, select_rank
from slimkit.lowrank.svd import SCHEMES

__all__ = ["LayerReport", "LowRankConfig", "LowRankResult", "decompose", "decompose_with_report"]


def _is_count(x: object) -> bool:
    return isinstance(x, int) and not isinstance(x, bool) and x >= 1


@dataclass(frozen=True)
class LowRankConfig(MethodConfig):
    """What to factorise (``include`` / ``exclude`` fqn globs) and how to choose ranks
    (validated on construction). ``layers`` / ``skip`` are the older names of
    ``include`` / ``exclude``."""

    method: str = "svd"  # a METHODS key: svd, tucker, cp
    rank_selection: str = "fixed"  # a RANK_SELECTIONS key: fixed, energy, vbmf, params, macs
    rank: int | tuple[int, int] | None = None  # fixed: int, or (R_out, R_in) for tucker
    energy: float | None = None  # energy: fraction of sum(sigma^2) kept, in (0, 1]
    budget: float | None = None  # params/macs: fraction of the layer's cost kept, in (0, 1)
    scheme: str = "channel"  # svd of a conv: "channel" (kxk then 1x1) or "spatial" (kx1, 1xk)
    n_iter: int | None = None  # HOOI sweeps (tucker, default 5) / ALS sweeps (cp, default 100)
    seed: int = 0
    layers: InitVar[tuple[str, ...] | None] = None
    skip: InitVar[tuple[str, ...] | None] = None

    def __post_init__(self, layers=None, skip=None) -> None:
        if layers is not None:
            object.__setattr__(self, "include", layers)
        if skip is not None:
            object.__setattr__(self, "exclude", skip)
        super().__post_init__()
        for name, reg in (("method", METHODS), ("rank_selection", RANK_SELECTIONS),
                          ("scheme", SCHEMES)):
            value = getattr(self, name)
            if value not in reg:
                raise UserError(f"unknown {name} {value!r}; known: {', '.join(reg.names())}")
        sel = self.rank_selection
        needed = {"fixed": "rank", "energy": "energy", "params": "budget", "macs": "budget"}
        for name in ("rank", "energy", "budget"):
            if getattr(self, name) is not None and needed.get(sel) != name:
                raise UserError(f"{name}={getattr(self, name)!r} is not used by "
                                f"rank_selection={sel!r}; leave it None")
        if sel in needed and getattr(self, needed[sel]) is None:
            raise UserError(f"rank_selection={sel!r} needs {needed[sel]}=...")
        if sel == "fixed":
            r = self.rank
            pair = isinstance(r, (tuple, list)) and len(r) == 2 and all(map(_is_count, r))
            if self.method == "tucker" and pair:
                object.__setattr__(self, "rank", tuple(r))
            elif not _is_count(r):
                allowed = "an int >= 1 or an (R_out, R_in) pair" if self.method == "tucker" \
                    else "an int >= 1"
                raise UserError(f"rank must be {allowed} for method={self.method!r}, got {r!r}")
        if sel == "energy":
            if not isinstance(self.energy, (int, float)) or not 0.0 < self.energy <= 1.0:
                raise UserError(f"energy must be in (0, 1], got {self.energy!r}")
            if METHODS.get(self.method).spectra is None:
                raise UserError(f"rank_selection='energy' is not defined for "
                                f"method={self.method!r}; use fixed, vbmf, params or macs")
        if sel in ("params", "macs"):
            if not isinstance(self.budget, (int, float)) or not 0.0 < self.budget < 1.0:
                raise UserError(f"budget must be in (0, 1), got {self.budget!r}")
        if self.n_iter is not None and (isinstance(self.n_iter, bool)
                                        or not isinstance(self.n_iter, int) or self.n_iter < 1):
            raise UserError(f"n_iter must be None or an int >= 1, got {self.n_iter!r}")
        if isinstance(self.seed, bool) or not isinstance(self.seed, int):
            raise UserError(f"seed must be an int, got {self.seed!r}")


@dataclass(frozen=True)
class LayerReport:
    """What happened to one selected layer; MACs are None without an example input."""

    name: str
    kind: str  # "Linear" or "Conv2d"
    status: str  # "decomposed" or "skipped"
    rank: Any = None
    params_before: int = 0
    params_after: int = 0
    macs_before: int | None = None
    macs_after: int | None = None
    rel_error: float | None = None  # ||W - W_hat||_F / ||W||_F of the kernel
    reason: str = ""


@dataclass(frozen=True)
class LowRankResult:
    """The new model and one `LayerReport` per selected layer."""

    model: nn.Module
    layers: tuple[LayerReport, ...] = field(default_factory=tuple)

    def decomposed(self) -> list[LayerReport]:
        return [r for r in self.layers if r.status == "decomposed"]

    def skipped(self) -> list[LayerReport]:
        return [r for r in self.layers if r.status == "skipped"]

    def table(self) -> str:
        """A markdown table of the per-layer outcome."""
        rows = ["| layer | kind | status | rank | params | MACs | rel. error | note |",
                "|---|---|---|---|---|---|---|---|"]
        for r in self.layers:
            macs = "" if r.macs_before is None else f"{r.macs_before:,} -> {r.macs_after:,}"
            err = "" if r.rel_error is None else f"{r.rel_error:.4f}"
            rank = "" if r.rank is None else r.rank
            rows.append(f"| {r.name} | {r.kind} | {r.status} | {rank} | {r.params_before:,} -> "
                        f"{r.params_after:,} | {macs} | {err} | {r.reason} |")
        return "\n".join(rows)


def _candidates(model: nn.Module) -> dict[str, nn.Module]:
    return {n: m for n, m in model.named_modules() if n and isinstance(m, (nn.Linear, nn.Conv2d))}


def input_shapes(model: nn.Module, names: list[str], input_shape: Sequence[int]) -> dict[str, tuple]:
    """Input shape (batch 1) seen by each named layer in one forward pass."""
    seen: dict[str, tuple] = {}
    handles = []
    for name in names:
        def hook(mod, inputs, output, name=name):
            seen.setdefault(name, tuple(inputs[0].shape))
        handles.append(model.get_submodule(name).register_forward_hook(hook))
    was_training = model.training
    try:
        model.eval()
        with torch.no_grad():
            model(torch.zeros(1, *input_shape))
    finally:
        model.train(was_training)
        for h in handles:
            h.remove()
    return seen


def _site(name: str, layer: nn.Module, shape: tuple | None) -> Site:
    if shape is None:
        return Site(name, layer)
    if isinstance(layer, nn.Conv2d):
        return Site(name, layer, in_hw=(shape[-2], shape[-1]))
    return Site(name, layer, positions=max(1, int(torch.Size(shape).numel()) // layer.in_features))


def _set(model: nn.Module, name: str, new: nn.Module) -> None:
    """Kept for callers of the old helper: `model.set_submodule(name, new)`."""
    model.set_submodule(name, new)


def decompose_with_report(model: nn.Module, config: LowRankConfig,
                          input_shape: Sequence[int] | None = None,
                          selection: Selection | None = None) -> LowRankResult:
    """Factorise a copy of ``model``; ``input_shape`` (C, H, W) enables MAC counts and rules.
    ``selection`` (default: the config's include / exclude) picks the layers."""
    if not isinstance(model, nn.Module):
        raise UserError(f"model must be an nn.Module, got {type(model).__name__}")
    if not isinstance(config, LowRankConfig):
        raise UserError(f"config must be a LowRankConfig, got {type(config).__name__}")
    new = copy.deepcopy(model)
    cands = _candidates(new)
    order = (selection or config.selection()).names(new)
    shapes = input_shapes(new, order, input_shape) if input_shape is not None else {}
    method = METHODS.get(config.method)
    reports = []
    for name in order:
        layer = cands[name]
        site = _site(name, layer, shapes.get(name))
        params0, macs0 = original_cost(site)
        base = dict(name=name, kind=type(layer).__name__, params_before=params0,
                    params_after=params0, macs_before=macs0, macs_after=macs0)
        reason = method.unsupported(site)
        if reason is not None:
            reports.append(LayerReport(status="skipped", reason=f"{config.method}: {reason}",
                                       **base))
            continue
        rank = select_rank(method, site, config)
        params1, macs1 = method.cost(site, rank, config)
        if params1 >= params0 or (macs1 is not None and macs1 >= macs0):
            what = "params" if params1 >= params0 else "MACs"
            after = params1 if what == "params" else macs1
            before = params0 if what == "params" else macs0
            reports.append(LayerReport(status="skipped", rank=rank, reason=(
                f"rank {rank} would not reduce {what} ({before:,} -> {after:,})"), **base))
            continue
        replacement, err = method.build(site, rank, config)
        replacement.train(layer.training)
        new.set_submodule(name, replacement)
        base.update(params_after=params1, macs_after=macs1)
        reports.append(LayerReport(status="decomposed", rank=rank, rel_error=err, **base))
    return LowRankResult(new, tuple(reports))


def decompose(model: nn.Module, config: LowRankConfig,
              input_shape: Sequence[int] | None = None) -> nn.Module:
    """A factorised copy of ``model`` (the input is untouched); see `decompose_with_report`."""
    return decompose_with_report(model, config, input_shape).model
