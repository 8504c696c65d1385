"""Seeded mutation fuzzing of slimkit's file formats (used by the test suite and a benchmark).

Each format builds a tiny original file; every mutation (bit flips, truncation, byte insertion
or deletion, header edits, metadata JSON edits, swapped tensors, and content edits re-signed
with a valid checksum) is loaded and classified:

- ``error``: a slimkit error (`UserError`), as it should be;
- ``unchecked``: a slimkit error raised by a loader's last-resort guard (`fileio.guard_load`),
  i.e. a failure no named check anticipated (allowed, but worth a named check);
- ``identical``: loaded, and equal to the original (the mutation was a no-op);
- ``accepted``: a re-signed edit that loads as a *valid* different file (not corruption);
- ``raw``: any other exception escaped the loader (must be 0);
- ``silent``: a corrupted file loaded as different data (must be 0).

>>> counts = fuzz_format(FORMATS["sparse"], n=100, seed=0, workdir=tmp)   # doctest: +SKIP
"""

from __future__ import annotations

import copy
import io
import json
import os
import random
import tempfile
import time
import warnings
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import torch
from torch import Tensor, nn

from slimkit.errors import UserError
from slimkit.fileio import CHECKSUM_KEY, UNCHECKED, digest_tensors, digest_tree

__all__ = ["FORMATS", "FuzzCounts", "fuzz_format", "Format"]

OUTCOMES = ("error", "unchecked", "identical", "accepted", "raw", "silent")


@dataclass
class FuzzCounts:
    """Outcome counts of one format's fuzz run (plus examples of bad outcomes)."""

    name: str
    n: int = 0
    counts: dict[str, int] = field(default_factory=lambda: dict.fromkeys(OUTCOMES, 0))
    by_kind: dict[str, dict[str, int]] = field(default_factory=dict)
    examples: list[str] = field(default_factory=list)
    seconds: float = 0.0

    def add(self, kind: str, outcome: str, note: str = "") -> None:
        self.n += 1
        self.counts[outcome] += 1
        row = self.by_kind.setdefault(kind, dict.fromkeys(OUTCOMES, 0))
        row[outcome] += 1
        if outcome in ("raw", "silent", "unchecked") and len(self.examples) < 10:
            self.examples.append(f"{kind}: {outcome}: {note[:300]}")


@dataclass
class Format:
    """A file format under test: ``make(folder) -> (path, fingerprint)`` writes the original;
    ``load(path)`` reads a file; ``fingerprint(loaded) -> str`` digests what was loaded."""

    name: str
    make: Callable[[Path], Path]
    load: Callable[[Path], Any]
    fingerprint: Callable[[Any], str]
    container: str                     # "safetensors" or "torch"


# ------------------------------------------------------------------------ tiny originals


def _module_digest(model: nn.Module, extra: Any = None) -> str:
    sparse = {}
    for name, m in model.named_modules():
        if hasattr(m, "csr_arrays"):
            sparse[name] = dict(m.csr_arrays())
    return digest_tree({"repr": repr(model), "state": dict(model.state_dict()),
                        "sparse": sparse, "extra": extra})


def _randomize_bn(net: nn.Module) -> nn.Module:
    """Distinct BN parameters and statistics, so that swapping two of them is a real change."""
    with torch.no_grad():
        for m in net.modules():
            if isinstance(m, nn.modules.batchnorm._BatchNorm):
                for t in (m.weight, m.bias, m.running_mean):
                    t.uniform_(-1.0, 1.0)
                m.running_var.uniform_(0.5, 2.0)
    return net


def _dc_net() -> nn.Module:
    torch.manual_seed(0)
    return _randomize_bn(nn.Sequential(
        nn.Conv2d(1, 4, 3), nn.BatchNorm2d(4), nn.ReLU(), nn.Flatten(),
        nn.Linear(4 * 4 * 4, 12), nn.ReLU(), nn.Linear(12, 3))).eval()


