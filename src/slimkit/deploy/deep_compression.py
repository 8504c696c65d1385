"""Deep Compression file: pruned + k-means-shared weights, relative indices, Huffman.

Han, Mao & Dally, "Deep Compression", ICLR 2016 (Sections 2-4). Per shared layer the file
holds the fp32 codebook, one ``bits``-bit cluster code per stored entry and, for a sparse
layer, the *relative* position of each entry as a ``pos_bits``-bit gap (zeros skipped
since the previous entry). A gap larger than ``2**pos_bits - 1`` is bridged by filler
entries of value zero (code 0, the reserved zero of :mod:`slimkit.quant.sharing`), as in
the paper's Figure 2 (conv 8-bit, fc 5-bit gaps). Both streams are bit-packed or, with
``huffman=True``, canonical-Huffman coded where that is smaller (per stream, counting the
code-length table). All other tensors (biases, BN, unshared layers)
are stored as they are. The container is safetensors: tensors + JSON metadata, no pickle;
the metadata carries a SHA-256 checksum of the whole content, and loading validates every field
(:mod:`slimkit.fileio`).

>>> from torch import nn
>>> from slimkit.quant.sharing import kmeans_share
>>> shared = kmeans_share(nn.Sequential(nn.Linear(8, 4)), bits=3)
>>> size_bytes = save_compressed(shared, "net.dc")
>>> restored = load_compressed("net.dc", nn.Sequential(nn.Linear(8, 4)))
"""

from __future__ import annotations

import copy
import json
import math
import os
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from slimkit.deploy.huffman import huffman_decode, huffman_encode
from slimkit.deploy.packing import pack_bits, packed_nbytes, unpack_bits
from slimkit.errors import FormatError, UserError
from slimkit.fileio import (
    check_finite, check_metadata, guard_load, parse_json, read_safetensors, write_safetensors,
)
from slimkit.quant.sharing import SharedWeightConv2d, SharedWeightLinear, shared_layers

__all__ = ["FORMAT", "encode_positions", "decode_positions", "save_compressed",
           "load_compressed"]

FORMAT = "slimkit.deep_compression/2"          # /2 adds the sha256 checksum
LEGACY_FORMAT = "slimkit.deep_compression/1"   # loads with a warning (no checksum)


def encode_positions(codes: Tensor, pos_bits: int) -> tuple[Tensor, Tensor]:
    """Relative-index encoding of a flat code array in which 0 marks a pruned weight.

    Returns ``(gaps, entry_codes)``: entry ``e`` sits ``gaps[e]`` zeros after the previous
    entry; filler entries (gap ``2**pos_bits - 1``, code 0) bridge longer runs of zeros.
    """
    flat = codes.reshape(-1).to(torch.int64)
    pos = torch.nonzero(flat).reshape(-1)
    if pos.numel() == 0:
        return torch.zeros(0, dtype=torch.int64), torch.zeros(0, dtype=torch.int64)
    span = 1 << pos_bits
    gap = pos - torch.cat([pos.new_full((1,), -1), pos[:-1]]) - 1
    fillers = gap // span                                    # each filler advances `span`
    counts = fillers + 1
    real = torch.cumsum(counts, 0) - 1                       # entry index of each non-zero
    gaps = torch.full((int(counts.sum()),), span - 1, dtype=torch.int64)
    entry_codes = torch.zeros_like(gaps)
    gaps[real] = gap - fillers * span
    entry_codes[real] = flat[pos]
    return gaps, entry_codes


def decode_positions(gaps: Tensor, entry_codes: Tensor, numel: int) -> Tensor:
    """Inverse of :func:`encode_positions`: the flat code array of length ``numel``."""
    pos = torch.cumsum(gaps.to(torch.int64) + 1, 0) - 1
    if pos.numel() and int(pos[-1]) >= numel:
        raise UserError(f"corrupt file: relative indices run past the layer's {numel} weights")
    out = torch.zeros(numel, dtype=torch.int64)
    out[pos] = entry_codes.to(torch.int64)
    return out


