"""Quantized model files: safetensors (tensors + str metadata), never a pickle.

The file holds the fake-quantized model's state_dict (float weights, scales, zero points,
corrected biases) and metadata: the zoo architecture and its kwargs, the PTQConfig (JSON)
and the `qspec` (JSON). Loading rebuilds the zoo model, re-runs `prepare` (BN folding and
wrapping; equalization is overwritten by the stored weights) and loads the tensors.

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

from slimkit.errors import UserError
from slimkit.quant.core import qspec_to_json
from slimkit.quant.ptq import PTQConfig, build_qspec, prepare

__all__ = ["save_quantized", "load_quantized", "QFILE_FORMAT"]

QFILE_FORMAT = "slimkit.quantized/1"


def _config_to_json(config: PTQConfig) -> str:
    d = dataclasses.asdict(config)
    d["layer_bits"] = {k: list(v) for k, v in config.layer_bits.items()}
    d["skip"] = list(config.skip)
    return json.dumps(d, sort_keys=True)


def _config_from_json(text: str) -> PTQConfig:
    d = json.loads(text)
    d["layer_bits"] = {k: tuple(v) for k, v in d.get("layer_bits", {}).items()}
    d["skip"] = tuple(d.get("skip", ()))
    return PTQConfig(**d)


def save_quantized(
    path: str | os.PathLike,
    qmodel: nn.Module,
    *,
    arch: str,
    config: PTQConfig,
    arch_kwargs: Mapping[str, Any] | None = None,
) -> Path:
    """Write a PTQ model (from `quantize_ptq(zoo.create(arch, **arch_kwargs), config, ...)`)."""
    from safetensors.torch import save_file

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
    out = Path(path)
    tmp = out.with_name(out.name + ".tmp")
    save_file(state, str(tmp), metadata=meta)
    os.replace(tmp, out)
    return out


def load_quantized(path: str | os.PathLike) -> nn.Module:
    """Rebuild a quantized model written by `save_quantized` (eval mode, `.qspec` attached)."""
    from safetensors import safe_open

    from slimkit import zoo

    p = Path(path)
    if not p.is_file():
        raise FileNotFoundError(f"no quantized model file at {p}")
    try:
        with safe_open(str(p), framework="pt") as f:
            meta = f.metadata() or {}
            state = {k: f.get_tensor(k) for k in f.keys()}
    except Exception as exc:  # safetensors raises its own error types for bad headers
        raise UserError(f"{p}: not a safetensors file ({exc})") from None
    if meta.get("format") != QFILE_FORMAT:
        raise UserError(f"{p}: not a slimkit quantized model file (format {meta.get('format')!r})")
    config = _config_from_json(meta["config"])
    model = zoo.create(meta["arch"], **json.loads(meta["arch_kwargs"]))
    qmodel = prepare(model, config)
    for key in state:  # biases added by bias correction to layers that had none
        mod_name, _, leaf = key.rpartition(".")
        if leaf == "bias":
            mod = qmodel.get_submodule(mod_name)
            if getattr(mod, "bias", None) is None:
                mod.bias = nn.Parameter(torch.zeros_like(state[key]))
    qmodel.load_state_dict(state)
    qmodel.qspec = build_qspec(qmodel)
    return qmodel.eval()
