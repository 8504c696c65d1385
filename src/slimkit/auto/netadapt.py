"""NetAdapt (Yang et al., "NetAdapt: Platform-Aware Neural Network Adaptation for Mobile
Applications", ECCV 2018): prune to a measured latency budget, one small step at a time.

Each iteration lowers the latency budget by ``step`` (a fraction of the original latency).
For every prunable channel group it removes the *fewest* channels (lowest L2 filter norm, as
in the paper) whose removal meets the new budget according to the latency lookup table
(:class:`slimkit.auto.lut.LatencyTable`), fine-tunes that proposal briefly ("short-term
fine-tune"), and scores it on a held-out loader. The best-scoring proposal becomes the
network of the next iteration; its latency is confirmed by measuring the whole network. The
loop stops at the target; a long-term fine-tune follows (``long_epochs``).

The input model is never modified; the result carries the model and a per-iteration report.
"""

from __future__ import annotations

import copy
import logging
import math
from dataclasses import asdict, dataclass, field
from typing import Callable, Iterable, Sequence

import torch
from torch import nn

from slimkit.auto.lut import LatencyTable
from slimkit.errors import UserError
from slimkit.auto.scoring import short_finetune, top1
from slimkit.selection import MethodConfig

__all__ = ["NetAdaptConfig", "NetAdaptResult", "Iteration", "netadapt"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class NetAdaptConfig(MethodConfig):
    """NetAdapt (Yang et al. 2018). target: latency as a fraction of the original (0.5 =
    half); step: budget cut per iteration as a fraction of the original latency (the paper's
    delta-R, decayed by `decay` each iteration); short_steps: SGD batches at `lr` per
    proposal; long_epochs: fine-tuning at the end; round_to: channel counts kept are
    multiples of N; confirm: measure the chosen network each iteration; backend: the latency
    table's runtime (onnxruntime or torch, batch 1, 1 thread, this host)."""

    target: float = 0.5
    step: float = 0.05
    decay: float = 1.0
    short_steps: int = 20
    long_epochs: int = 0
    lr: float = 0.01
    round_to: int = 1
    max_iterations: int = 100
    confirm: bool = True
    backend: str = "onnxruntime"

    def __post_init__(self) -> None:
        super().__post_init__()
        from slimkit.auto.lut import BACKENDS

        if self.backend not in BACKENDS:
            raise UserError(f"NetAdaptConfig.backend must be one of {', '.join(BACKENDS)}, got {self.backend!r}")
        if not 0.0 < self.target < 1.0:
            raise UserError(f"NetAdaptConfig.target must be in (0, 1) (a fraction of the original "
                            f"latency), got {self.target!r}")
        if not 0.0 < self.step < 1.0:
            raise UserError(f"NetAdaptConfig.step must be in (0, 1), got {self.step!r}")
        if not 0.0 < self.decay <= 1.0:
            raise UserError(f"NetAdaptConfig.decay must be in (0, 1], got {self.decay!r}")
        for name in ("short_steps", "long_epochs", "max_iterations"):
            if not isinstance(getattr(self, name), int) or getattr(self, name) < 0:
                raise UserError(f"NetAdaptConfig.{name} must be an int >= 0, got {getattr(self, name)!r}")
        if not isinstance(self.round_to, int) or self.round_to < 1:
            raise UserError(f"NetAdaptConfig.round_to must be an int >= 1, got {self.round_to!r}")
        if not (math.isfinite(self.lr) and self.lr > 0):
            raise UserError(f"NetAdaptConfig.lr must be a positive finite number, got {self.lr!r}")


@dataclass(frozen=True)
class Iteration:
    """One NetAdapt iteration: the group chosen, channels removed, scores and latencies."""

    index: int
    group: str
    removed: int
    kept: int
    score: float
    predicted_ms: float
    measured_ms: float | None
    proposals: int


@dataclass
class NetAdaptResult:
    model: nn.Module
    original_ms: float
    target_ms: float
    iterations: list[Iteration] = field(default_factory=list)
    reached: bool = False

    def table(self) -> str:
        rows = [f"| {i.index} | {i.group} | -{i.removed} ({i.kept} kept) | {100 * i.score:.2f}% | "
                f"{i.predicted_ms:.3f} | {'' if i.measured_ms is None else f'{i.measured_ms:.3f}'} |"
                for i in self.iterations]
        return "\n".join([
            f"original {self.original_ms:.3f} ms, target {self.target_ms:.3f} ms, "
            f"{'reached' if self.reached else 'NOT reached'}",
            "| iteration | group | channels | held-out top-1 | predicted ms | measured ms |",
            "|---|---|---|---|---|---|", *rows])

    def report(self) -> dict:
        return {"original_ms": self.original_ms, "target_ms": self.target_ms, "reached": self.reached,
                "iterations": [asdict(i) for i in self.iterations]}






def _keep_top(group, n_keep: int) -> torch.Tensor:
    with torch.no_grad():
        scores = group.weights(0).flatten(1).norm(dim=1)  # L2 filter norm (the paper's choice)
    return scores.topk(n_keep).indices.sort().values


def _fewest_to_remove(model, graph, group, budget_ms, predict, round_to) -> tuple[int, nn.Module, float] | None:
    """Smallest removal (in multiples of round_to) whose predicted latency meets the budget."""
    from slimkit.graph import shrink

    sizes = list(range(group.size - round_to, 0, -round_to))  # kept counts, largest first
    if not sizes:
        return None

    def attempt(kept: int):
        small = shrink(model, graph, {group.id: _keep_top(group, kept)})
        return small, predict(small)

    small, ms = attempt(sizes[-1])  # the most this group can give
    if ms > budget_ms:
        return None
    lo, hi = 0, len(sizes) - 1  # sizes[hi] meets the budget; find the first index that does
    best = (sizes[hi], small, ms)
    while lo < hi:
        mid = (lo + hi) // 2
        cand, cms = attempt(sizes[mid])
        if cms <= budget_ms:
            hi, best = mid, (sizes[mid], cand, cms)
        else:
            lo = mid + 1
    return best


def netadapt(model: nn.Module, config: NetAdaptConfig, *, input_shape: Sequence[int],
             train_loader: Iterable, val_loader: Iterable, table: LatencyTable | None = None,
             measure: Callable[[nn.Module], float] | None = None,
             long_finetune: Callable[[nn.Module], None] | None = None,
             ignore: Sequence[str] = ()) -> NetAdaptResult:
    """Run NetAdapt on a copy of ``model`` until its predicted latency is ``config.target`` x
    the original. ``table`` defaults to this host's cached onnxruntime batch-1 table;
    ``measure(model) -> ms`` confirms each chosen network (default: the table's backend, 1
    thread); ``long_finetune(model)`` replaces the default long-term fine-tune; ``ignore``:
    layers left whole."""
    from slimkit.graph import DependencyGraph

    table = table or LatencyTable.for_host(config.backend, 1, 1)
    if measure is None:
        from slimkit.metrics.latency import measure_latency, onnx_latency

        timer = onnx_latency if table.backend == "onnxruntime" else measure_latency

        def measure(m: nn.Module) -> float:
            return timer(m, input_shape, batch_size=table.batch_size, threads=1, repeats=30).median_ms

    def predict(m: nn.Module) -> float:
        return table.predict(m, input_shape).total_ms

    current = copy.deepcopy(model).eval()
    example = torch.zeros(1, *input_shape)
    original = predict(current)
    result = NetAdaptResult(current, original, config.target * original)
    budget_step = config.step * original
    latency = original
    for index in range(config.max_iterations):
        if latency <= result.target_ms:
            break
        budget = max(latency - budget_step, result.target_ms)
        graph = DependencyGraph.build(current, example, ignore=tuple(ignore))
        proposals = []
        for group in graph.prunable_groups:
            found = _fewest_to_remove(current, graph, group, budget, predict, config.round_to)
            if found is None:
                continue
            kept, small, ms = found
            short_finetune(small, train_loader, config.short_steps, config.lr, "netadapt")
            score = top1(small, val_loader, "netadapt")
            proposals.append((score, -ms, group.id, group.size - kept, kept, small, ms))
            log.info("netadapt %d: %s -> %d channels, %.3f ms, top-1 %.2f%%", index, group.id, kept,
                     ms, 100 * proposals[-1][0])
        if not proposals:
            log.warning("netadapt: no group can meet %.3f ms any more; stopping", budget)
            break
        score, _, gid, removed, kept, current, latency = max(proposals, key=lambda p: p[:2])
        measured = measure(current) if config.confirm else None
        result.iterations.append(Iteration(index, gid, removed, kept, score, latency, measured, len(proposals)))
        budget_step *= config.decay
    result.reached = latency <= result.target_ms
    if long_finetune is not None:
        long_finetune(current)
    elif config.long_epochs:
        from slimkit.train import fit

        fit(current, train_loader, epochs=config.long_epochs, lr=config.lr, progress=False)
    result.model = current.eval()
    return result
