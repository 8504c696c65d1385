"""The model registry behind `slimkit.zoo.create`, filled by the `register_model` decorator.

Each entry is a builder `(num_classes, in_channels, **kwargs) -> nn.Module` plus the input
shape the model was designed for, so callers can build example inputs without guessing.
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass
from typing import Any, Callable

import torch  # noqa: F401  (used in the doctest)
from torch import nn

from slimkit._registry import Registry

Builder = Callable[..., nn.Module]


@dataclass(frozen=True)
class ModelEntry:
    """A registered model: its builder and its native (C, H, W) input shape."""

    name: str
    builder: Builder
    input_shape: tuple[int, int, int]
    family: str

    def __post_init__(self) -> None:
        if len(self.input_shape) != 3 or any(int(d) <= 0 for d in self.input_shape):
            raise ValueError(f"input_shape must be (C, H, W) of positive ints, got {self.input_shape!r}")


MODELS: Registry[ModelEntry] = Registry("model")


def register_model(
    name: str, *, input_shape: tuple[int, int, int], family: str
) -> Callable[[Builder], Builder]:
    """Decorator: add a builder `(num_classes, in_channels, **kw) -> nn.Module` to the zoo."""

    def add(builder: Builder) -> Builder:
        MODELS.register(name)(ModelEntry(name, builder, tuple(input_shape), family))
        return builder

    return add


def _check_positive_int(value: Any, what: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise ValueError(f"{what} must be a positive int, got {value!r}")
    return value


def create(name: str, num_classes: int = 10, in_channels: int | None = None, **kwargs: Any) -> nn.Module:
    """Build a fresh, randomly initialised model from the zoo.

    `in_channels` overrides the model's native input channels (e.g. 1 to run a CIFAR model on
    Fashion-MNIST); extra keyword arguments go to the builder (e.g. `width_mult` for
    mobilenetv2). Unknown names raise a KeyError listing the known ones.

    >>> model = create("resnet20", num_classes=10)
    >>> model(torch.zeros(1, *input_shape("resnet20"))).shape
    torch.Size([1, 10])
    """
    entry = MODELS.get(name)
    _check_positive_int(num_classes, "num_classes")
    options = set(inspect.signature(entry.builder).parameters) - {"num_classes", "in_channels"}
    unknown = sorted(set(kwargs) - options)
    if unknown:
        raise ValueError(f"model {name!r} does not take {unknown}; its options: {sorted(options) or 'none'}")
    channels = entry.input_shape[0] if in_channels is None else _check_positive_int(in_channels, "in_channels")
    return entry.builder(num_classes=num_classes, in_channels=channels, **kwargs)


def names() -> list[str]:
    """All registered model names, sorted."""
    return MODELS.names()


def input_shape(name: str, in_channels: int | None = None) -> tuple[int, int, int]:
    """The (C, H, W) input a model is designed for; `in_channels` replaces C."""
    c, h, w = MODELS.get(name).input_shape
    if in_channels is not None:
        c = _check_positive_int(in_channels, "in_channels")
    return (c, h, w)