def _dc_make(huffman: bool) -> Callable[[Path], Path]:
    def make(folder: Path) -> Path:
        from slimkit.deploy.deep_compression import save_compressed
        from slimkit.quant.sharing import kmeans_share

        net = _dc_net()
        with torch.no_grad():
            for i in (0, 4, 6):
                w = net[i].weight
                w[w.abs() < w.abs().flatten().median()] = 0.0
        shared = kmeans_share(net, bits=3, layer_bits={"0": 4}).eval()
        path = folder / f"orig-{'h' if huffman else 'p'}.dc"
        save_compressed(shared, path, huffman=huffman)
        return path
    return make


def _dc_load(path: Path) -> nn.Module:
    from slimkit.deploy.deep_compression import load_compressed

    return load_compressed(path, _dc_net())


def _dc_digest(model: nn.Module) -> str:
    return _module_digest(model, {n: [getattr(m, "pos_bits", None), getattr(m, "bits", None)]
                                  for n, m in model.named_modules()})


def _sparse_net() -> nn.Module:
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(2, 3, 3), nn.ReLU(), nn.Flatten(), nn.Linear(3 * 4 * 4, 10),
                        nn.ReLU(), nn.Linear(10, 4))
    with torch.no_grad():
        for i in (0, 3):
            net[i].weight.mul_((torch.rand_like(net[i].weight) < 0.3).float())
    return net.eval()


def _sparse_make(folder: Path) -> Path:
    from slimkit.pruning.sparse import save_sparse, to_sparse

    path = folder / "orig.sparse.safetensors"
    save_sparse(to_sparse(_sparse_net(), 0.5), path)
    return path


def _sparse_load(path: Path) -> nn.Module:
    from slimkit.pruning.sparse import load_sparse

    return load_sparse(path, _sparse_net())


def _q_make(folder: Path) -> Path:
    from slimkit import zoo
    from slimkit.quant.ptq import PTQConfig, quantize_ptq
    from slimkit.quant.qfile import save_quantized

    torch.manual_seed(0)
    model = zoo.create("lenet5", num_classes=10).eval()
    cfg = PTQConfig(weight_bits=4, act_bits=8, bias_correction=True)
    q = quantize_ptq(model, cfg, calib=[torch.randn(4, 1, 28, 28)])
    path = folder / "orig.q.safetensors"
    save_quantized(path, q, arch="lenet5", config=cfg, arch_kwargs={"num_classes": 10},
                   task={"data": "mnist5k", "input_shape": [1, 28, 28], "classes": 10})
    return path


def _q_load(path: Path) -> nn.Module:
    from slimkit.quant.qfile import load_quantized

    return load_quantized(path)


def _q_digest(model: nn.Module) -> str:
    from slimkit.quant.core import qspec_to_json

    return _module_digest(model, qspec_to_json(model.qspec))


def _packed_make(folder: Path) -> Path:
    from slimkit import zoo
    from slimkit.deploy.packed_file import write_packed
    from slimkit.quant.ptq import PTQConfig, quantize_ptq

    torch.manual_seed(0)
    model = zoo.create("lenet5", num_classes=10).eval()
    cfg = PTQConfig(weight_bits=4, act_bits=8, symmetric_weights=False, bias_correction=True,
                    layer_bits={"fc2": (3, 8)})
    q = quantize_ptq(model, cfg, calib=[torch.randn(4, 1, 28, 28)])
    return write_packed(folder / "orig.packed.safetensors", q, arch="lenet5",
                        arch_kwargs={"num_classes": 10},
                        task={"data": "mnist5k", "input_shape": [1, 28, 28], "classes": 10})


def _packed_load(path: Path) -> Any:
    from slimkit.deploy.packed_file import open_packed

    return open_packed(path)


def _packed_digest(packed: Any) -> str:
    return _module_digest(packed.model, {"arch": packed.arch, "kwargs": packed.arch_kwargs,
                                         "task": packed.task, "layers": packed.layers})


