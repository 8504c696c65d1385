"""Per-layer sensitivity analysis and per-layer ratios from it (Han et al. 2015, fig. 6;
Li et al. 2017, section 4.2).

Prune one layer at a time at each sparsity, measure accuracy, and derive per-layer ratios:
each layer takes the largest sparsity whose accuracy drop stays below `max_drop`, then all
ratios are scaled by one factor so that the parameter-weighted sparsity meets the target.

>>> sens = sensitivity_analysis(model, lambda m: evaluate(m, val)["top1"], (0.25, 0.5, 0.75))  # doctest: +SKIP
>>> print(sens.to_markdown()); sens.plot("sensitivity.png")  # doctest: +SKIP
>>> ratios = sens.layer_ratios(target=0.8, max_drop=0.01)    # {layer: sparsity}  # doctest: +SKIP
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from slimkit.errors import UserError
from slimkit.pruning.importance import ELEMENT_IMPORTANCE
from slimkit.pruning.masks import check_sparsity, compute_mask, select_targets


@dataclass(frozen=True)
class Sensitivity:
    """`accuracy[layer][j]` is the score with only `layer` pruned to `sparsities[j]`."""

    baseline: float
    sparsities: tuple[float, ...]
    accuracy: dict[str, tuple[float, ...]]
    layer_params: dict[str, int]
    granularity: str = "element"

    def drop(self, layer: str) -> list[float]:
        return [self.baseline - a for a in self.accuracy[layer]]

    def to_markdown(self) -> str:
        head = "| layer | params | " + " | ".join(f"s={s:.2f}" for s in self.sparsities) + " |"
        sep = "|---|---:|" + "---:|" * len(self.sparsities)
        rows = [
            f"| {n} | {self.layer_params[n]} | " + " | ".join(f"{a:.4f}" for a in accs) + " |"
            for n, accs in self.accuracy.items()
        ]
        return "\n".join(
            [
                f"baseline: {self.baseline:.4f} ({self.granularity} granularity)",
                "",
                head,
                sep,
                *rows,
            ]
        )

    def plot(self, path: str | Path) -> Path:
        """Accuracy against sparsity, one line per layer, saved as PNG."""
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        fig, ax = plt.subplots(figsize=(6, 4))
        for n, accs in self.accuracy.items():
            ax.plot(self.sparsities, accs, marker="o", label=n)
        ax.axhline(self.baseline, color="grey", linestyle="--", linewidth=1, label="dense")
        ax.set_xlabel("sparsity of the layer")
        ax.set_ylabel("accuracy")
        ax.set_title(f"per-layer sensitivity ({self.granularity})")
        ax.legend(fontsize=7)
        fig.tight_layout()
        path = Path(path)
        fig.savefig(path, dpi=100)
        plt.close(fig)
        return path

    def tolerated(self, max_drop: float) -> dict[str, float]:
        """Per layer, the largest measured sparsity whose accuracy drop is below `max_drop`."""
        out = {}
        for n in self.accuracy:
            ok = [s for s, d in zip(self.sparsities, self.drop(n)) if d < max_drop]
            out[n] = max(ok, default=0.0)
        return out

    def layer_ratios(self, target: float, max_drop: float, cap: float = 0.99) -> dict[str, float]:
        """Per-layer sparsities, proportional to what each layer tolerates, scaled so that the
        parameter-weighted sparsity equals `target` (each capped at `cap`)."""
        check_sparsity(target, "target")
        tol = self.tolerated(max_drop)
        if all(v == 0 for v in tol.values()):
            tol = {n: 1.0 for n in tol}  # nothing tolerated: fall back to uniform
        total = sum(self.layer_params.values())

        def achieved(c: float) -> float:
            return sum(min(c * tol[n], cap) * self.layer_params[n] for n in tol) / total

        lo, hi = 0.0, 1.0
        while achieved(hi) < target and hi < 1e6:
            hi *= 2
        if achieved(hi) < target:
            raise UserError(
                f"target sparsity {target} is out of reach with each layer capped at {cap}"
            )
        for _ in range(60):
            mid = (lo + hi) / 2
            lo, hi = (mid, hi) if achieved(mid) < target else (lo, mid)
        return {n: min(hi * tol[n], cap) for n in tol}


@torch.no_grad()
def sensitivity_analysis(
    model: nn.Module,
    score: Callable[[nn.Module], float],
    sparsities: Sequence[float] = (0.25, 0.5, 0.75, 0.9),
    granularity: str = "element",
    importance: str = "magnitude",
    layers: Iterable[str] | None = None,
    ignore: Iterable[str] = (),
) -> Sensitivity:
    """Prune each layer alone (magnitude, at `granularity`) at each sparsity and record
    `score(model)` (e.g. validation top-1). `model` is not changed."""
    if not sparsities:
        raise ValueError("sparsities must not be empty")
    for s in sparsities:
        check_sparsity(s)
    crit = ELEMENT_IMPORTANCE.get(importance)
    names = select_targets(model, layers, ignore)
    work = copy.deepcopy(model)
    baseline = float(score(work))
    acc: dict[str, tuple[float, ...]] = {}
    for n in names:
        w = work.get_submodule(n).weight
        orig = w.detach().clone()
        row = []
        for s in sparsities:
            w.copy_(orig * compute_mask(crit(orig), s, granularity))
            row.append(float(score(work)))
        w.copy_(orig)
        acc[n] = tuple(row)
    params = {n: model.get_submodule(n).weight.numel() for n in names}
    return Sensitivity(baseline, tuple(float(s) for s in sparsities), acc, params, granularity)
