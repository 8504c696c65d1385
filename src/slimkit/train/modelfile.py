"""Model files: a zoo name + constructor kwargs + state_dict (+ channel spec), never a pickle.

`load_model` rebuilds the network with `slimkit.zoo.create(arch, **arch_kwargs)`, resizes
layers to the stored channel spec (so structurally pruned models load), and loads the weights
with `torch.load(..., weights_only=True)`.

>>> save_model("lenet5.pt", model, arch="lenet5", arch_kwargs={"num_classes": 10}, top1=0.91)
>>> model = load_model("lenet5.pt")
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Mapping

from torch import nn

from slimkit.errors import UserError
from slimkit.train.checkpoint import atomic_torch_save, check_plain, safe_load
from slimkit.train.resize import channel_spec, resize_to_state_dict, shapes_match

MODEL_FORMAT = "slimkit.model/1"


def save_model(
    path: str | os.PathLike,
    model: nn.Module,
    *,
    arch: str,
    arch_kwargs: Mapping[str, Any] | None = None,
    **meta: Any,
) -> Path:
    """Write `model` as {"arch", "arch_kwargs", "state_dict", "meta"} atomically.

    `meta["channel_spec"]` is filled from the model (the sizes of its conv/linear/BN layers),
    so a channel-pruned model rebuilds from the same zoo name. Other `meta` must be JSON-able.
    """
    if not isinstance(arch, str) or not arch:
        raise ValueError(f"arch must be a zoo model name, got {arch!r}")
    model = getattr(model, "module", model)  # unwrap DistributedDataParallel
    meta = dict(meta)
    meta.setdefault("channel_spec", channel_spec(model))
    payload = {
        "format": MODEL_FORMAT,
        "arch": arch,
        "arch_kwargs": dict(arch_kwargs or {}),
        "state_dict": {k: v.detach().cpu() for k, v in model.state_dict().items()},
        "meta": meta,
    }
    check_plain(payload, "model file")
    return atomic_torch_save(payload, path)


def read_model_file(path: str | os.PathLike) -> dict[str, Any]:
    """The raw contents of a model file (validated), without building the model."""
    obj = safe_load(path, what="model file")
    missing = {"arch", "arch_kwargs", "state_dict"} - set(obj)
    if obj.get("format") != MODEL_FORMAT or missing:
        raise UserError(f"{path}: not a slimkit model file (missing {sorted(missing)})")
    return obj


def load_model(path: str | os.PathLike) -> nn.Module:
    """Rebuild the model stored at `path` from the zoo and load its weights (eval mode)."""
    from slimkit import zoo  # imported late: zoo sits beside train, not below it

    obj = read_model_file(path)
    try:
        model = zoo.create(obj["arch"], **obj["arch_kwargs"])
    except KeyError as exc:
        raise UserError(f"{path}: {exc.args[0] if exc.args else exc}") from None
    return build_from_state(model, obj["state_dict"], obj.get("meta", {}).get("channel_spec"),
                            source=str(path))


def build_from_state(
    model: nn.Module,
    state_dict: Mapping[str, Any],
    spec: Mapping[str, Mapping[str, int]] | None = None,
    source: str = "state_dict",
) -> nn.Module:
    """Resize `model` to `state_dict` (and `spec`) and load it strictly; returns it in eval mode."""
    resize_to_state_dict(model, state_dict, spec)
    bad = shapes_match(model, state_dict)
    if bad:
        raise UserError(f"{source}: shapes of {bad[:5]} do not fit the architecture")
    try:
        model.load_state_dict(state_dict, strict=True)
    except RuntimeError as exc:
        first = str(exc).strip().splitlines()[0]
        raise UserError(f"{source}: weights do not match the architecture: {first}") from None
    return model.eval()