def _mlp() -> nn.Module:
    torch.manual_seed(0)
    return _randomize_bn(nn.Sequential(nn.Linear(8, 16), nn.BatchNorm1d(16), nn.ReLU(),
                                       nn.Linear(16, 3)))


def _model_make(folder: Path) -> Path:
    from slimkit import zoo
    from slimkit.train.modelfile import save_model

    path = folder / "orig.model.pt"
    torch.manual_seed(0)
    save_model(path, zoo.create("lenet5", num_classes=4), arch="lenet5",
               arch_kwargs={"num_classes": 4}, top1=0.5,
               task={"dataset": "mnist", "input_shape": [1, 28, 28], "classes": 4,
                     "normalize": {"mean": [0.13], "std": [0.31]}})
    return path


def _model_load(path: Path) -> Any:
    from slimkit.train.modelfile import load_model, read_model_file

    return read_model_file(path), load_model(path)


def _model_digest(loaded: Any) -> str:
    obj, model = loaded
    return digest_tree({"file": obj, "model": _module_digest(model)})


class _FakeOptimizer:
    """An SGD-with-momentum state_dict without building `torch.optim.SGD` (whose first use
    imports torch._dynamo: seconds of start-up that the fuzz does not need)."""

    def __init__(self, model: nn.Module) -> None:
        params = list(model.parameters())
        g = torch.Generator().manual_seed(1)
        self.state = {i: {"momentum_buffer": torch.randn(p.shape, generator=g)}
                      for i, p in enumerate(params)}
        self.groups = [{"lr": 0.1, "momentum": 0.9, "dampening": 0, "weight_decay": 0.0005,
                        "nesterov": False, "maximize": False, "foreach": None,
                        "differentiable": False, "fused": None,
                        "params": list(range(len(params)))}]

    def state_dict(self) -> dict:
        return {"state": self.state, "param_groups": self.groups}


def _ckpt_make(folder: Path) -> Path:
    from slimkit.train.checkpoint import save_checkpoint

    model = _mlp()
    path = folder / "orig.ckpt.pt"
    save_checkpoint(path, model=model, optimizer=_FakeOptimizer(model), epoch=2,
                    history={"train_loss": [1.0, 0.5]}, note="fuzz", rng=torch.get_rng_state())
    return path


def _ckpt_load(path: Path) -> dict:
    from slimkit.train.checkpoint import load_checkpoint

    return load_checkpoint(path, model=_mlp())


FORMATS: dict[str, Format] = {
    "deep_compression_packed": Format("deep_compression_packed", _dc_make(False), _dc_load,
                                      _dc_digest, "safetensors"),
    "deep_compression_huffman": Format("deep_compression_huffman", _dc_make(True), _dc_load,
                                       _dc_digest, "safetensors"),
    "sparse_csr": Format("sparse_csr", _sparse_make, _sparse_load, _module_digest,
                         "safetensors"),
    "quantized": Format("quantized", _q_make, _q_load, _q_digest, "safetensors"),
    "packed": Format("packed", _packed_make, _packed_load, _packed_digest, "safetensors"),
    "model_file": Format("model_file", _model_make, _model_load, _model_digest, "torch"),
    "checkpoint": Format("checkpoint", _ckpt_make, _ckpt_load, digest_tree, "torch"),
}


# ------------------------------------------------------------------------ byte mutations


def _flip(blob: bytes, rng: random.Random, region: tuple[int, int] | None) -> bytes:
    b = bytearray(blob)
    lo, hi = region if region and rng.random() < 0.6 else (0, len(b))
    for _ in range(rng.choice((1, 1, 1, 2, 3, 8))):
        b[rng.randrange(lo, hi)] ^= 1 << rng.randrange(8)
    return bytes(b)


def _truncate(blob: bytes, rng: random.Random, region: tuple[int, int] | None) -> bytes:
    if rng.random() < 0.3:
        return blob[: len(blob) - rng.randint(1, 16)]
    return blob[: rng.randrange(len(blob))]