def _put_stream(tensors: dict, key: str, values: Tensor, bits: int,
                huffman: bool) -> bool:
    """Store ``values`` bit-packed or, when ``huffman`` and it is smaller (stream + code
    length table), Huffman-coded. Returns whether Huffman was used."""
    packed = pack_bits(values, bits)
    if huffman:
        st = huffman_encode(values, 1 << bits)
        if st.data.numel() + st.lengths.numel() < packed.numel():
            tensors[key] = st.data
            tensors[f"{key}.huffman"] = st.lengths
            return True
    tensors[key] = packed
    return False


def _get_stream(tensors: dict, key: str, n: int, bits: int, huffman: bool,
                source: str) -> Tensor:
    data = _tensor(tensors, key, torch.uint8, source)
    if data.dim() != 1:
        raise FormatError(f"{source}: corrupt file: {key!r} must be 1-D, got shape "
                          f"{list(data.shape)}")
    if huffman:
        lengths = _tensor(tensors, f"{key}.huffman", torch.uint8, source)
        if lengths.dim() != 1 or lengths.numel() != 1 << bits:
            raise FormatError(f"{source}: corrupt file: {key}.huffman has {lengths.numel()} "
                              f"entries, expected {1 << bits}")
        try:
            return huffman_decode(lengths, data, n, strict=True)
        except UserError as e:
            raise FormatError(f"{source}: corrupt file: {key!r}: {e}") from None
    if data.numel() != packed_nbytes(n, bits):
        raise FormatError(f"{source}: corrupt file: {key} has {data.numel()} bytes, expected "
                          f"{packed_nbytes(n, bits)}")
    try:
        return unpack_bits(data, bits, n, strict=True)
    except UserError as e:
        raise FormatError(f"{source}: corrupt file: {key!r}: {e}") from None


def _tensor(tensors: dict, key: str, dtype: torch.dtype, source: str) -> Tensor:
    if key not in tensors:
        raise FormatError(f"{source}: corrupt file: tensor {key!r} is missing")
    t = tensors[key]
    if t.dtype != dtype:
        raise FormatError(f"{source}: corrupt file: {key!r} has dtype {t.dtype}, expected "
                          f"{dtype}")
    return t


def save_compressed(model: nn.Module, path: str | os.PathLike, *, huffman: bool = True) -> int:
    """Write ``model`` (its shared layers encoded, the rest verbatim); returns the file size
    in bytes. With ``huffman`` each stream is Huffman-coded when that is smaller. The file
    carries a SHA-256 checksum and is written atomically (`slimkit.fileio.atomic_write`)."""
    tensors: dict[str, Tensor] = {}
    layers: dict[str, dict] = {}
    shared = shared_layers(model)
    for name, m in shared.items():
        codes = m.indices.reshape(-1).to(torch.int64)
        info = {"kind": "conv" if isinstance(m, SharedWeightConv2d) else "linear",
                "shape": list(m.indices.shape), "bits": m.bits, "zero_code": m.zero_code,
                "pos_bits": m.pos_bits}
        tensors[f"{name}.codebook"] = m.centroids.detach().to(torch.float32).contiguous()
        if m.zero_code:
            gaps, codes = encode_positions(codes, m.pos_bits)
            info["gaps_huffman"] = _put_stream(tensors, f"{name}.gaps", gaps, m.pos_bits,
                                               huffman)
        info["entries"] = int(codes.numel())
        info["codes_huffman"] = _put_stream(tensors, f"{name}.codes", codes, m.bits, huffman)
        layers[name] = info
    skip = {f"{n}.{b}" for n in shared for b in ("centroids", "indices")}
    for key, value in model.state_dict().items():
        if key not in skip:
            tensors[f"dense/{key}"] = value.detach().contiguous().clone()
    meta = {"format": FORMAT, "layers": json.dumps(layers)}
    return write_safetensors(path, tensors, meta)


