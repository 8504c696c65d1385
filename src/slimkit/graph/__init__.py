"""Pruning's dependency graph: which channels are coupled, and how to remove them.

``DependencyGraph.build`` traces a model with torch.fx and groups the channels that must be
removed together (DepGraph, Fang et al., CVPR 2023); ``apply_channel_mask`` zeroes a
keep-set's removed channels, ``shrink`` physically removes them.

>>> graph = DependencyGraph.build(model, torch.randn(1, 3, 32, 32))  # doctest: +SKIP
>>> keep = {g.id: torch.arange(g.size // 2) for g in graph.groups if g.prunable}  # doctest: +SKIP
>>> small = shrink(model, graph, keep)  # doctest: +SKIP
>>> delivered(graph, keep).params_ratio       # what the keep-set really removes  # doctest: +SKIP
"""

from slimkit.graph.delivered import Delivery, GroupDelivery, delivered
from slimkit.graph.errors import GraphError
from slimkit.graph.groups import ROLES, DependencyGraph, Group, Member, build_groups, weight_axis
from slimkit.graph.shrink import LayerPlan, apply_channel_mask, channel_plan, shrink

__all__ = [
    "DependencyGraph", "Group", "Member", "GraphError", "ROLES", "build_groups",
    "shrink", "apply_channel_mask", "channel_plan", "LayerPlan", "weight_axis",
    "delivered", "Delivery", "GroupDelivery",
]