def _insert(blob: bytes, rng: random.Random, region: tuple[int, int] | None) -> bytes:
    lo, hi = region if region and rng.random() < 0.5 else (0, len(blob))
    i = rng.randint(lo, hi)
    if rng.random() < 0.5:
        ins = bytes(rng.randrange(256) for _ in range(rng.randint(1, 16)))
    else:
        j = rng.randrange(len(blob))
        ins = blob[j: j + rng.randint(1, 64)]          # a duplicated chunk
    return blob[:i] + ins + blob[i:]


def _delete(blob: bytes, rng: random.Random, region: tuple[int, int] | None) -> bytes:
    lo, hi = region if region and rng.random() < 0.5 else (0, len(blob))
    i = rng.randrange(lo, max(lo + 1, hi))
    return blob[:i] + blob[i + rng.randint(1, 64):]


def _region(fmt: Format, blob: bytes) -> tuple[int, int] | None:
    """The byte range that describes the content: the safetensors header, or the pickle
    record of a torch zip file."""
    if fmt.container == "safetensors":
        return 0, 8 + int.from_bytes(blob[:8], "little")
    with zipfile.ZipFile(io.BytesIO(blob)) as z:
        info = next(i for i in z.infolist() if i.filename.endswith("data.pkl"))
        start = info.header_offset + 30 + len(info.filename.encode()) + len(info.extra)
        return start, start + info.file_size


# ------------------------------------------------------------------- safetensors edits

_ST_DTYPES = ["F64", "F32", "F16", "BF16", "I64", "I32", "I16", "I8", "U8", "BOOL", "F8_E4M3",
              "X9", 7]


def _st_split(blob: bytes) -> tuple[dict, bytes]:
    n = int.from_bytes(blob[:8], "little")
    return json.loads(blob[8:8 + n]), blob[8 + n:]


def _st_join(header: dict, data: bytes) -> bytes:
    h = json.dumps(header, separators=(",", ":")).encode()
    h += b" " * (-len(h) % 8)
    return len(h).to_bytes(8, "little") + h + data


def _tweak(v: Any, rng: random.Random) -> Any:
    """A random change of one JSON value."""
    if isinstance(v, bool):
        return not v if rng.random() < 0.7 else rng.choice([0, 1, "true", None])
    if isinstance(v, int):
        return rng.choice([v + 1, v - 1, v * 2, -v, 0, v + 1000, 2**40, 2**63, 1.5, str(v),
                           None, True])
    if isinstance(v, float):
        return rng.choice([v * 2, -v, 0.0, 1e308, int(v), str(v), None])
    if isinstance(v, str):
        return rng.choice([v + "x", v[:-1], "", v.upper(), 5, None, [v]])
    if isinstance(v, list):
        if v and rng.random() < 0.5:
            i = rng.randrange(len(v))
            return v[:i] + [_tweak(v[i], rng)] + v[i + 1:]
        return rng.choice([v[:-1], v + [v[-1] if v else 1], list(reversed(v)), {}, None])
    if isinstance(v, dict):
        if v and rng.random() < 0.7:
            k = rng.choice(sorted(v, key=str))
            op = rng.random()
            if op < 0.6:
                return {**v, k: _tweak(v[k], rng)}
            if op < 0.8:
                return {kk: vv for kk, vv in v.items() if kk != k}
            return {**v, f"{k}_": v[k]}
        return {**v, "extra": rng.choice([1, "x", None, [1], {}])}
    return rng.choice([0, "", [], {}])


