"""Packed sub-8-bit weight files: what `slimkit quantize --bits B` (B < 8) ships beside the
int8 ONNX model, about 32/B times smaller than the float model.

A safetensors file (never a pickle). For each quantized conv/linear `L`:
`L.codes` (uint8, the weight's integer codes minus qmin, bit-packed by
`slimkit.deploy.packing.pack_bits`), `L.weight_scale` (float32, per output channel or one),
`L.weight_zp` (int32, affine schemes only), `L.bias` (float32) and the activation
`L.act_scale`/`L.act_zp`. Every other tensor of the model is stored as is. The metadata holds
the zoo architecture, its kwargs, the task and, per layer, bits, shape and scheme, so
`weight = (unpack(codes) + qmin - zp) * scale` restores the simulated model's weights exactly.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Mapping

import torch
from torch import nn

from slimkit.errors import UserError

PACKED_FORMAT = "slimkit.packed/1"


def _quant_layers(qmodel: nn.Module) -> dict[str, nn.Module]:
    from slimkit.quant.modules import QuantMixin

    return {n: m for n, m in qmodel.named_modules() if isinstance(m, QuantMixin)}


def pack_model(qmodel: nn.Module) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """(tensors, per-layer layout) of a simulated-quantized model."""
    from slimkit.deploy.packing import pack_bits
    from slimkit.quant.core import quantize

    tensors: dict[str, torch.Tensor] = {}
    layout: dict[str, Any] = {}
    layers = _quant_layers(qmodel)
    handled = set()
    for name, m in layers.items():
        scheme = m.weight_scheme
        if scheme.bits > 8:
            raise UserError(f"layer {name}: {scheme.bits}-bit weights cannot be packed (1..8)")
        codes = quantize(m.weight.detach(), m.weight_scale, m.weight_zp, scheme) - scheme.qmin
        tensors[f"{name}.codes"] = pack_bits(codes.flatten().to(torch.uint8), scheme.bits)
        tensors[f"{name}.weight_scale"] = m.weight_scale.detach().float().contiguous()
        if not scheme.symmetric or bool((m.weight_zp != 0).any()):
            tensors[f"{name}.weight_zp"] = m.weight_zp.detach().to(torch.int32).contiguous()
        if m.bias is not None:
            tensors[f"{name}.bias"] = m.bias.detach().float().contiguous()
        if m.act_scheme is not None:
            tensors[f"{name}.act_scale"] = m.act_scale.detach().float().reshape(1)
            tensors[f"{name}.act_zp"] = m.act_zp.detach().to(torch.int32).reshape(1)
        layout[name] = {"bits": scheme.bits, "shape": list(m.weight.shape), "qmin": scheme.qmin,
                        "per_channel": scheme.per_channel, "symmetric": scheme.symmetric,
                        "act_bits": None if m.act_scheme is None else m.act_scheme.bits}
        handled.update(f"{name}.{k}" for k in ("weight", "bias", "weight_scale", "weight_zp",
                                               "act_scale", "act_zp"))
    for key, value in qmodel.state_dict().items():
        if key not in handled:
            tensors[key] = value.detach().contiguous().clone()
    return tensors, layout


def write_packed(path: str | os.PathLike, qmodel: nn.Module, *, arch: str,
                 arch_kwargs: Mapping[str, Any], task: Mapping[str, Any] | None) -> Path:
    """Write the packed file (`slimkit.fileio.write_safetensors`: atomic, with a SHA-256
    checksum) and read it back to check every layer's codes; returns the path."""
    from slimkit.fileio import write_safetensors

    tensors, layout = pack_model(qmodel)
    meta = {"format": PACKED_FORMAT, "arch": arch,
            "arch_kwargs": json.dumps(dict(arch_kwargs), sort_keys=True),
            "task": json.dumps(dict(task) if task else None, sort_keys=True),
            "layers": json.dumps(layout, sort_keys=True)}
    out = Path(path)
    write_safetensors(out, tensors, meta)
    _verify(out, qmodel, layout)
    return out


def _verify(path: Path, qmodel: nn.Module, layout: Mapping[str, Any]) -> None:
    from safetensors.torch import load_file

    from slimkit.deploy.packing import unpack_bits
    from slimkit.quant.core import dequantize

    back = load_file(str(path))
    layers = _quant_layers(qmodel)
    for name, info in layout.items():
        n = 1
        for d in info["shape"]:
            n *= d
        codes = unpack_bits(back[f"{name}.codes"], info["bits"], n).to(torch.int32) + info["qmin"]
        m = layers[name]
        w = dequantize(codes.reshape(info["shape"]), m.weight_scale, m.weight_zp, m.weight_scheme)
        if not torch.allclose(w, m.quant_weight().detach(), rtol=0, atol=1e-6):
            raise RuntimeError(f"{path}: packed weights of {name} do not read back")
