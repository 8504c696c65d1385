"""Channel propagation over a traced model.

Every channel a layer produces is an *atom* (an integer id). Each tensor of the fx graph
carries an *atom map*: a LongTensor laid over its dims 1..k (usually k = 1, the channel dim;
more after a permute or a flatten) telling which atom sits at each position. Producers (conv,
linear) create atoms, channel-wise ops pass the map on, ``cat``/``chunk``/views/permutes
rearrange it, and every constraint is a union of atoms (union-find): an elementwise op
unites the atoms it lines up (residual coupling: Li et al. 2017; DepGraph, Fang et al. CVPR
2023), a grouped conv or a GroupNorm unites the atoms of one group (whole groups removed
together), a ``chunk`` or a channel shuffle unites the atoms at the same place of each piece
(so every piece keeps the same count). A *unit* (one prunable channel of a group) is a class
of united atoms; a *group* is a connected set of layers. Ops that mix channels in ways a
keep-set cannot follow *fix* the groups involved (never prunable); ops the graph does not know
raise :class:`GraphError`.
"""

from __future__ import annotations

import bisect
from collections import defaultdict
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, fx, nn

from slimkit.graph import _rules
from slimkit.graph._cmap import CMap, compact, full, varies  # noqa: F401  (importable here too)
from slimkit.graph.errors import GraphError
from slimkit.graph.trace import enclosing_module


@dataclass(frozen=True)
class RawMember:
    """``positions`` along one axis of ``module_name``'s parameters hold ``atoms``."""

    module_name: str
    role: str
    positions: Tensor
    atoms: Tensor


