"""AMC: AutoML for Model Compression (He et al., ECCV 2018), channel pruning by a DDPG agent.

The agent walks the network's prunable channel groups in order. For each it sees the
paper's layer embedding (index, channels, input channels, kernel, stride, the group's MACs,
MACs already removed, MACs left after it, previous action; each scaled to [0, 1]) and
outputs a keep ratio in ``[min_keep, 1]``. The MAC budget is enforced by clipping the action
(the paper's "resource-constrained" mode): after each choice the remaining groups, pruned to
``min_keep``, must still fit, so every episode meets the budget. The reward is top-1 on a
held-out loader with no fine-tuning (the paper's ``R_err = -error``); channels are chosen by
L1 filter norm. The paper's per-layer least-squares reconstruction is not applied.

MACs of a keep plan come from an exact model: a conv or linear layer's MACs scale with the
kept fraction of its output and of its input channels (tested against counting the shrunk
network). Episodes are seeded; with ``checkpoint`` the search resumes where it stopped.
"""

from __future__ import annotations

import logging
import math
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Iterable, Mapping, Sequence

import torch
from torch import nn

from slimkit.auto.ddpg import DDPG
from slimkit.errors import UserError
from slimkit.auto.scoring import top1
from slimkit.selection import MethodConfig

__all__ = ["AMCConfig", "AMCResult", "MacModel", "amc"]

log = logging.getLogger(__name__)
_STATE_DIM = 9


@dataclass(frozen=True)
class AMCConfig(MethodConfig):
    """AMC channel pruning (He et al. 2018). target_macs: MACs budget as a fraction of the
    original; episodes: search episodes, the first `warmup` with random actions; min_keep:
    smallest keep ratio of a group (AMC: 0.2); seed: the agent's seed. Layers outside
    include/exclude are left whole."""

    target_macs: float = 0.5
    episodes: int = 100
    warmup: int = 20
    min_keep: float = 0.2
    seed: int = 0

    def __post_init__(self) -> None:
        super().__post_init__()
        if not 0.0 < self.target_macs < 1.0:
            raise UserError(f"AMCConfig.target_macs must be in (0, 1), got {self.target_macs!r}")
        if not 0.0 < self.min_keep < 1.0:
            raise UserError(f"AMCConfig.min_keep must be in (0, 1), got {self.min_keep!r}")
        for name in ("episodes", "warmup", "seed"):
            if not isinstance(getattr(self, name), int) or getattr(self, name) < 0:
                raise UserError(f"AMCConfig.{name} must be an int >= 0, got {getattr(self, name)!r}")
        if self.episodes < 1:
            raise UserError("AMCConfig.episodes must be >= 1")


class MacModel:
    """MACs of the network for any per-group kept fraction, without shrinking it."""

    def __init__(self, model: nn.Module, graph, input_shape: Sequence[int]) -> None:
        from slimkit.metrics import count_macs

        counts = count_macs(model, input_shape)
        self.total = counts.total
        self.layers: list[tuple[int, list[tuple[str, float]], list[tuple[str, float]]]] = []
        share: dict[str, dict[str, list[tuple[str, float]]]] = {}
        for g in graph.groups:
            for m in g.members:
                dim = "out" if m.role in ("out", "depthwise") else "in" if m.role == "in" else None
                if dim is not None:
                    share.setdefault(m.module_name, {"out": [], "in": []})[dim].append((g.id, g.size * m.width))
        for name, row in counts.per_layer.items():
            module = model.get_submodule(name)
            dims = _dims(module)
            if row.macs == 0 or dims is None:
                continue
            parts = share.get(name, {"out": [], "in": []})
            out = [(gid, w / dims[0]) for gid, w in parts["out"]]
            inn = [] if _depthwise(module) else [(gid, w / dims[1]) for gid, w in parts["in"]]
            self.layers.append((row.macs, out, inn))
        self.fixed = self.total - sum(m for m, _, _ in self.layers)

    def __call__(self, kept: Mapping[str, float]) -> float:
        """MACs when group ``g`` keeps the fraction ``kept[g]`` (absent: all) of its channels."""
        total = float(self.fixed)
        for macs, out, inn in self.layers:
            f_out = 1.0 - sum(share * (1.0 - kept.get(gid, 1.0)) for gid, share in out)
            f_in = 1.0 - sum(share * (1.0 - kept.get(gid, 1.0)) for gid, share in inn)
            total += macs * f_out * f_in
        return total

    def producer_macs(self, gid: str) -> float:
        return sum(macs * share for macs, out, _ in self.layers for g, share in out if g == gid)


