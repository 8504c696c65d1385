"""Channel propagation over a traced model.

Every tensor of the fx graph carries a *channel map*: the sequence of channel sets (raw
groups) that make up its dim 1, each with a width (features per channel; H*W after a
flatten). Producers (conv, linear) open a group, channel-wise ops pass the map on,
``torch.cat`` concatenates maps, elementwise ops between tensors merge groups with
union-find (Li et al. 2017 and DepGraph, Fang et al. CVPR 2023, couple residual branches the
same way). Ops that mix channels in ways a keep-set cannot follow *fix* the groups involved
(never prunable); ops the graph does not know raise :class:`GraphError`.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from dataclasses import dataclass
from typing import Any, Optional

import torch
from torch import fx, nn

from slimkit.graph.errors import GraphError
from slimkit.graph.trace import enclosing_module


@dataclass(frozen=True)
class Seg:
    """``size`` channels of raw group ``gid``, each owning ``width`` features of dim 1."""

    gid: int
    size: int
    width: int = 1


CMap = Optional[tuple[Seg, ...]]


@dataclass(frozen=True)
class RawMember:
    gid: int
    module_name: str
    role: str
    offset: int
    width: int


class Propagator:
    """Walks ``gm.graph`` once, in topological order, filling ``maps`` and ``members``."""

    def __init__(self, gm: fx.GraphModule, ignored: set[str]) -> None:
        self.gm = gm
        self.modules = dict(gm.named_modules())
        self.ignored = ignored
        self.parent: list[int] = []
        self.sizes: list[int] = []
        self.labels: list[str] = []
        self.reasons: dict[int, list[str]] = defaultdict(list)
        self.members: list[RawMember] = []
        self.maps: dict[fx.Node, CMap] = {}
        self._calls: Counter[str] = Counter()

    # -- union-find over raw groups ------------------------------------------------------
    def new_group(self, size: int, label: str, reason: str | None = None) -> int:
        gid = len(self.parent)
        self.parent.append(gid)
        self.sizes.append(size)
        self.labels.append(label)
        if reason:
            self.reasons[gid].append(reason)
        return gid

    def find(self, gid: int) -> int:
        while self.parent[gid] != gid:
            self.parent[gid] = self.parent[self.parent[gid]]
            gid = self.parent[gid]
        return gid

    def union(self, a: int, b: int, node: fx.Node) -> None:
        ra, rb = self.find(a), self.find(b)
        if ra == rb:
            return
        if self.sizes[ra] != self.sizes[rb]:
            raise GraphError(f"node {node.name!r} couples channel sets of sizes "
                             f"{self.sizes[ra]} and {self.sizes[rb]}")
        lo, hi = min(ra, rb), max(ra, rb)  # the earlier group names the union
        self.parent[hi] = lo

    def fix(self, cmap: CMap, reason: str) -> None:
        """Mark every group in ``cmap`` as not prunable."""
        for seg in cmap or ():
            self.reasons[seg.gid].append(reason)

    # -- node helpers --------------------------------------------------------------------
    @staticmethod
    def shape(node: Any) -> torch.Size | None:
        if not isinstance(node, fx.Node):
            return None
        meta = node.meta.get("tensor_meta")
        return getattr(meta, "shape", None) if meta is not None and hasattr(meta, "shape") else None

    def fixed_output(self, node: fx.Node, reason: str) -> CMap:
        """A fresh, never-prunable channel set for a tensor the graph cannot see through."""
        shape = self.shape(node)
        if shape is None or len(shape) < 2:
            return None
        return (Seg(self.new_group(int(shape[1]), f"fixed:{node.name}", reason), int(shape[1])),)

    def cmap(self, arg: Any) -> CMap:
        """The channel map of a node argument (None for non-tensors and scalars)."""
        if not isinstance(arg, fx.Node):
            return None
        cm = self.maps.get(arg)
        if cm is None and self.shape(arg) is not None and len(self.shape(arg)) >= 2:
            cm = self.fixed_output(arg, f"tensor {arg.name!r} of unknown origin")
            self.maps[arg] = cm
        return cm

    def member(self, cmap: CMap, module_name: str, role: str) -> None:
        offset = 0
        for seg in cmap or ():
            self.members.append(RawMember(seg.gid, module_name, role, offset, seg.width))
            offset += seg.size * seg.width

    def unknown(self, node: fx.Node, what: str) -> GraphError:
        where = enclosing_module(node)
        way_out = (f"add {where!r} to ignore to leave that layer whole" if where
                   else "wrap it in a submodule and add that to ignore")
        return GraphError(f"node {node.name!r} ({what}) is on the channel path but the "
                          f"dependency graph does not know how channels flow through it; {way_out}")

    # -- the walk ------------------------------------------------------------------------
    def run(self) -> None:
        from slimkit.graph import _rules  # rules need Propagator; imported late

        for node in self.gm.graph.nodes:
            cm = _rules.visit(self, node)
            self.maps[node] = cm
            shape = self.shape(node)
            if cm is not None and shape is not None and len(shape) >= 2:
                total = sum(s.size * s.width for s in cm)
                if total != int(shape[1]):
                    raise GraphError(f"internal channel bookkeeping at node {node.name!r}: "
                                     f"{total} tracked features, tensor has {int(shape[1])}; "
                                     f"add {enclosing_module(node) or 'the layer'!r} to ignore")

    def count_call(self, node: fx.Node, module: nn.Module) -> None:
        name = str(node.target)
        self._calls[name] += 1
        has_params = any(True for _ in module.parameters(recurse=False))
        if self._calls[name] > 1 and has_params and name not in self.ignored:
            raise GraphError(f"layer {name!r} is called more than once (shared weights); its "
                             f"channels cannot be pruned per call; add {name!r} to ignore")