def _st_header_edit(blob: bytes, rng: random.Random) -> bytes:
    header, data = _st_split(blob)
    names = [k for k in header if k != "__metadata__"]
    name = rng.choice(names)
    entry = dict(header[name])
    op = rng.randrange(7)
    if op == 0:                                     # shape
        shape = list(entry["shape"])
        if len(shape) >= 2 and rng.random() < 0.4:
            shape[0], shape[1] = shape[1], shape[0]
        elif len(shape) >= 2 and rng.random() < 0.5:
            shape = [shape[0] * shape[1]] + shape[2:]   # same size, other shape
        else:
            entry["shape"] = _tweak(shape, rng)
            shape = entry["shape"]
        entry["shape"] = shape
    elif op == 1:                                   # offsets
        entry["data_offsets"] = _tweak(entry["data_offsets"], rng)
    elif op == 2:                                   # dtype
        entry["dtype"] = rng.choice(_ST_DTYPES)
    elif op == 3:                                   # drop or rename a tensor
        del header[name]
        if rng.random() < 0.5:
            header[name + rng.choice(["x", ".huffman", "_"])] = entry
        return _st_join(header, data)
    elif op == 4:                                   # an unknown field
        entry[rng.choice(["extra", "offset", "dtype "])] = 1
    elif op == 5:                                   # swapped tensors (their bytes)
        other = rng.choice(names)
        mine, theirs = entry["data_offsets"], header[other]["data_offsets"]
        header[other] = {**header[other], "data_offsets": mine}
        entry["data_offsets"] = theirs
    else:                                           # the whole header as a value
        header = _tweak(header, rng) if rng.random() < 0.5 else rng.choice([[], 1, "x", None])
        return _st_join(header, data) if isinstance(header, dict) else \
            _st_join({"__metadata__": header}, data)
    header[name] = entry
    return _st_join(header, data)


def _st_meta_edit(blob: bytes, rng: random.Random) -> tuple[bytes, bool]:
    from slimkit.fileio import parse_safetensors

    header, data = _st_split(blob)
    meta = dict(header.get("__metadata__", {}))
    key = rng.choice(sorted(meta))
    value = meta[key]
    op = rng.random()
    if op < 0.1:
        del meta[key]
    elif op < 0.15:
        meta["extra"] = "1"
    else:
        try:
            parsed = json.loads(value)
        except ValueError:
            parsed = None
        if isinstance(parsed, (dict, list)) and rng.random() < 0.85:
            if rng.random() < 0.2:
                cut = rng.randrange(len(value))
                meta[key] = value[:cut]
            else:
                new = _tweak(parsed, rng)
                for _ in range(rng.choice((0, 0, 1, 2))):
                    new = _tweak(new, rng) if isinstance(new, (dict, list)) else new
                meta[key] = json.dumps(new)
        else:
            new = _tweak(value, rng)
            meta[key] = new if isinstance(new, str) else json.dumps(new)
    resign = rng.random() < 0.5
    if resign:
        tensors, _ = parse_safetensors(blob, "original")
        meta[CHECKSUM_KEY] = digest_tensors(tensors, meta)
    header["__metadata__"] = meta
    return _st_join(header, data), resign


def _st_swap(blob: bytes, rng: random.Random) -> bytes:
    """Swap the bytes of two tensors of the same byte size (or of any two), header unchanged
    except the offsets that make it consistent."""
    header, data = _st_split(blob)
    names = [k for k in header if k != "__metadata__"]
    size = {k: header[k]["data_offsets"][1] - header[k]["data_offsets"][0] for k in names}
    pairs = [(a, b) for a in names for b in names if a < b and size[a] == size[b] and size[a]]
    if pairs and rng.random() < 0.8:
        a, b = rng.choice(pairs)
        header[a]["data_offsets"], header[b]["data_offsets"] = (
            header[b]["data_offsets"], header[a]["data_offsets"])
        return _st_join(header, data)
    a, b = rng.sample(names, 2) if len(names) > 1 else (names[0], names[0])
    header[a], header[b] = header[b], header[a]
    return _st_join(header, data)


