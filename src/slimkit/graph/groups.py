"""Dependency groups: the sets of coupled channels that structured pruning must remove
together (DepGraph, Fang et al., "DepGraph: Towards Any Structural Pruning", CVPR 2023;
Li et al., "Pruning Filters for Efficient ConvNets", ICLR 2017, for the residual coupling).

>>> graph = DependencyGraph.build(model, torch.randn(1, 3, 32, 32), ignore=("fc",))  # doctest: +SKIP
>>> print(graph.groups[1].details())  # doctest: +SKIP
>>> keep = {g.id: g.out_weights()[0].abs().sum(1).topk(g.size // 2).indices.sort().values  # doctest: +SKIP
...         for g in graph.groups if g.prunable}
>>> small = shrink(model, graph, graph.round_keep(keep))  # doctest: +SKIP
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Iterable, Iterator, Mapping, NamedTuple, Sequence

import torch
from torch import Tensor, nn

from slimkit.errors import UserError
from slimkit.graph._propagate import Propagator
from slimkit.graph.trace import resolve_ignore, trace

__all__ = ["Member", "Group", "DependencyGraph", "build_groups", "ROLES", "weight_axis"]

ROLES = ("out", "in", "bn", "depthwise", "grouped")
OUT_ROLES = ("out", "depthwise", "grouped")


class Member(NamedTuple):
    """One layer's share of a group: ``role`` says which axis of its parameters is cut
    (``weight_axis``); ``positions`` along that axis belong to the group's channels
    ``units`` (a channel may own several positions: H*W features after a flatten, a whole conv
    group after a grouped conv). ``offset`` is the first position, ``width`` the positions
    per channel."""

    module_name: str
    module: nn.Module
    role: str
    offset: int
    width: int = 1
    positions: Tensor | None = None
    units: Tensor | None = None

    def layout(self, size: int) -> tuple[Tensor, Tensor]:
        """(positions, units), also for members built with only offset and width."""
        if self.positions is not None and self.units is not None:
            return self.positions, self.units
        n = size * self.width
        return (torch.arange(self.offset, self.offset + n),
                torch.arange(size).repeat_interleave(self.width))


def weight_axis(module: nn.Module, role: str) -> int:
    """The axis of ``module.weight`` a role cuts: ConvTranspose weights are (C_in, C_out/g, ...)."""
    transposed = isinstance(module, nn.modules.conv._ConvTransposeNd)
    if role == "in":
        return 0 if transposed else 1
    if role == "bn":
        return 0
    return 1 if transposed else 0


def _per_unit(t: Tensor, m: Member, size: int) -> Tensor:
    """Rows ``t[positions]`` gathered per channel: (size, k, *rest); channels owning fewer
    than k positions (or none, for a member seeing part of the group) are zero-padded."""
    pos, units = m.layout(size)
    n = pos.numel()
    if n and n % size == 0:
        k = n // size
        if torch.equal(pos, torch.arange(int(pos[0]), int(pos[0]) + n)) and \
                torch.equal(units, torch.arange(size).repeat_interleave(k)):
            return t.narrow(0, int(pos[0]), n).reshape(size, k, *t.shape[1:])
    counts = torch.bincount(units, minlength=size)
    k = max(int(counts.max()), 1)
    order = torch.argsort(units, stable=True)
    u = units[order]
    rank = torch.arange(n) - (torch.cumsum(counts, 0) - counts)[u]
    out = t.new_zeros((size, k) + tuple(t.shape[1:]))
    return out.index_put((u, rank), t[pos[order]])


@dataclass(eq=False)
class Group:
    """A set of ``size`` coupled channels; keeping channel ``i`` keeps every member position
    of channel ``i``. Weight accessors are differentiable (use ``torch.no_grad()`` for
    scores)."""

    id: str
    size: int
    members: list[Member]
    reasons: tuple[str, ...] = ()
    round_to: int = 1

    @property
    def prunable(self) -> bool:
        return not self.reasons

    def _select(self, role: str) -> list[Member]:
        return [m for m in self.members if m.role == role]

    def _rows(self, m: Member) -> Tensor:
        w = m.module.weight
        return _per_unit(w.movedim(weight_axis(m.module, m.role), 0), m, self.size)

    def out_weights(self) -> list[Tensor]:
        """Each producer's (and depthwise/grouped conv's) filters, reshaped (size, -1)."""
        return [self._rows(m).reshape(self.size, -1)
                for m in self.members if m.role in OUT_ROLES]

    def in_weights(self) -> list[Tensor]:
        """Each consumer's input slice per channel, reshaped (size, -1); a linear layer after
        a flatten contributes the H*W columns each channel owns."""
        out = []
        for m in self._select("in"):
            r = self._rows(m)  # (size, k, O, ...)
            out.append((r.movedim(1, 2) if r.dim() > 2 else r).reshape(self.size, -1))
        return out

    def bn_weights(self) -> list[Tensor]:
        """Per-channel scales (gamma) of the group's affine norm layers, (size,) each (the
        mean |gamma| when a channel owns several entries: GroupNorm groups, LayerNorm([C,H,W]))."""
        out = []
        for m in self._select("bn"):
            if getattr(m.module, "weight", None) is None:
                continue
            r = self._rows(m)
            out.append(r.reshape(self.size) if r[0].numel() == 1
                       else r.reshape(self.size, -1).abs().mean(1))
        return out

    def weights(self, dim: int = 0) -> Tensor:
        """All out-weights (dim=0) or in-weights (dim=1) side by side: (size, total)."""
        if dim not in (0, 1):
            raise ValueError(f"dim must be 0 (out weights) or 1 (in weights), got {dim!r}")
        ws = self.out_weights() if dim == 0 else self.in_weights()
        if not ws:
            raise UserError(f"group {self.id!r} has no {'out' if dim == 0 else 'in'} weights")
        return torch.cat(ws, dim=1)

    def positions(self, member: Member, channels: Tensor) -> Tensor:
        """The positions along ``member``'s cut axis that belong to ``channels`` (e.g. the
        weight rows to zero for soft filter pruning)."""
        pos, units = member.layout(self.size)
        return pos[torch.isin(units, torch.as_tensor(channels, dtype=torch.long))]

    def details(self) -> str:
        state = "prunable" if self.prunable else "not prunable: " + "; ".join(self.reasons)
        lines = [f"Group {self.id!r}: {self.size} channels, {state}"]
        for m in self.members:
            dim = weight_axis(m.module, m.role) if hasattr(m.module, "weight") else 0
            pos, _ = m.layout(self.size)
            contiguous = pos.numel() and int(pos[-1]) - int(pos[0]) + 1 == pos.numel()
            span = (f"[{int(pos[0])}:{int(pos[-1]) + 1}]" if contiguous
                    else f"{pos.numel()} positions")
            per = f" ({self.size} ch x {m.width} features)" if m.width > 1 else ""
            lines.append(f"  {m.role:<9} {m.module_name:<28} {type(m.module).__name__:<12} "
                         f"dim {dim} {span}{per}")
        return "\n".join(lines)

    def __repr__(self) -> str:
        return (f"Group(id={self.id!r}, size={self.size}, prunable={self.prunable}, "
                f"members={len(self.members)})")


def _check_no_member_emptied(g: Group, keep: Tensor) -> None:
    """A layer that would lose all of its channels (a branch made of whole removed units)
    cannot be shrunk to zero width."""
    for m in g.members:
        _, units = m.layout(g.size)
        if units.numel() and not bool(torch.isin(units, keep).any()):
            raise UserError(f"keep[{g.id!r}] removes every channel {m.module_name!r} "
                            f"({m.role}) has in this group; keep at least one of its channels "
                            f"{sorted(set(units.tolist()))[:10]}")


def _check_round_to(round_to: Any) -> int:
    if isinstance(round_to, bool) or not isinstance(round_to, int) or round_to < 1:
        raise UserError(f"round_to must be an int >= 1, got {round_to!r}")
    return round_to


@dataclass(eq=False)
class DependencyGraph:
    """The coupled channel groups of one traced model."""

    groups: list[Group]
    round_to: int = 1
    ignored: frozenset[str] = frozenset()
    signatures: dict[str, tuple[str, tuple[int, ...]]] = field(default_factory=dict)
    n_params: int = 0  # parameters of the whole model (for ``delivered``)

    @classmethod
    def build(cls, model: nn.Module, example_inputs: Any, ignore: Sequence[str] | None = (),
              round_to: int = 1, grouped: str = "whole") -> "DependencyGraph":
        """Trace ``model`` on ``example_inputs`` and group its coupled channels.

        ``ignore``: fqn globs of layers left whole (a glob matching nothing raises);
        ``round_to``: kept channel counts must be multiples of it (see ``round_keep``);
        ``grouped``: how grouped (non-depthwise) convs prune: "whole" removes whole conv
        groups (DepGraph), "within" keeps every group and removes the same places of each
        group's inputs and outputs."""
        round_to = _check_round_to(round_to)
        if grouped not in ("whole", "within"):
            raise UserError(f"grouped must be 'whole' or 'within', got {grouped!r}")
        ignored = resolve_ignore(model, ignore)
        gm = trace(model, example_inputs, ignored)
        prop = Propagator(gm, ignored, grouped)
        prop.run()
        graph = cls._assemble(prop, round_to, frozenset(ignored))
        graph.n_params = sum(p.numel() for p in model.parameters())
        return graph

    @classmethod
    def _assemble(cls, prop: Propagator, round_to: int,
                  ignored: frozenset[str]) -> "DependencyGraph":
        n_atoms = len(prop.parent)
        root = torch.tensor([prop.find(a) for a in range(n_atoms)], dtype=torch.long)
        comp_of_gid = torch.tensor([prop.gfind(g) for g in range(len(prop.sizes))],
                                   dtype=torch.long)
        comp = comp_of_gid[prop.gid_of(torch.arange(n_atoms))]
        unit = torch.zeros(n_atoms, dtype=torch.long)
        sizes: dict[int, int] = {}
        for c in comp.unique().tolist():
            atoms = (comp == c).nonzero().flatten()
            uniq, inv = root[atoms].unique(return_inverse=True)  # units ordered by first atom
            unit[atoms] = inv
            sizes[c] = len(uniq)
        members: dict[int, list[Member]] = {c: [] for c in sizes}
        seen_members: set[tuple] = set()
        for rm in prop.members:
            cs = comp[rm.atoms]
            for c in dict.fromkeys(cs.tolist()):
                sel = cs == c
                pos, units = rm.positions[sel], unit[rm.atoms[sel]]
                key = (rm.module_name, rm.role, tuple(pos.tolist()), tuple(units.tolist()))
                if key in seen_members:
                    continue  # a layer called twice
                seen_members.add(key)
                width = int(torch.bincount(units).max())
                members[c].append(Member(rm.module_name, prop.modules[rm.module_name], rm.role,
                                         int(pos.min()), width, pos, units))
        groups, seen = [], set()
        for c in sorted(sizes):
            gids = (comp_of_gid == c).nonzero().flatten().tolist()
            reasons = list(dict.fromkeys(r for g in gids for r in prop.reasons.get(g, ())))
            ms = sorted(members[c], key=lambda m: ROLES.index(m.role))
            if not reasons and not any(m.role == "out" for m in ms):
                reasons.append("no layer produces these channels")
            gid = prop.labels[c]
            while gid in seen:
                gid += "'"
            seen.add(gid)
            groups.append(Group(gid, sizes[c], ms, tuple(reasons), round_to))
        sigs = {m.module_name: (type(m.module).__name__, tuple(m.module.weight.shape))
                for g in groups for m in g.members if getattr(m.module, "weight", None) is not None}
        return cls(groups, round_to, ignored, sigs)

    # -- lookup ----------------------------------------------------------------------------
    def __iter__(self) -> Iterator[Group]:
        return iter(self.groups)

    def __len__(self) -> int:
        return len(self.groups)

    def group(self, group_id: str) -> Group:
        by_id = {g.id: g for g in self.groups}
        if group_id in by_id:
            return by_id[group_id]
        known = ", ".join(g.id for g in self.groups[:20])
        raise UserError(f"unknown group {group_id!r}; groups are: {known}"
                        + (", ..." if len(self.groups) > 20 else ""))

    @property
    def prunable_groups(self) -> list[Group]:
        return [g for g in self.groups if g.prunable]

    def details(self) -> str:
        return "\n\n".join(g.details() for g in self.groups)

    # -- keep-sets -------------------------------------------------------------------------
    def check_keep(self, keep: Mapping[str, Any]) -> dict[str, Tensor]:
        """Validate a keep-set: known groups, in-range unique indices, never a whole group,
        only prunable groups, counts multiples of ``round_to``. Returns sorted LongTensors."""
        if not isinstance(keep, Mapping):
            raise UserError("keep must be a dict {group id: channel indices}, got "
                            f"{type(keep).__name__}")
        out: dict[str, Tensor] = {}
        for gid, idx in keep.items():
            g = self.group(gid)
            t = torch.as_tensor(idx)
            if t.dtype.is_floating_point or t.dtype == torch.bool or t.dim() != 1:
                raise UserError(f"keep[{gid!r}] must be a 1-d tensor of integer channel indices")
            t = t.to(torch.long).sort().values
            if t.numel() == 0:
                raise UserError(f"keep[{gid!r}] is empty: pruning every channel of group {gid!r} "
                                "is refused (it would cut the network)")
            if t[0] < 0 or t[-1] >= g.size or t.unique().numel() != t.numel():
                raise UserError(f"keep[{gid!r}] must hold unique indices in [0, {g.size}), got "
                                f"{t.tolist()[:10]}")
            if t.numel() < g.size and not g.prunable:
                raise UserError(f"group {gid!r} is not prunable ({'; '.join(g.reasons)})")
            if t.numel() < g.size and t.numel() % self.round_to:
                raise UserError(f"keep[{gid!r}] keeps {t.numel()} channels, not a multiple of "
                                f"round_to={self.round_to}; use graph.round_keep(keep)")
            if t.numel() < g.size:
                _check_no_member_emptied(g, t)
            out[gid] = t
        return out

    def round_keep(self, keep: Mapping[str, Any],
                   scores: Mapping[str, Tensor] | None = None) -> dict[str, Tensor]:
        """Round each kept count up to a multiple of ``round_to`` (at most the group size),
        adding back the best-scored removed channels (default score: L1 norm of the
        group's out-weights)."""
        out = {}
        for gid, idx in keep.items():
            g = self.group(gid)
            t = torch.as_tensor(idx).to(torch.long).sort().values
            n = t.numel()
            target = min(g.size, -(-max(n, 1) // self.round_to) * self.round_to)
            if target > n:
                with torch.no_grad():
                    s = (scores[gid] if scores is not None and gid in scores
                         else g.weights(0).abs().sum(1)).detach().float().clone()
                s[t] = -float("inf")
                extra = s.topk(target - n).indices
                t = torch.cat([t, extra]).sort().values
            out[gid] = t
        return out


def build_groups(model: nn.Module, example_inputs: Any, ignore: Iterable[str] = (),
                 round_to: int = 1) -> list[Group]:
    """``DependencyGraph.build(...).groups``."""
    return DependencyGraph.build(model, example_inputs, tuple(ignore), round_to).groups
