"""Deep Compression file: pruned + k-means-shared weights, relative indices, Huffman.

Han, Mao & Dally, "Deep Compression", ICLR 2016 (Sections 2-4). Per shared layer the file
holds the fp32 codebook, one ``bits``-bit cluster code per stored entry and, for a sparse
layer, the *relative* position of each entry as a ``pos_bits``-bit gap (zeros skipped
since the previous entry). A gap larger than ``2**pos_bits - 1`` is bridged by filler
entries of value zero (code 0, the reserved zero of :mod:`slimkit.quant.sharing`), as in
the paper's Figure 2 (conv 8-bit, fc 5-bit gaps). Both streams are bit-packed or, with
``huffman=True``, canonical-Huffman coded where that is smaller (per stream, counting the
code-length table). All other tensors (biases, BN, unshared layers)
are stored as they are. The container is safetensors: tensors + JSON metadata, no pickle.

>>> from torch import nn
>>> from slimkit.quant.sharing import kmeans_share
>>> shared = kmeans_share(nn.Sequential(nn.Linear(8, 4)), bits=3)
>>> size_bytes = save_compressed(shared, "net.dc")
>>> restored = load_compressed("net.dc", nn.Sequential(nn.Linear(8, 4)))
"""

from __future__ import annotations

import copy
import json
import os
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load as st_load
from safetensors.torch import save as st_save
from torch import Tensor, nn

from slimkit.deploy.huffman import huffman_decode, huffman_encode
from slimkit.deploy.packing import pack_bits, packed_nbytes, unpack_bits
from slimkit.errors import UserError
from slimkit.quant.sharing import SharedWeightConv2d, SharedWeightLinear, shared_layers

__all__ = ["FORMAT", "encode_positions", "decode_positions", "save_compressed",
           "load_compressed"]

FORMAT = "slimkit.deep_compression/1"


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


def _get_stream(tensors: dict, key: str, n: int, bits: int, huffman: bool) -> Tensor:
    data = _tensor(tensors, key, torch.uint8)
    if huffman:
        lengths = _tensor(tensors, f"{key}.huffman", torch.uint8)
        if lengths.numel() != 1 << bits:
            raise UserError(f"corrupt file: {key}.huffman has {lengths.numel()} entries, "
                            f"expected {1 << bits}")
        return huffman_decode(lengths, data, n)
    if data.dim() != 1 or data.numel() != packed_nbytes(n, bits):
        raise UserError(f"corrupt file: {key} has {data.numel()} bytes, expected "
                        f"{packed_nbytes(n, bits)}")
    return unpack_bits(data, bits, n)


def _tensor(tensors: dict, key: str, dtype: torch.dtype) -> Tensor:
    if key not in tensors:
        raise UserError(f"corrupt file: tensor {key!r} is missing")
    t = tensors[key]
    if t.dtype != dtype:
        raise UserError(f"corrupt file: {key!r} has dtype {t.dtype}, expected {dtype}")
    return t


def save_compressed(model: nn.Module, path: str | os.PathLike, *, huffman: bool = True) -> int:
    """Write ``model`` (its shared layers encoded, the rest verbatim); returns the file size
    in bytes. With ``huffman`` each stream is Huffman-coded when that is smaller. The file
    is written to a temporary name and moved into place."""
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
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_bytes(st_save(tensors, metadata=meta))
    os.replace(tmp, path)
    return path.stat().st_size


def _read(path: Path) -> tuple[dict[str, Tensor], dict[str, dict]]:
    try:
        blob = path.read_bytes()
    except OSError as e:
        raise UserError(f"{path}: cannot read Deep Compression file ({e.strerror})") from None
    try:
        tensors = st_load(blob)
        header_len = int.from_bytes(blob[:8], "little")
        meta = json.loads(blob[8:8 + header_len]).get("__metadata__") or {}
        layers = json.loads(meta.get("layers", "null"))
    except (SafetensorError, ValueError, TypeError) as e:
        raise UserError(f"{path}: not a valid Deep Compression file ({e})") from None
    if meta.get("format") != FORMAT or not isinstance(layers, dict):
        raise UserError(f"{path}: not a Deep Compression file (format "
                        f"{meta.get('format')!r}, expected {FORMAT!r})")
    return tensors, layers