def _edit_tensor(t: Tensor, rng: random.Random) -> Any:
    """A random content edit of one tensor (a valid file after re-signing)."""
    op = rng.randrange(8)
    if op == 0:
        return t.to(rng.choice([torch.float64, torch.int16, torch.int64, torch.uint8,
                                torch.float16, torch.int32, torch.bool]))
    if op == 1:
        return t.reshape(-1) if t.dim() != 1 else t.reshape(1, -1)
    if op == 2:
        return t.reshape(-1)[: max(0, t.numel() - rng.randint(1, 3))].clone()
    if op == 3:
        return torch.cat([t.reshape(-1), t.reshape(-1)[:rng.randint(1, 3)]])
    if op == 4 and t.is_floating_point():
        u = t.clone().reshape(-1)
        if u.numel():
            u[rng.randrange(u.numel())] = rng.choice([float("nan"), float("inf"), -float("inf")])
        return u.reshape(t.shape)
    if op == 5 and t.numel():
        u = t.clone().reshape(-1)
        i = rng.randrange(u.numel())
        if u.dtype == torch.bool:
            u[i] = not bool(u[i])
        elif u.is_floating_point():
            u[i] = u[i] * rng.choice([-1.0, 2.0, 0.0, 1e30])
        else:
            info = torch.iinfo(u.dtype)
            u[i] = rng.choice([info.max, info.min, int(u[i]) + 1, int(u[i]) - 1, 0,
                               min(info.max, int(u[i]) + 1000)])
        return u.reshape(t.shape)
    if op == 6:
        return torch.zeros(0, dtype=t.dtype)
    return torch.empty(0)


def _st_resigned_edit(blob: bytes, rng: random.Random) -> bytes:
    from safetensors.torch import save as st_save

    from slimkit.fileio import parse_safetensors

    tensors, meta = parse_safetensors(blob, "original")
    tensors = {k: v.clone() for k, v in tensors.items()}
    name = rng.choice(sorted(tensors))
    op = rng.random()
    if op < 0.75:
        tensors[name] = _edit_tensor(tensors[name], rng)
    elif op < 0.85:
        del tensors[name]
    elif op < 0.95:
        tensors[name + rng.choice([".huffman", "x", ".bias"])] = tensors[name].clone()
    else:
        other = rng.choice(sorted(tensors))
        tensors[name], tensors[other] = tensors[other], tensors[name]
    meta[CHECKSUM_KEY] = digest_tensors(tensors, meta)
    return st_save({k: v.contiguous() for k, v in tensors.items()}, metadata=meta)


# ------------------------------------------------------------------- torch payload edits


_PAYLOADS: dict[int, tuple[bytes, dict]] = {}


def _payload(blob: bytes) -> dict:
    """A fresh copy of the (trusted) original's payload; parsed once per original."""
    key = hash(blob)
    if key not in _PAYLOADS or _PAYLOADS[key][0] != blob:
        _PAYLOADS.clear()
        _PAYLOADS[key] = (blob, torch.load(io.BytesIO(blob), weights_only=True))
    return copy.deepcopy(_PAYLOADS[key][1])


def _save(obj: Any) -> bytes:
    buf = io.BytesIO()
    torch.save(obj, buf)
    return buf.getvalue()


def _reseal(obj: dict) -> dict:
    from slimkit.train.checkpoint import seal

    return seal(obj)


def _state_key(obj: dict) -> str:
    return "state_dict" if "state_dict" in obj else "model"


def _pt_meta_edit(blob: bytes, rng: random.Random) -> tuple[bytes, bool]:
    obj = _payload(blob)
    keys = [k for k in obj if k not in ("state_dict", "model", CHECKSUM_KEY)]
    op = rng.random()
    if op < 0.1:
        del obj[rng.choice(sorted(obj, key=str))]
    elif op < 0.15:
        obj["extra"] = rng.choice([1, "x", None])
    else:
        k = rng.choice(keys)
        obj[k] = _tweak(obj[k], rng) if obj[k] is not None else rng.choice([{}, 1, "x"])
        if rng.random() < 0.5 and isinstance(obj[k], dict) and obj[k]:
            kk = rng.choice(sorted(obj[k], key=str))
            obj[k][kk] = _tweak(obj[k][kk], rng)
    resign = rng.random() < 0.5 and "format" in obj
    return _save(_reseal(obj) if resign else obj), resign


