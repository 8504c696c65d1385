"""One layer selection for every family (include / exclude fqn globs and a predicate), and the
base of every method config, which carries it.

>>> from torch import nn
>>> net = nn.Sequential(nn.Conv2d(1, 4, 3), nn.ReLU(), nn.Flatten(), nn.Linear(4, 2))
>>> Selection(exclude=("3",)).names(net)
['0']
>>> Selection(include=("conv*",)).names(net)
Traceback (most recent call last):
...
slimkit.errors.UserError: include glob 'conv*' matches no layer; layers: 0, 3
"""

from __future__ import annotations

import fnmatch
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from torch import nn

from slimkit.errors import UserError

__all__ = ["MethodConfig", "Selection", "WEIGHT_LAYERS", "match_globs"]

WEIGHT_LAYERS = (nn.Conv2d, nn.Linear)


def match_globs(names: Sequence[str], globs: Iterable[str], what: str) -> set[str]:
    """Names matched by any glob; a glob that matches nothing raises, naming it."""
    hit: set[str] = set()
    for g in globs:
        found = {n for n in names if fnmatch.fnmatchcase(n, g)}
        if not found:
            shown = ", ".join(list(names)[:16]) + (", ..." if len(names) > 16 else "")
            raise UserError(f"{what} glob {g!r} matches no layer; layers: {shown}")
        hit |= found
    return hit


@dataclass(frozen=True)
class Selection:
    """Which layers a method touches: candidates whose fqn matches an `include` glob, no
    `exclude` glob, and `filter_fn(module, fqn)` (when given)."""

    include: tuple[str, ...] = ("*",)
    exclude: tuple[str, ...] = ()
    filter_fn: Callable[[nn.Module, str], bool] | None = None

    def __post_init__(self) -> None:
        for name in ("include", "exclude"):
            value = getattr(self, name)
            if isinstance(value, str) or not all(isinstance(g, str) for g in value):
                raise UserError(f"{name} must be a list of fqn globs, got {value!r}")
            object.__setattr__(self, name, tuple(value))

    def candidates(self, model: nn.Module, types: tuple = WEIGHT_LAYERS) -> list[str]:
        return [n for n, m in model.named_modules() if n and isinstance(m, types)]

    def names(self, model: nn.Module, types: tuple = WEIGHT_LAYERS) -> list[str]:
        """Selected layer fqns in model order."""
        cands = self.candidates(model, types)
        chosen = match_globs(cands, self.include, "include")
        chosen -= match_globs(cands, self.exclude, "exclude")
        out = [n for n in cands if n in chosen]
        if self.filter_fn is not None:
            out = [n for n in out if self.filter_fn(model.get_submodule(n), n)]
        return out

    def left_out(self, model: nn.Module, types: tuple = WEIGHT_LAYERS) -> list[str]:
        """Candidate layers not selected (exact names, usable as `ignore` globs)."""
        chosen = set(self.names(model, types))
        return [n for n in self.candidates(model, types) if n not in chosen]


def _globs(value: Any, name: str) -> tuple[str, ...]:
    if isinstance(value, str) or not isinstance(value, (tuple, list)) or \
            not all(isinstance(g, str) for g in value):
        raise UserError(f"{name} must be a list of fqn globs, got {value!r}")
    return tuple(value)


@dataclass(frozen=True)
class MethodConfig:
    """Base of every method config: which layers it touches (fqn globs; a glob that matches
    no layer raises). Subclasses add only the fields their method uses."""

    include: tuple[str, ...] = field(default=("*",), kw_only=True)
    exclude: tuple[str, ...] = field(default=(), kw_only=True)

    def __post_init__(self) -> None:
        object.__setattr__(self, "include", _globs(self.include, "include"))
        object.__setattr__(self, "exclude", _globs(self.exclude, "exclude"))

    def selection(self, ctx: Any = None) -> Selection:
        return Selection(self.include, self.exclude, None if ctx is None else ctx.filter_fn)