def _build_layer(name: str, info: dict, tensors: dict, skeleton: nn.Module) -> nn.Module:
    try:
        bits, pos_bits, shape = int(info["bits"]), int(info["pos_bits"]), list(info["shape"])
        zero_code, entries = bool(info["zero_code"]), int(info["entries"])
        huff_codes = bool(info["codes_huffman"])
        huff_gaps = bool(info["gaps_huffman"]) if zero_code else False
    except (KeyError, TypeError, ValueError) as e:
        raise UserError(f"corrupt file: bad metadata for layer {name!r} ({e})") from None
    if not (1 <= bits <= 8 and 1 <= pos_bits <= 8) or entries < 0:
        raise UserError(f"corrupt file: layer {name!r} has bits={bits}, pos_bits={pos_bits}, "
                        f"entries={entries}")
    try:
        ref = skeleton.get_submodule(name)
    except AttributeError:
        raise UserError(f"file layer {name!r} is not in the model skeleton") from None
    conv = isinstance(ref, (nn.Conv2d, SharedWeightConv2d))
    if not conv and not isinstance(ref, (nn.Linear, SharedWeightLinear)):
        raise UserError(f"skeleton layer {name!r} is {type(ref).__name__}, "
                        "expected Conv2d or Linear")
    ref_shape = list(ref.weight.shape)
    if ref_shape != shape:
        raise UserError(f"layer {name!r}: file weight shape {shape} != model {ref_shape}")
    numel = 1
    for d in shape:
        numel *= d
    codebook = _tensor(tensors, f"{name}.codebook", torch.float32)
    k = codebook.numel() + (1 if zero_code else 0)
    if codebook.dim() != 1 or k > 1 << bits:
        raise UserError(f"corrupt file: {name}.codebook has {codebook.numel()} entries for "
                        f"{bits}-bit codes")
    if entries > numel:
        raise UserError(f"corrupt file: layer {name!r} has {entries} entries for {numel} weights")
    codes = _get_stream(tensors, f"{name}.codes", entries, bits, huff_codes)
    if zero_code:
        gaps = _get_stream(tensors, f"{name}.gaps", entries, pos_bits, huff_gaps)
        codes = decode_positions(gaps, codes, numel)
    elif entries != numel:
        raise UserError(f"corrupt file: dense layer {name!r} has {entries} codes for "
                        f"{numel} weights")
    if codes.numel() and int(codes.max()) >= k:
        raise UserError(f"corrupt file: layer {name!r} has code {int(codes.max())} but only "
                        f"{k} codebook entries")
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


def load_compressed(path: str | os.PathLike, model_skeleton: nn.Module) -> nn.Module:
    """Rebuild a runnable model from ``path`` on a copy of ``model_skeleton`` (the plain
    architecture, or an already shared one). Bad files raise :class:`UserError`."""
    path = Path(path)
    tensors, layers = _read(path)
    model = copy.deepcopy(model_skeleton)
    for name, info in layers.items():
        if not isinstance(info, dict):
            raise UserError(f"corrupt file: bad metadata for layer {name!r}")
        new = _build_layer(name, info, tensors, model)
        parent, _, leaf = name.rpartition(".")
        setattr(model.get_submodule(parent) if parent else model, leaf, new)
    skip = {f"{n}.{b}" for n in layers for b in ("centroids", "indices")}
    state = model.state_dict()
    want = set(state) - skip
    have = {k[len("dense/"):] for k in tensors if k.startswith("dense/")}
    if want != have:
        raise UserError(f"{path}: tensors do not match the model (missing "
                        f"{sorted(want - have)[:5]}, unexpected {sorted(have - want)[:5]})")
    new_state = {}
    for key in want:
        value = tensors[f"dense/{key}"]
        if value.shape != state[key].shape or value.dtype != state[key].dtype:
            raise UserError(f"{path}: {key!r} is {value.dtype}{list(value.shape)} in the file "
                            f"but {state[key].dtype}{list(state[key].shape)} in the model")
        new_state[key] = value
    model.load_state_dict(new_state, strict=False)
    return model