def _pt_swap(blob: bytes, rng: random.Random) -> bytes:
    obj = _payload(blob)
    state = obj[_state_key(obj)]
    names = sorted(state)
    pairs = [(a, b) for a in names for b in names
             if a < b and state[a].shape == state[b].shape and state[a].dtype == state[b].dtype
             and not torch.equal(state[a], state[b])]
    if pairs and rng.random() < 0.8:
        a, b = rng.choice(pairs)
    else:
        a, b = rng.sample(names, 2)
    state[a], state[b] = state[b], state[a]
    return _save(obj)


def _pt_resigned_edit(blob: bytes, rng: random.Random) -> bytes:
    obj = _payload(blob)
    state = obj[_state_key(obj)]
    name = rng.choice(sorted(state))
    op = rng.random()
    if op < 0.7:
        state[name] = _edit_tensor(state[name], rng)
    elif op < 0.8:
        del state[name]
    elif op < 0.9:
        state[name + "x"] = state[name].clone()
    else:
        state[name] = rng.choice([1, "x", None, [1.0], {"a": state[name]}])
    return _save(_reseal(obj))


# ------------------------------------------------------------------------------ driver

KINDS = ("bit_flip", "truncate", "insert", "delete", "header_edit", "meta_edit", "swap",
         "resigned_edit")


def _mutate(fmt: Format, kind: str, blob: bytes, region: tuple[int, int] | None,
            rng: random.Random) -> tuple[bytes, bool]:
    """(mutated bytes, whether the result carries a freshly computed valid checksum)."""
    if kind in ("bit_flip", "truncate", "insert", "delete"):
        fn = {"bit_flip": _flip, "truncate": _truncate, "insert": _insert, "delete": _delete}
        return fn[kind](blob, rng, region), False
    st = fmt.container == "safetensors"
    if kind == "header_edit":
        if st:
            return _st_header_edit(blob, rng), False
        lo, hi = region
        b = bytearray(blob)
        for _ in range(rng.randint(1, 3)):
            b[rng.randrange(lo, hi)] = rng.randrange(256)
        return bytes(b), False
    if kind == "meta_edit":
        return _st_meta_edit(blob, rng) if st else _pt_meta_edit(blob, rng)
    if kind == "swap":
        return (_st_swap(blob, rng) if st else _pt_swap(blob, rng)), False
    return (_st_resigned_edit(blob, rng) if st else _pt_resigned_edit(blob, rng)), True


def _memory_dir() -> str | None:
    """A RAM-backed folder for the mutated files where there is one (10x faster than disk)."""
    shm = "/dev/shm"
    return shm if os.path.isdir(shm) and os.access(shm, os.W_OK | os.X_OK) else None


def fuzz_format(fmt: Format, n: int, seed: int, workdir: Path) -> FuzzCounts:
    """Write ``fmt``'s original into ``workdir``, then load ``n`` seeded mutations of it."""
    workdir.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    orig_path = fmt.make(workdir)
    blob = orig_path.read_bytes()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        want = fmt.fingerprint(fmt.load(orig_path))
    region = _region(fmt, blob)
    out = FuzzCounts(fmt.name)
    with tempfile.TemporaryDirectory(dir=_memory_dir()) as scratch:
        target = Path(scratch) / ("mutant" + "".join(orig_path.suffixes))
        for i in range(n):
            kind = KINDS[i % len(KINDS)]
            rng = random.Random(f"{seed}/{fmt.name}/{i}")
            mutated, resigned = _mutate(fmt, kind, blob, region, rng)
            target.write_bytes(mutated)
            try:
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    got = fmt.fingerprint(fmt.load(target))
            except UserError as e:
                out.add(kind, "unchecked" if UNCHECKED in str(e) else "error", f"{i}: {e}")
                continue
            except Exception as e:  # noqa: BLE001 - counting what escapes is the point
                out.add(kind, "raw", f"{i}: {type(e).__name__}: {e}")
                continue
            if got == want:
                out.add(kind, "identical")
            else:
                out.add(kind, "accepted" if resigned else "silent", f"{i}: loaded different data")
    out.seconds = time.perf_counter() - t0
    return out
