"""Model files: a zoo name + constructor kwargs + state_dict (+ channel spec), never a pickle.

`load_model` rebuilds the network with `slimkit.zoo.create(arch, **arch_kwargs)`, resizes
layers to the stored channel spec (so structurally pruned models load), and loads the weights
with `torch.load(..., weights_only=True)`. The file carries a SHA-256 of its whole content and
every field is validated on load (types, keys, shapes and dtypes against the rebuilt
architecture, finite weights); files of the checksum-less format ``slimkit.model/1`` load with
a warning. ``meta`` is plain JSON-able data (str-keyed dicts, lists, str, numbers, bool, None),
for instance a task description under ``meta["task"]``.

>>> save_model("lenet5.pt", model, arch="lenet5", arch_kwargs={"num_classes": 10}, top1=0.91)  # doctest: +SKIP
>>> model = load_model("lenet5.pt")  # doctest: +SKIP
"""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Any, Mapping

import torch
from torch import nn

from slimkit.errors import FormatError, UserError
from slimkit.fileio import atomic_write, check_state_dict, guard_load
from slimkit.train.checkpoint import (
    check_json_plain, check_plain, check_state, safe_load, seal, torch_writer, unseal,
)
from slimkit.train.resize import channel_spec, resize_to_state_dict, shapes_match

MODEL_FORMAT = "slimkit.model/2"           # /2 adds the sha256 checksum
LEGACY_MODEL_FORMAT = "slimkit.model/1"    # loads with a warning (no checksum)
_MODEL_KEYS = {"format", "arch", "arch_kwargs", "state_dict", "meta"}


def save_model(
    path: str | os.PathLike,
    model: nn.Module,
    *,
    arch: str,
    arch_kwargs: Mapping[str, Any] | None = None,
    half: bool = False,
    **meta: Any,
) -> Path:
    """Write `model` as {"arch", "arch_kwargs", "state_dict", "meta"} atomically, with a checksum.

    `half=True` stores float32 tensors as float16 (half the bytes; `meta["stored_half"]`
    records it and `load_model` widens them back to float32, so the model runs as before with
    weights rounded to float16's 11-bit mantissa).

    `meta["channel_spec"]` is filled from the model (the sizes of its conv/linear/BN layers),
    so a channel-pruned model rebuilds from the same zoo name. `arch_kwargs` and other `meta`
    must be plain JSON-able data (dicts with str keys, lists, str, int, float, bool, None);
    anything else raises `UserError` before the file is touched.
    """
    if not isinstance(arch, str) or not arch:
        raise ValueError(f"arch must be a zoo model name, got {arch!r}")
    model = getattr(model, "module", model)  # unwrap DistributedDataParallel
    meta = dict(meta)
    meta.setdefault("channel_spec", channel_spec(model))
    if half:
        meta["stored_half"] = True
    arch_kwargs = dict(arch_kwargs or {})
    check_json_plain(arch_kwargs, "model file arch_kwargs")
    check_json_plain(meta, "model file meta")
    payload = {
        "format": MODEL_FORMAT,
        "arch": arch,
        "arch_kwargs": arch_kwargs,
        "state_dict": {k: (v.detach().cpu().half() if half and v.dtype == torch.float32
                           else v.detach().cpu()) for k, v in model.state_dict().items()},
        "meta": meta,
    }
    check_plain(payload, "model file")
    return atomic_write(path, torch_writer(seal(payload)))


def read_model_file(path: str | os.PathLike) -> dict[str, Any]:
    """The raw contents of a model file (validated: format, keys, checksum, types, finite
    weights), without building the model."""
    obj = safe_load(path, what="model file")
    missing = {"arch", "arch_kwargs", "state_dict"} - set(obj)
    if obj.get("format") not in (MODEL_FORMAT, LEGACY_MODEL_FORMAT) or missing:
        raise FormatError(f"{path}: not a slimkit model file (format {obj.get('format')!r}, "
                          f"missing {sorted(missing)})")
    unseal(obj, path, "model file", fmt=MODEL_FORMAT, legacy=LEGACY_MODEL_FORMAT,
           keys=_MODEL_KEYS)
    if not isinstance(obj["arch"], str) or not obj["arch"]:
        raise FormatError(f"{path}: corrupt model file: arch {obj['arch']!r} is not a name")
    for key in ("arch_kwargs", "meta"):
        if not isinstance(obj[key], dict):
            raise FormatError(f"{path}: corrupt model file: {key!r} is a "
                              f"{type(obj[key]).__name__}, expected a dict")
        try:
            check_json_plain(obj[key], f"{path}: {key}")
        except UserError as e:
            raise FormatError(f"corrupt model file: {e}") from None
    check_state(obj["state_dict"], path, "model file")
    spec = obj["meta"].get("channel_spec")
    if spec is not None and not (isinstance(spec, dict) and all(
            isinstance(v, dict) and all(isinstance(n, int) and not isinstance(n, bool) and n > 0
                                        for n in v.values()) for v in spec.values())):
        raise FormatError(f"{path}: corrupt model file: meta 'channel_spec' must map layer "
                          "names to {size name: positive int}")
    return obj