def _dims(m: nn.Module) -> tuple[int, int] | None:
    if isinstance(m, nn.modules.conv._ConvNd):
        return m.out_channels, m.in_channels
    if isinstance(m, nn.Linear):
        return m.out_features, m.in_features
    return None


def _depthwise(m: nn.Module) -> bool:
    return isinstance(m, nn.modules.conv._ConvNd) and m.groups > 1 and m.groups == m.in_channels


def _group_features(group) -> tuple[float, float, float]:
    """(input channels, kernel size, stride) of the group's first producer conv/linear."""
    for m in group.members:
        if m.role == "out":
            mod = m.module
            if isinstance(mod, nn.modules.conv._ConvNd):
                return float(mod.in_channels), float(mod.kernel_size[0]), float(mod.stride[0])
            if isinstance(mod, nn.Linear):
                return float(mod.in_features), 1.0, 1.0
    return 1.0, 1.0, 1.0


@dataclass
class AMCResult:
    model: nn.Module
    keep: dict[str, float]
    reward: float
    macs: int
    original_macs: int
    episodes: list[dict] = field(default_factory=list)

    def table(self) -> str:
        rows = [f"| {g} | {k:.3f} |" for g, k in self.keep.items()]
        return "\n".join([f"best held-out top-1 {100 * self.reward:.2f}% at {self.macs:,} MACs "
                          f"({self.macs / self.original_macs:.3f} of {self.original_macs:,})",
                          "| group | kept fraction |", "|---|---|", *rows])




def _counts(groups, fractions: Mapping[str, float]) -> dict[str, int]:
    return {g.id: max(1, int(math.floor(g.size * fractions[g.id] + 1e-9))) for g in groups}


def _shrunk(model, graph, groups, counts: Mapping[str, int]) -> nn.Module:
    from slimkit.graph import shrink

    keep = {}
    with torch.no_grad():
        for g in groups:
            if counts[g.id] < g.size:
                scores = g.weights(0).flatten(1).abs().sum(1)  # L1 filter norm
                keep[g.id] = scores.topk(counts[g.id]).indices.sort().values
    return shrink(model, graph, keep)


def _plain(config: AMCConfig) -> dict:
    """The search-defining fields (not `episodes`: a longer search resumes a shorter one)."""
    d = asdict(config)
    d.pop("episodes")
    return {k: list(v) if isinstance(v, tuple) else v for k, v in d.items()}


def _save(path: Path, state: dict) -> None:
    import io

    from slimkit.fileio import atomic_write

    buf = io.BytesIO()
    torch.save(state, buf)
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(path, buf.getvalue())