_LAYER_KEYS = {"kind", "shape", "bits", "zero_code", "pos_bits", "entries", "codes_huffman"}


def _read(path: Path) -> tuple[dict[str, Tensor], dict[str, dict]]:
    tensors, meta = read_safetensors(path, what="Deep Compression file")
    check_metadata(meta, tensors, str(path), fmt=FORMAT, legacy=LEGACY_FORMAT, keys={"layers"},
                   what="Deep Compression file")
    layers = parse_json(meta["layers"], f"{path}: metadata 'layers'")
    if not isinstance(layers, dict):
        raise FormatError(f"{path}: corrupt file: metadata 'layers' is not a JSON object")
    return tensors, layers


def _layer_fields(name: str, info: Any, source: str) -> dict:
    def bad(msg: str) -> FormatError:
        return FormatError(f"{source}: corrupt file: layer {name!r}: {msg}")

    if not isinstance(info, dict):
        raise bad("metadata is not a JSON object")
    want = _LAYER_KEYS | ({"gaps_huffman"} if info.get("zero_code") is True else set())
    if set(info) != want:
        raise bad(f"metadata keys missing {sorted(want - set(info))}, unexpected "
                  f"{sorted(set(info) - want)}")
    for key in ("bits", "pos_bits", "entries"):
        if not isinstance(info[key], int) or isinstance(info[key], bool):
            raise bad(f"{key} must be an int, got {info[key]!r}")
    for key in ("zero_code", "codes_huffman", "gaps_huffman"):
        if key in info and not isinstance(info[key], bool):
            raise bad(f"{key} must be true or false, got {info[key]!r}")
    shape = info["shape"]
    if not isinstance(shape, list) or not all(
            isinstance(d, int) and not isinstance(d, bool) and d > 0 for d in shape):
        raise bad(f"shape must be a list of positive ints, got {shape!r}")
    if info["kind"] not in ("conv", "linear"):
        raise bad(f"kind must be 'conv' or 'linear', got {info['kind']!r}")
    if not (1 <= info["bits"] <= 8 and 1 <= info["pos_bits"] <= 8) or info["entries"] < 0:
        raise bad(f"bits={info['bits']}, pos_bits={info['pos_bits']}, "
                  f"entries={info['entries']} out of range")
    return info


def _build_layer(name: str, info: dict, tensors: dict, skeleton: nn.Module,
                 source: str) -> nn.Module:
    info = _layer_fields(name, info, source)
    bits, pos_bits, shape = info["bits"], info["pos_bits"], info["shape"]
    zero_code, entries = info["zero_code"], info["entries"]
    huff_codes, huff_gaps = info["codes_huffman"], info.get("gaps_huffman", False)
    try:
        ref = skeleton.get_submodule(name) if name else None
    except AttributeError:
        ref = None
    if ref is None:
        raise UserError(f"{source}: file layer {name!r} is not in the model skeleton")
    conv = isinstance(ref, (nn.Conv2d, SharedWeightConv2d))
    if not conv and not isinstance(ref, (nn.Linear, SharedWeightLinear)):
        raise UserError(f"{source}: skeleton layer {name!r} is {type(ref).__name__}, "
                        "expected Conv2d or Linear")
    if conv != (info["kind"] == "conv"):
        raise UserError(f"{source}: layer {name!r} is a {info['kind']} layer in the file but "
                        f"{type(ref).__name__} in the model")
    ref_shape = list(ref.weight.shape)
    if ref_shape != shape:
        raise UserError(f"{source}: layer {name!r}: file weight shape {shape} != model "
                        f"{ref_shape}")
    numel = math.prod(shape)
    codebook = _tensor(tensors, f"{name}.codebook", torch.float32, source)
    k = codebook.numel() + (1 if zero_code else 0)
    if codebook.dim() != 1 or k > 1 << bits:
        raise FormatError(f"{source}: corrupt file: {name}.codebook has {codebook.numel()} "
                          f"entries for {bits}-bit codes")
    if entries > numel + numel // (1 << pos_bits) + 1:      # real entries + fillers
        raise FormatError(f"{source}: corrupt file: layer {name!r} has {entries} entries for "
                          f"{numel} weights")
    codes = _get_stream(tensors, f"{name}.codes", entries, bits, huff_codes, source)
    if zero_code:
        gaps = _get_stream(tensors, f"{name}.gaps", entries, pos_bits, huff_gaps, source)
        try:
            codes = decode_positions(gaps, codes, numel)
        except UserError as e:
            raise FormatError(f"{source}: corrupt file: layer {name!r}: {e}") from None
    elif entries != numel:
        raise FormatError(f"{source}: corrupt file: dense layer {name!r} has {entries} codes "
                          f"for {numel} weights")
    if codes.numel() and int(codes.max()) >= k:
        raise FormatError(f"{source}: corrupt file: layer {name!r} has code "
                          f"{int(codes.max())} but only {k} codebook entries")
    indices = codes.reshape(shape)
    bias = getattr(ref, "bias", None)
    bias = None if bias is None else torch.zeros_like(bias.detach())   # filled from dense/
    if conv:
        out = SharedWeightConv2d(codebook, indices, bits, zero_code, bias, ref.stride,
                                 ref.padding, ref.dilation, ref.groups)
    else:
        out = SharedWeightLinear(codebook, indices, bits, zero_code, bias)
    out.pos_bits = pos_bits
    return out