TASK_ARCH = "task:"           # arch prefix of the dense-prediction models of slimkit.tasks
MAX_ARCH_NUMBER = 100_000     # bound on numbers in arch_kwargs (num_classes, width_mult, ...)


def create_from_file(arch: Any, arch_kwargs: Any, source: str) -> nn.Module:
    """`zoo.create(arch, **arch_kwargs)` for values read from a file: the name must be a zoo
    name and the kwargs flat scalars (numbers finite and at most 100,000, so a corrupt file
    cannot ask for a huge model); any failure is a `UserError` naming ``source``."""
    from slimkit import zoo  # imported late: zoo sits beside train, not below it

    dense = isinstance(arch, str) and arch.startswith(TASK_ARCH)
    if not isinstance(arch, str) or not (dense or arch in zoo.names()):
        raise UserError(f"{source}: unknown architecture {arch!r}; known: "
                        f"{', '.join(zoo.names())}, task:detection, task:segmentation")
    if not isinstance(arch_kwargs, dict):
        raise FormatError(f"{source}: arch_kwargs must be a dict, got {arch_kwargs!r}")
    for key, value in arch_kwargs.items():
        number = isinstance(value, (int, float)) and not isinstance(value, bool)
        if not isinstance(key, str) or not (
                value is None or isinstance(value, (str, bool))
                or (number and math.isfinite(value) and abs(value) <= MAX_ARCH_NUMBER)):
            raise FormatError(f"{source}: arch_kwargs {key!r}={value!r} is not a plain value "
                              f"(numbers must be finite and at most {MAX_ARCH_NUMBER:,})")
    try:
        if dense:  # a detector / segmenter of slimkit.tasks, e.g. "task:detection"
            from slimkit.tasks import get_task

            return get_task(arch[len(TASK_ARCH):]).build_model(**arch_kwargs)
        return zoo.create(arch, **arch_kwargs)
    except (KeyError, TypeError, ValueError, RuntimeError, MemoryError) as exc:
        raise UserError(f"{source}: cannot build {arch!r} from arch_kwargs {arch_kwargs}: "
                        f"{exc.args[0] if exc.args else exc}") from None


def load_model(path: str | os.PathLike) -> nn.Module:
    """Rebuild the model stored at `path` from the zoo and load its weights (eval mode)."""
    obj = read_model_file(path)
    model = create_from_file(obj["arch"], obj["arch_kwargs"], str(path))
    state = obj["state_dict"]
    if obj["meta"].get("stored_half") is True:  # save_model(half=True): widen back to float32
        state = {k: v.float() if v.dtype == torch.float16 else v for k, v in state.items()}
    return build_from_state(model, state, obj["meta"].get("channel_spec"), source=str(path))


def build_from_state(
    model: nn.Module,
    state_dict: Mapping[str, Any],
    spec: Mapping[str, Mapping[str, int]] | None = None,
    source: str = "state_dict",
) -> nn.Module:
    """Resize `model` to `state_dict` (and `spec`) and load it strictly; returns it in eval mode.

    Keys, shapes and dtypes are checked first; a mismatch raises `UserError` naming `source`
    and the key."""
    with guard_load(source, "model file"):
        try:
            resize_to_state_dict(model, state_dict, spec)
        except (ValueError, KeyError, TypeError) as exc:
            what = "the channel spec does" if spec else "the weights do"
            raise UserError(f"{source}: {what} not fit the architecture: "
                            f"{exc.args[0] if exc.args else exc}") from None
        bad = shapes_match(model, state_dict)
        if bad:
            raise UserError(f"{source}: shapes of {bad[:5]} do not fit the architecture")
        check_state_dict(model, state_dict, source)
        try:
            model.load_state_dict(state_dict, strict=True)
        except RuntimeError as exc:
            first = str(exc).strip().splitlines()[0]
            raise UserError(f"{source}: weights do not match the architecture: {first}") from None
    return model.eval()
