"""Packed sub-8-bit weight files: what `slimkit quantize --bits B` (B < 8) ships beside the
int8 ONNX model, about 32/B times smaller than the float model.

A safetensors file (never a pickle). For each quantized conv/linear `L`:
`L.codes` (uint8, the weight's integer codes minus qmin, bit-packed by
`slimkit.deploy.packing.pack_bits`), `L.weight_scale` (float32, per output channel or one),
`L.weight_zp` (int32, affine schemes only), `L.bias` (float32) and the activation
`L.act_scale`/`L.act_zp`. Every other tensor of the model is stored as is. The metadata holds
the zoo architecture, its kwargs, the task and, per layer, bits, shape and scheme, so
`weight = (unpack(codes) + qmin - zp) * scale` restores the simulated model's weights exactly.

`read_packed` loads the file back as a runnable float model (weights dequantized, activations
float, BN folded as in the quantized model), validating every field and the checksum.

>>> write_packed("w4.packed.safetensors", qmodel, arch="lenet5", arch_kwargs={}, task=None)  # doctest: +SKIP
>>> model = read_packed("w4.packed.safetensors")  # doctest: +SKIP
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

import torch
from torch import Tensor, nn

from slimkit.errors import FormatError, UserError

__all__ = ["PACKED_FORMAT", "PackedFile", "pack_model", "write_packed", "read_packed",
           "open_packed"]

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
        if scheme.per_channel and scheme.ch_axis % m.weight.dim() != 0:
            raise UserError(f"layer {name}: per-channel scales along axis {scheme.ch_axis} "
                            "cannot be packed (axis 0 only)")
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


# ----------------------------------------------------------------------------- reading

_META_KEYS = {"arch", "arch_kwargs", "task", "layers"}
_LAYER_KEYS = {"bits", "shape", "qmin", "per_channel", "symmetric", "act_bits"}
_SUFFIXES = ("codes", "weight_scale", "weight_zp", "bias", "act_scale", "act_zp")
_MAX_NUMEL = 2**40


@dataclass
class PackedFile:
    """What a packed file holds: the float model and the metadata it was written with."""

    model: nn.Module
    arch: str
    arch_kwargs: dict[str, Any]
    task: dict[str, Any] | None
    layers: dict[str, dict[str, Any]]


def read_packed(path: str | os.PathLike) -> nn.Module:
    """The float model of a packed file (eval mode): each packed layer's weight is
    ``(unpack(codes) + qmin - zp) * scale``, exactly the simulated model's quantized weight;
    activations stay float. A corrupt file raises `FormatError`, one that does not fit its
    architecture `UserError`, both naming the file and the field."""
    return open_packed(path).model


def open_packed(path: str | os.PathLike) -> PackedFile:
    """`read_packed`, with the stored architecture, task and per-layer layout."""
    from slimkit.fileio import guard_load

    p = Path(path)
    with guard_load(p, "packed weight file"):
        return _load(p)


def _load(p: Path) -> PackedFile:
    from slimkit.fileio import check_finite, check_metadata, read_safetensors

    source = str(p)
    tensors, meta = read_safetensors(p, what="packed weight file")
    check_metadata(meta, tensors, source, fmt=PACKED_FORMAT, legacy=None, keys=_META_KEYS,
                   what="slimkit packed weight file")
    arch_kwargs = _json_field(meta, "arch_kwargs", dict, source)
    task = _json_field(meta, "task", (dict, type(None)), source)
    layers = _json_field(meta, "layers", dict, source)
    check_finite(tensors, source)
    model = _skeleton(meta["arch"], arch_kwargs, source)
    state = _state(tensors, layers, source)
    _load_state(model, state, source)
    return PackedFile(model.eval(), meta["arch"], arch_kwargs, task, layers)


def _json_field(meta: Mapping[str, str], key: str, kind: Any, source: str) -> Any:
    from slimkit.fileio import parse_json

    value = parse_json(meta[key], f"{source}: metadata {key!r}")
    if not isinstance(value, kind):
        raise FormatError(f"{source}: corrupt file: metadata {key!r} is a "
                          f"{type(value).__name__}, expected a JSON object")
    return value


def _skeleton(arch: Any, arch_kwargs: dict, source: str) -> nn.Module:
    """The zoo model with BN folded and layer scales folded, as `quant.ptq.prepare` does."""
    from slimkit.quant.fold import fold_bn
    from slimkit.quant.ptq import fold_layer_scales
    from slimkit.train.modelfile import create_from_file

    model = create_from_file(arch, arch_kwargs, source).eval()
    return fold_layer_scales(fold_bn(model).eval())


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _layer_fields(name: Any, info: Any, source: str) -> dict[str, Any]:
    def bad(msg: str) -> FormatError:
        return FormatError(f"{source}: corrupt file: layer {name!r}: {msg}")

    if not isinstance(info, dict):
        raise bad("metadata is not a JSON object")
    if set(info) != _LAYER_KEYS:
        raise bad(f"metadata keys missing {sorted(_LAYER_KEYS - set(info))}, unexpected "
                  f"{sorted(set(info) - _LAYER_KEYS)}")
    bits, shape, qmin, act = info["bits"], info["shape"], info["qmin"], info["act_bits"]
    if not _is_int(bits) or not 1 <= bits <= 8:
        raise bad(f"bits must be an int in 1..8, got {bits!r}")
    if not isinstance(shape, list) or not 1 <= len(shape) <= 8 or not all(
            _is_int(d) and 0 < d < _MAX_NUMEL for d in shape):
        raise bad(f"shape must be a list of positive ints, got {shape!r}")
    if not _is_int(qmin) or qmin not in (0, -(1 << (bits - 1))):
        raise bad(f"qmin must be 0 or {-(1 << (bits - 1))} for {bits} bits, got {qmin!r}")
    for key in ("per_channel", "symmetric"):
        if not isinstance(info[key], bool):
            raise bad(f"{key} must be true or false, got {info[key]!r}")
    if act is not None and not (_is_int(act) and 1 <= act <= 16):
        raise bad(f"act_bits must be null or an int in 1..16, got {act!r}")
    return info


def _tensor(tensors: Mapping[str, Tensor], key: str, dtype: torch.dtype, shape: list[int] | None,
            source: str) -> Tensor:
    if key not in tensors:
        raise FormatError(f"{source}: corrupt file: tensor {key!r} is missing")
    t = tensors[key]
    if t.dtype != dtype:
        raise FormatError(f"{source}: corrupt file: {key!r} has dtype {t.dtype}, expected {dtype}")
    if shape is not None and list(t.shape) != shape:
        raise FormatError(f"{source}: corrupt file: {key!r} has shape {list(t.shape)}, "
                          f"expected {shape}")
    return t


def _weight(name: str, info: dict, tensors: Mapping[str, Tensor], source: str) -> Tensor:
    """The dequantized weight of one packed layer, every tensor it uses checked."""
    from slimkit.deploy.packing import packed_nbytes, unpack_bits

    bits, shape, qmin = info["bits"], info["shape"], info["qmin"]
    numel = math.prod(shape)
    if numel > _MAX_NUMEL:
        raise FormatError(f"{source}: corrupt file: layer {name!r}: shape {shape} too large")
    channels = shape[0] if info["per_channel"] else 1
    scale = tensors.get(f"{name}.weight_scale")
    qshape = [channels] if info["per_channel"] or (scale is not None and scale.dim()) else []
    scale = _tensor(tensors, f"{name}.weight_scale", torch.float32, qshape, source)
    if not bool((scale > 0).all()):
        raise FormatError(f"{source}: corrupt file: {name}.weight_scale has values <= 0")
    codes = _tensor(tensors, f"{name}.codes", torch.uint8, [packed_nbytes(numel, bits)], source)
    try:
        q = unpack_bits(codes, bits, numel, strict=True).to(torch.int32) + qmin
    except UserError as e:
        raise FormatError(f"{source}: corrupt file: {name}.codes: {e}") from None
    zp = torch.zeros(qshape, dtype=torch.int32)
    if f"{name}.weight_zp" in tensors or not info["symmetric"]:
        zp = _tensor(tensors, f"{name}.weight_zp", torch.int32, qshape, source)
        if zp.numel() and not bool(((zp >= qmin) & (zp < qmin + (1 << bits))).all()):
            raise FormatError(f"{source}: corrupt file: {name}.weight_zp lies outside the "
                              f"{bits}-bit code range")
    view = [-1] + [1] * (len(shape) - 1)
    return (q.reshape(shape).float() - zp.reshape(view).float()) * scale.reshape(view)


def _act_tensors(name: str, info: dict, tensors: Mapping[str, Tensor], source: str) -> None:
    """Check the stored activation scale and zero point (kept for integer runtimes; the
    float model does not use them)."""
    act = info["act_bits"]
    if act is None:
        return
    scale = _tensor(tensors, f"{name}.act_scale", torch.float32, [1], source)
    zp = _tensor(tensors, f"{name}.act_zp", torch.int32, [1], source)
    if not float(scale) > 0:
        raise FormatError(f"{source}: corrupt file: {name}.act_scale is not > 0")
    if not -(1 << (act - 1)) <= int(zp) < 1 << act:
        raise FormatError(f"{source}: corrupt file: {name}.act_zp {int(zp)} is outside the "
                          f"{act}-bit range")


def _state(tensors: Mapping[str, Tensor], layers: Mapping[str, Any],
           source: str) -> dict[str, Tensor]:
    """The float state_dict the file describes; refuses tensors no layer accounts for."""
    state: dict[str, Tensor] = {}
    owned: set[str] = set()
    for name, info in layers.items():
        info = _layer_fields(name, info, source)
        state[f"{name}.weight"] = _weight(name, info, tensors, source)
        _act_tensors(name, info, tensors, source)
        if f"{name}.bias" in tensors:
            state[f"{name}.bias"] = _tensor(tensors, f"{name}.bias", torch.float32,
                                            [info["shape"][0]], source)
        want = {"codes", "weight_scale", "weight_zp", "bias"}
        if info["act_bits"] is not None:
            want |= {"act_scale", "act_zp"}
        owned |= {f"{name}.{s}" for s in want}
        extra = [k for k in (f"{name}.{s}" for s in _SUFFIXES + ("weight",))
                 if k in tensors and k not in owned]
        if extra:
            raise FormatError(f"{source}: corrupt file: unexpected tensors {extra} for packed "
                              f"layer {name!r}")
    for key, value in tensors.items():
        if key not in owned:
            state[key] = value
    return state


def _load_state(model: nn.Module, state: dict[str, Tensor], source: str) -> None:
    """Add the biases that bias correction gave bias-free layers, resize channel-pruned
    layers, then load ``state`` strictly (keys, shapes and dtypes checked first)."""
    from slimkit.train.modelfile import build_from_state

    for key, value in state.items():
        mod_name, _, leaf = key.rpartition(".")
        if leaf != "bias":
            continue
        try:
            mod = model.get_submodule(mod_name)
        except AttributeError:
            continue                                 # reported as unexpected below
        if isinstance(mod, (nn.Conv2d, nn.Linear)) and mod.bias is None and value.dim() == 1:
            mod.bias = nn.Parameter(torch.zeros_like(value))
    build_from_state(model, state, source=source)