def amc(model: nn.Module, config: AMCConfig, *, input_shape: Sequence[int], val_loader: Iterable,
        checkpoint: str | os.PathLike | None = None, ignore: Sequence[str] = ()) -> AMCResult:
    """Search per-group keep ratios for ``model`` under ``config.target_macs``; returns the best
    pruned copy (the input is untouched). With ``checkpoint``, progress is saved atomically
    after every episode and a rerun resumes from it. ``ignore``: layers left whole."""
    from slimkit.graph import DependencyGraph

    model = model.eval()
    graph = DependencyGraph.build(model, torch.zeros(1, *input_shape), ignore=tuple(ignore))
    groups = graph.prunable_groups
    if not groups:
        raise UserError("amc: the model has no prunable channel group")
    macs = MacModel(model, graph, input_shape)
    budget = config.target_macs * macs.total
    floor = {g.id: config.min_keep for g in groups}
    if macs(floor) > budget:
        raise UserError(f"amc: target_macs={config.target_macs} cannot be met even with every group at "
                        f"min_keep={config.min_keep} ({macs(floor) / macs.total:.3f} of the MACs remain)")
    max_size = max(g.size for g in groups)
    feats = [_group_features(g) for g in groups]
    max_in = max(f[0] for f in feats)
    group_macs = [macs.producer_macs(g.id) for g in groups]

    agent = DDPG(_STATE_DIM, 1, seed=config.seed)
    start, best, history = 0, None, []
    ckpt = Path(checkpoint) if checkpoint is not None else None
    if ckpt is not None and ckpt.exists():
        try:
            state = torch.load(ckpt, weights_only=True)
            agent.load_state_dict(state["agent"])
            start, history = int(state["episode"]), list(state["history"])
            if dict(state["config"]) != _plain(config):
                raise ValueError("it was written by a search with another configuration")
            best = state["best"]
        except Exception as exc:  # any corruption: one clear error, nothing overwritten
            raise UserError(f"{ckpt}: not an AMC checkpoint of this search ({type(exc).__name__}: {exc})") from None
        if len(best["keep"]) != len(groups) or set(best["keep"]) != {g.id for g in groups}:
            raise UserError(f"{ckpt}: an AMC checkpoint of another network")

    for episode in range(start, config.episodes):
        kept: dict[str, float] = {}
        states, actions = [], []
        prev = 1.0
        for t, g in enumerate(groups):
            rest = {h.id: config.min_keep for h in groups[t + 1:]}
            reduced = macs.total - macs({**kept, **{h.id: 1.0 for h in groups[t:]}})
            after = sum(group_macs[t + 1:])
            s = torch.tensor([t / len(groups), g.size / max_size, feats[t][0] / max_in, feats[t][1] / 7.0,
                              feats[t][2] / 2.0, group_macs[t] / macs.total, reduced / macs.total,
                              after / macs.total, prev], dtype=torch.float32)
            a = agent.random_action() if episode < config.warmup else agent.act(s)
            keep = config.min_keep + float(a[0]) * (1.0 - config.min_keep)
            lo, hi = config.min_keep, keep  # clip: the largest keep that leaves the budget reachable
            if macs({**kept, g.id: hi, **rest}) > budget:
                for _ in range(30):
                    mid = (lo + hi) / 2
                    lo, hi = (mid, hi) if macs({**kept, g.id: mid, **rest}) <= budget else (lo, mid)
                keep = lo
            kept[g.id] = keep
            prev = (keep - config.min_keep) / (1.0 - config.min_keep)
            states.append(s)
            actions.append(torch.tensor([prev], dtype=torch.float32))
        counts = _counts(groups, kept)
        small = _shrunk(model, graph, groups, counts)
        reward = top1(small, val_loader, "amc")
        fractions = {g.id: counts[g.id] / g.size for g in groups}
        agent.remember(states, actions, reward)
        if episode >= config.warmup:
            agent.update()
        history.append({"episode": episode, "reward": reward, "macs": macs(fractions)})
        if best is None or reward > best["reward"]:
            best = {"reward": reward, "keep": fractions}
        log.info("amc episode %d: top-1 %.2f%%, MACs %.3f", episode, 100 * reward, macs(fractions) / macs.total)
        if ckpt is not None:
            _save(ckpt, {"agent": agent.state_dict(), "episode": episode + 1, "history": history,
                         "best": best, "config": _plain(config)})

    counts = _counts(groups, best["keep"])
    small = _shrunk(model, graph, groups, counts)
    from slimkit.metrics import count_macs

    return AMCResult(small, dict(best["keep"]), float(best["reward"]), count_macs(small, input_shape).total,
                     macs.total, history)
