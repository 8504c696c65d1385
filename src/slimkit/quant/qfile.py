"""Quantized model files: safetensors (tensors + str metadata), never a pickle.

The file holds the fake-quantized model's state_dict (float weights, scales, zero points,
corrected biases) and metadata: the zoo architecture and its kwargs, the PTQConfig (JSON)
and the `qspec` (JSON), with a SHA-256 checksum of the whole content. Loading validates every
field (`slimkit.fileio`; errors are `slimkit.errors.FormatError`), rebuilds the zoo model,
re-runs `prepare` (BN folding and wrapping; equalization is overwritten by the stored weights)
and loads the tensors.

>>> save_quantized("lenet5_int8.safetensors", qmodel, arch="lenet5", config=cfg)   # doctest: +SKIP
>>> q = load_quantized("lenet5_int8.safetensors")                                   # doctest: +SKIP
"""

from __future__ import annotations

import dataclasses
import json
import os
from pathlib import Path
from typing import Any, Mapping

import torch
from torch import nn

from slimkit.errors import FormatError, MissingFileError, UserError
from slimkit.fileio import (
    check_finite, check_metadata, check_state_dict, guard_load, parse_json, read_safetensors, write_safetensors,
)
from slimkit.quant.core import qspec_to_json
from slimkit.quant.ptq import PTQConfig, build_qspec, prepare
from slimkit.train.modelfile import create_from_file

__all__ = ["save_quantized", "load_quantized", "QFILE_FORMAT"]

QFILE_FORMAT = "slimkit.quantized/2"          # /2 adds the sha256 checksum
LEGACY_FORMAT = "slimkit.quantized/1"         # loads with a warning (no checksum)


def _config_to_json(config: PTQConfig) -> str:
    d = dataclasses.asdict(config)
    d["layer_bits"] = {k: list(v) for k, v in config.layer_bits.items()}
    d["skip"] = list(config.skip)
    return json.dumps(d, sort_keys=True)


def _config_from_json(text: str, source: str) -> PTQConfig:
    d = parse_json(text, f"{source}: metadata 'config'")
    if not isinstance(d, dict):
        raise FormatError(f"{source}: corrupt file: metadata 'config' is not a JSON object")
    known = {f.name for f in dataclasses.fields(PTQConfig)}
    if set(d) - known:
        raise FormatError(f"{source}: corrupt file: unknown config keys {sorted(set(d) - known)}")
    layer_bits, skip = d.get("layer_bits", {}), d.get("skip", [])
    if not isinstance(layer_bits, dict) or not all(
            isinstance(v, list) and len(v) == 2 for v in layer_bits.values()):
        raise FormatError(f"{source}: corrupt file: config 'layer_bits' must map globs to "
                          "[weight_bits, act_bits]")
    if not isinstance(skip, list) or not all(isinstance(g, str) for g in skip):
        raise FormatError(f"{source}: corrupt file: config 'skip' must be a list of globs")
    if not isinstance(d.get("observer_kwargs", {}), dict):
        raise FormatError(f"{source}: corrupt file: config 'observer_kwargs' must be an object")
    d["layer_bits"] = {k: tuple(v) for k, v in layer_bits.items()}
    d["skip"] = tuple(skip)
    try:
        return PTQConfig(**d)
    except (TypeError, ValueError) as e:
        raise FormatError(f"{source}: corrupt file: bad config ({e})") from None


def save_quantized(
    path: str | os.PathLike,
    qmodel: nn.Module,
    *,
    arch: str,
    config: PTQConfig,
    arch_kwargs: Mapping[str, Any] | None = None,
    task: Mapping[str, Any] | None = None,
) -> Path:
    """Write a PTQ model (from `quantize_ptq(zoo.create(arch, **arch_kwargs), config, ...)`)
    atomically, with a SHA-256 checksum of the whole content in the metadata. ``task`` (plain
    JSON data: data set, input shape, classes, ...) is stored as the optional ``task`` key."""
    if not isinstance(config, PTQConfig):
        raise UserError(f"config must be a PTQConfig, got {type(config).__name__}")
    state = {k: v.detach().contiguous().clone() for k, v in qmodel.state_dict().items()}
    meta = {
        "format": QFILE_FORMAT,
        "arch": arch,
        "arch_kwargs": json.dumps(dict(arch_kwargs or {}), sort_keys=True),
        "config": _config_to_json(config),
        "qspec": qspec_to_json(getattr(qmodel, "qspec", None) or build_qspec(qmodel), indent=None),
    }
    if task is not None:
        if not isinstance(task, Mapping):
            raise UserError(f"task must be a dict of plain data, got {type(task).__name__}")
        try:
            meta["task"] = json.dumps(dict(task), sort_keys=True, allow_nan=False)
        except (TypeError, ValueError) as e:
            raise UserError(f"task must be plain JSON data ({e})") from None
    out = Path(path)
    write_safetensors(out, state, meta)
    return out


def load_quantized(path: str | os.PathLike) -> nn.Module:
    """Rebuild a quantized model written by `save_quantized` (eval mode, `.qspec` attached).

    Every field is validated and the checksum checked; a corrupt file raises `FormatError`
    naming the file and the field. Checksum-less ``slimkit.quantized/1`` files load with a
    warning.
    """
    p = Path(path)
    if not p.is_file():
        raise MissingFileError(f"no quantized model file at {p}")
    with guard_load(p, "quantized model file"):
        return _load(p)


def _load(p: Path) -> nn.Module:
    source = str(p)
    try:
        state, meta = read_safetensors(p, what="quantized model file")
    except FormatError as e:
        raise FormatError(f"{p}: not a safetensors file or corrupt ({e})") from None
    check_metadata(meta, state, source, fmt=QFILE_FORMAT, legacy=LEGACY_FORMAT,
                   keys={"arch", "arch_kwargs", "config", "qspec"}, optional={"task"},
                   what="slimkit quantized model file")
    if "task" in meta and not isinstance(parse_json(meta["task"], f"{source}: metadata 'task'"),
                                         (dict, type(None))):
        raise FormatError(f"{source}: corrupt file: 'task' is not a JSON object")
    config = _config_from_json(meta["config"], source)
    arch_kwargs = parse_json(meta["arch_kwargs"], f"{source}: metadata 'arch_kwargs'")
    if not isinstance(arch_kwargs, dict):
        raise FormatError(f"{source}: corrupt file: 'arch_kwargs' is not a JSON object")
    if not isinstance(parse_json(meta["qspec"], f"{source}: metadata 'qspec'"), dict):
        raise FormatError(f"{source}: corrupt file: 'qspec' is not a JSON object")
    check_finite(state, source)
    model = create_from_file(meta["arch"], arch_kwargs, source)
    qmodel = prepare(model, config)
    for key in state:  # biases added by bias correction to layers that had none
        mod_name, _, leaf = key.rpartition(".")
        if leaf == "bias":
            try:
                mod = qmodel.get_submodule(mod_name)
            except AttributeError:
                continue                       # reported as unexpected below
            if hasattr(mod, "weight") and getattr(mod, "bias", None) is None:
                mod.bias = nn.Parameter(torch.zeros_like(state[key]))
    check_state_dict(qmodel, state, source)
    qmodel.load_state_dict(state)
    qmodel.qspec = build_qspec(qmodel)
    return qmodel.eval()