def _stream_keys(name: str, info: dict) -> set[str]:
    keys = {f"{name}.codebook", f"{name}.codes"}
    if info["codes_huffman"]:
        keys.add(f"{name}.codes.huffman")
    if info["zero_code"]:
        keys.add(f"{name}.gaps")
        if info["gaps_huffman"]:
            keys.add(f"{name}.gaps.huffman")
    return keys


def load_compressed(path: str | os.PathLike, model_skeleton: nn.Module) -> nn.Module:
    """Rebuild a runnable model from ``path`` on a copy of ``model_skeleton`` (the plain
    architecture, or an already shared one).

    Every field is validated and the checksum checked; a corrupt file raises
    :class:`~slimkit.errors.FormatError`, a file that does not fit the skeleton
    :class:`~slimkit.errors.UserError`. Files of the checksum-less format
    ``slimkit.deep_compression/1`` load with a warning.
    """
    path = Path(path)
    with guard_load(path, "Deep Compression file"):
        return _load(path, model_skeleton)


def _load(path: Path, model_skeleton: nn.Module) -> nn.Module:
    source = str(path)
    tensors, layers = _read(path)
    check_finite(tensors, source)
    model = copy.deepcopy(model_skeleton)
    expected = set()
    for name, info in layers.items():
        new = _build_layer(name, info, tensors, model, source)
        expected |= _stream_keys(name, info)
        model.set_submodule(name, new)
    skip = {f"{n}.{b}" for n in layers for b in ("centroids", "indices")}
    state = model.state_dict()
    want = set(state) - skip
    have = {k[len("dense/"):] for k in tensors if k.startswith("dense/")}
    if want != have:
        raise UserError(f"{path}: tensors do not match the model (missing "
                        f"{sorted(want - have)[:5]}, unexpected {sorted(have - want)[:5]})")
    extra = set(tensors) - expected - {f"dense/{k}" for k in have}
    if extra:
        raise FormatError(f"{path}: corrupt file: unexpected tensors {sorted(extra)[:5]}")
    new_state = {}
    for key in want:
        value = tensors[f"dense/{key}"]
        if value.shape != state[key].shape or value.dtype != state[key].dtype:
            raise UserError(f"{path}: {key!r} is {value.dtype}{list(value.shape)} in the file "
                            f"but {state[key].dtype}{list(state[key].shape)} in the model")
        new_state[key] = value
    model.load_state_dict(new_state, strict=False)
    return model
