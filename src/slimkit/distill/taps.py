"""Feature taps: record the outputs of named submodules with forward hooks.

Feature-based distillation (attention transfer, FSP, similarity preserving, NST) compares
intermediate feature maps of a teacher and a student. `taps(model, names)` is a context
manager that hooks the named modules (names as in `model.named_modules()`), stores their
latest outputs in `tap.features[name]`, and removes every hook on exit. Unknown names raise a
`UserError` listing close matches and candidates; nothing is silently ignored.

>>> with taps(model, ["layer2", "layer3"]) as tap:  # doctest: +SKIP
...     logits = model(x)
...     f2, f3 = tap.get(["layer2", "layer3"])      # (N, C, H, W) each
"""

from __future__ import annotations

import difflib
from collections.abc import Sequence
from typing import Self

from torch import Tensor, nn
from torch.utils.hooks import RemovableHandle

from slimkit.errors import UserError

_MAX_LISTED = 40


def module_names(model: nn.Module) -> list[str]:
    """Names of every submodule of `model` that can be tapped (the root excluded)."""
    return [n for n, _ in model.named_modules() if n]


def check_names(model: nn.Module, names: Sequence[str], what: str = "model") -> None:
    """Raise a `UserError` naming each unknown module name, with close matches and candidates."""
    if isinstance(names, str):
        raise UserError(f"module names must be a sequence of str, got the str {names!r}")
    known = module_names(model)
    known_set = set(known)
    unknown = [n for n in names if n not in known_set]
    if not unknown:
        return
    parts = []
    for n in unknown:
        close = difflib.get_close_matches(str(n), known, n=3)
        parts.append(
            f"{n!r}" + (f" (did you mean {', '.join(map(repr, close))}?)" if close else "")
        )
    listed = ", ".join(known[:_MAX_LISTED]) + (
        f", ... ({len(known)} in all)" if len(known) > _MAX_LISTED else ""
    )
    raise UserError(
        f"unknown module name(s) in {what} ({type(model).__name__}): {'; '.join(parts)}. "
        f"Candidates: {listed or '(no submodules)'}"
    )


class FeatureTaps:
    """Forward hooks on named submodules; `features[name]` holds each one's latest output.

    With `detach=True` stored outputs are detached (for a teacher). Modules returning a tuple
    or list store their first element. Use as a context manager; hooks are removed on exit.
    """

    def __init__(self, model: nn.Module, names: Sequence[str], detach: bool = False) -> None:
        check_names(model, names)
        self.model = model
        self.names: tuple[str, ...] = tuple(names)
        self.detach = detach
        self.features: dict[str, Tensor] = {}
        self._handles: list[RemovableHandle] = []

    def __enter__(self) -> Self:
        if self._handles:
            raise RuntimeError("FeatureTaps is already active")
        modules = dict(self.model.named_modules())
        for name in dict.fromkeys(self.names):  # unique, in order
            self._handles.append(modules[name].register_forward_hook(self._hook(name)))
        return self

    def __exit__(self, *exc: object) -> None:
        for h in self._handles:
            h.remove()
        self._handles.clear()

    @property
    def active(self) -> bool:
        return bool(self._handles)

    def _hook(self, name: str):
        def hook(module: nn.Module, inputs: tuple, output) -> None:
            if isinstance(output, (tuple, list)):
                output = output[0]
            if not isinstance(output, Tensor):
                raise TypeError(
                    f"tapped module {name!r} returned {type(output).__name__}, not a Tensor"
                )
            self.features[name] = output.detach() if self.detach else output

        return hook

    def get(self, names: Sequence[str] | None = None) -> list[Tensor]:
        """The latest outputs of `names` (default: all tapped names), in that order."""
        names = self.names if names is None else tuple(names)
        missing = [n for n in names if n not in self.features]
        if missing:
            raise RuntimeError(
                f"no output captured yet for {missing}; run a forward pass inside "
                f"the `with taps(...)` block first (tapped: {list(self.names)})"
            )
        return [self.features[n] for n in names]

    def clear(self) -> None:
        self.features.clear()


def taps(model: nn.Module, names: Sequence[str], detach: bool = False) -> FeatureTaps:
    """A `FeatureTaps` context manager over `model`'s submodules `names`."""
    return FeatureTaps(model, names, detach=detach)
