"""torch.fx tracing with shape propagation, and resolution of ``ignore`` globs.

Ignored layers are traced as leaves: a layer the graph cannot see into (data-dependent
control flow, unknown ops) becomes one opaque node that is left whole.
"""

from __future__ import annotations

import fnmatch
from typing import Any, Iterable

import torch
from torch import fx, nn
from torch.fx.passes.shape_prop import ShapeProp

from slimkit.graph.errors import GraphError

__all__ = ["resolve_ignore", "trace", "as_tuple", "enclosing_module"]


def as_tuple(example_inputs: Any) -> tuple[Any, ...]:
    """``example_inputs`` as a tuple of positional arguments."""
    if isinstance(example_inputs, (tuple, list)):
        return tuple(example_inputs)
    return (example_inputs,)


def resolve_ignore(model: nn.Module, globs: Iterable[str] | None) -> set[str]:
    """Module names (fqn) matched by any glob; a glob that matches nothing raises."""
    if globs is None:
        return set()
    if isinstance(globs, str):
        raise GraphError(f"ignore must be a sequence of globs, not the string {globs!r}; "
                         f"write ignore=({globs!r},)")
    names = [n for n, _ in model.named_modules() if n]
    matched: set[str] = set()
    for glob in globs:
        hits = {n for n in names if fnmatch.fnmatchcase(n, glob)}
        if not hits:
            sample = ", ".join(names[:12]) + (", ..." if len(names) > 12 else "")
            raise GraphError(f"ignore glob {glob!r} matches no layer; layers are: {sample}")
        matched |= hits
    return matched


class _Tracer(fx.Tracer):
    """Default leaves (torch.nn layers) plus every ignored layer."""

    def __init__(self, leaves: set[str]) -> None:
        super().__init__()
        self._leaves = leaves

    def is_leaf_module(self, m: nn.Module, module_qualified_name: str) -> bool:
        return (module_qualified_name in self._leaves
                or super().is_leaf_module(m, module_qualified_name))


def trace(model: nn.Module, example_inputs: Any, leaves: set[str] = frozenset()) -> fx.GraphModule:
    """Symbolically trace ``model`` (``leaves`` kept opaque) and record every node's shape
    in ``node.meta["tensor_meta"]`` by running ``example_inputs`` through it."""
    tracer = _Tracer(set(leaves))
    try:
        graph = tracer.trace(model)
    except Exception as e:  # fx raises TraceError, TypeError, NotImplementedError, ...
        raise GraphError(
            f"torch.fx cannot trace {type(model).__name__}: {type(e).__name__}: {e}. "
            "Data-dependent control flow or Python-level ops on tensors stop tracing; add the "
            "offending layer to ignore (it is then traced as one opaque layer and left whole)"
        ) from e
    gm = fx.GraphModule(tracer.root, graph, type(model).__name__)
    modes = {m: m.training for m in model.modules()}
    gm.eval()
    try:
        with torch.no_grad():
            ShapeProp(gm).propagate(*as_tuple(example_inputs))
    except Exception as e:
        raise GraphError(f"running example_inputs through the traced {type(model).__name__} "
                         f"failed: {type(e).__name__}: {e}") from e
    finally:
        for m, mode in modes.items():
            m.training = mode
    return gm


def enclosing_module(node: fx.Node) -> str:
    """The fqn of the innermost module whose forward created ``node`` ('' at top level)."""
    if node.op == "call_module":
        return str(node.target)
    stack = node.meta.get("nn_module_stack") or {}
    if not stack:
        return ""
    last = list(stack.values())[-1]
    return str(last[0]) if isinstance(last, tuple) else str(next(reversed(stack)))