class Propagator:
    """Walks ``gm.graph`` once, in topological order, filling ``maps`` and ``members``."""

    def __init__(self, gm: fx.GraphModule, ignored: set[str], grouped: str = "whole") -> None:
        self.gm = gm
        self.grouped = grouped
        self.modules = dict(gm.named_modules())
        self.ignored = ignored
        self.parent: list[int] = []  # atom union-find
        self.starts: list[int] = []  # first atom of each raw group
        self.sizes: list[int] = []
        self.labels: list[str] = []
        self.gparent: list[int] = []  # raw-group union-find (connected layers)
        self.reasons: dict[int, list[str]] = defaultdict(list)
        self.members: list[RawMember] = []
        self.maps: dict[fx.Node, CMap] = {}
        self.first_input: dict[str, Tensor | None] = {}
        self.produced: dict[str, Tensor] = {}
        self._starts_t: Tensor | None = None

    # -- atoms and groups ----------------------------------------------------------------
    def new_group(self, size: int, label: str, reason: str | None = None) -> Tensor:
        gid, start = len(self.sizes), len(self.parent)
        self.parent.extend(range(start, start + size))
        self.starts.append(start)
        self.sizes.append(size)
        self.labels.append(label)
        self.gparent.append(gid)
        self._starts_t = None
        if reason:
            self.reasons[gid].append(reason)
        return torch.arange(start, start + size)

    def gid_of(self, atoms: Tensor) -> Tensor:
        if self._starts_t is None:
            self._starts_t = torch.tensor(self.starts, dtype=torch.long)
        return torch.searchsorted(self._starts_t, atoms, right=True) - 1

    def find(self, a: int) -> int:
        parent = self.parent
        while parent[a] != a:
            parent[a] = parent[parent[a]]
            a = parent[a]
        return a

    def gfind(self, g: int) -> int:
        while self.gparent[g] != g:
            self.gparent[g] = self.gparent[self.gparent[g]]
            g = self.gparent[g]
        return g

    def union(self, a: int, b: int) -> None:
        ra, rb = self.find(a), self.find(b)
        if ra != rb:
            self.parent[max(ra, rb)] = min(ra, rb)  # the root is the smallest atom
        ga = self.gfind(bisect.bisect_right(self.starts, a) - 1)
        gb = self.gfind(bisect.bisect_right(self.starts, b) - 1)
        if ga != gb:
            self.gparent[max(ga, gb)] = min(ga, gb)  # the earlier group names the union

    def union_maps(self, a: Tensor, b: Tensor) -> None:
        """Unite the atoms of two equally shaped maps position by position."""
        n = len(self.parent)
        keys = (a.reshape(-1) * n + b.reshape(-1)).unique()
        for x, y in zip((keys // n).tolist(), (keys % n).tolist()):
            if x != y:
                self.union(x, y)

    def union_all(self, atoms: Tensor) -> None:
        uniq = atoms.reshape(-1).unique().tolist()
        for a in uniq[1:]:
            self.union(uniq[0], a)

    def union_rows(self, rows: Tensor) -> None:
        """Unite the atoms within each row of a 2-d map."""
        self.union_maps(rows[:, :1].expand_as(rows), rows)

    def roots(self, m: Tensor) -> Tensor:
        uniq, inv = m.unique(return_inverse=True)
        return torch.tensor([self.find(a) for a in uniq.tolist()], dtype=torch.long)[inv]

    def fix(self, cmap: CMap, reason: str) -> None:
        """Mark every group in ``cmap`` as not prunable."""
        for t in _tensors(cmap):
            for g in self.gid_of(t.reshape(-1).unique()).tolist():
                if reason not in self.reasons[g]:
                    self.reasons[g].append(reason)

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
        return self.new_group(int(shape[1]), f"fixed:{node.name}", reason)

    def cmap(self, arg: Any) -> CMap:
        """The atom map of a node argument (None for non-tensors and scalars)."""
        if not isinstance(arg, fx.Node):
            return None
        cm = self.maps.get(arg)
        if cm is None and self.shape(arg) is not None and len(self.shape(arg)) >= 2:
            cm = self.fixed_output(arg, f"tensor {arg.name!r} of unknown origin")
            self.maps[arg] = cm
        return cm

    def along(self, node: fx.Node, x: Any, axis: int) -> Tensor:
        """The atoms along ``axis`` of tensor ``x``; the map must not vary along other dims."""
        cm, shape = self.cmap(x), self.shape(x)
        f = full(cm, shape).movedim(axis - 1, 0).reshape(int(shape[axis]), -1)
        if not bool((f == f[:, :1]).all()):
            raise self.unknown(node, f"its input's channels are not laid out along dim {axis}")
        return f[:, 0].clone()

    def member(self, module_name: str, role: str, atoms: Tensor) -> None:
        self.members.append(RawMember(module_name, role, torch.arange(len(atoms)), atoms))

    def unknown(self, node: fx.Node, what: str) -> GraphError:
        where = enclosing_module(node)
        way_out = (f"add {where!r} to ignore to leave that layer whole" if where
                   else "wrap it in a submodule and add that to ignore")
        return GraphError(f"node {node.name!r} ({what}) is on the channel path but the "
                          f"dependency graph does not know how channels flow through it; {way_out}")

    # -- the walk ------------------------------------------------------------------------
    def run(self) -> None:
        for node in self.gm.graph.nodes:
            cm = _rules.visit(self, node)
            self.maps[node] = cm
            shape = self.shape(node)
            if isinstance(cm, Tensor) and shape is not None:
                if len(shape) < 1 + cm.dim() or tuple(shape[1:1 + cm.dim()]) != tuple(cm.shape):
                    raise GraphError(f"internal channel bookkeeping at node {node.name!r}: map "
                                     f"{tuple(cm.shape)} does not fit tensor {tuple(shape)}; "
                                     f"add {enclosing_module(node) or 'the layer'!r} to ignore")

    def reused(self, node: fx.Node, name: str, module: nn.Module, x: CMap) -> Tensor | None:
        """A layer with weights called again: its inputs in both calls share atoms (the same
        weights read them), and a producer's output is the first call's. Returns that output
        (None when the layer is not a producer or this is its first call)."""
        if not any(True for _ in module.parameters(recurse=False)):
            return None
        if name not in self.first_input:
            self.first_input[name] = x if isinstance(x, Tensor) else None
            return None
        first = self.first_input[name]
        if isinstance(first, Tensor) and isinstance(x, Tensor):
            k = max(first.dim(), x.dim())
            shape = (0,) + tuple(self.shape(node.args[0])[1:1 + k])
            try:
                self.union_maps(full(first, shape), full(x, shape))
            except RuntimeError:
                self.fix([first, x], f"layer {name!r} is called on differently shaped inputs")
        return self.produced.get(name)


def _tensors(cmap: CMap) -> list[Tensor]:
    if cmap is None:
        return []
    if isinstance(cmap, Tensor):
        return [cmap]
    return [t for c in cmap for t in _tensors(c)]
