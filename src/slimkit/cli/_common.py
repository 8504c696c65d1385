"""Arguments, loaders and checks shared by the CLI commands.

Every check here runs before any training, calibration or writing, and fails with a
`UserError` naming the flag, file or key at fault (printed by `slimkit.cli.main` as one line).

A model file remembers its *task* (`meta["task"]`, written by `slimkit train`): the data set
name, the root as given, the input shape, the class count and the normalisation. Later
commands reuse it when `--data`/`--root` are not given; a model with no task (a bare zoo
name, an older file) never borrows a default data set: the command says which flag to pass.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import stat
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Sequence

from slimkit.errors import UserError

ONNX_TASK_KEY = "slimkit.task"  # metadata_props keys of the int8 ONNX files `quantize` writes
ONNX_ARCH_KEY = "slimkit.arch"
ONNX_MACS_KEY = "slimkit.macs"


# ----------------------------------------------------------------------------- argparse types
def _argtype(convert, ok, wanted: str):
    """An argparse type: `convert(text)`, refused with "expected <wanted>" unless `ok(value)`."""
    def parse(text: str):
        try:
            value = convert(text)
        except ValueError:
            value = None
        if value is None or not ok(value):
            raise argparse.ArgumentTypeError(f"expected {wanted}, got {text!r}")
        return value
    parse.__name__ = wanted.replace(" ", "_")  # argparse names the type in its messages
    return parse


positive_int = _argtype(int, lambda v: v >= 1, "a positive integer")
nonneg_int = _argtype(int, lambda v: v >= 0, "an integer >= 0")
positive_float = _argtype(float, lambda v: math.isfinite(v) and v > 0, "a finite number > 0")
unit_fraction = _argtype(float, lambda v: math.isfinite(v) and 0 < v < 1, "a number in (0, 1)")


def top1(fraction: float) -> str:
    """The one accuracy format of the CLI: `top-1 90.36%`."""
    return f"top-1 {100 * fraction:.2f}%"


# ----------------------------------------------------------------------------- data arguments
class HelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """Shows every option's default, unless its help already says it (or there is none)."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        default = action.default
        if "default:" in text or default is None or default is False \
                or default is argparse.SUPPRESS or default == []:
            return text
        return super()._get_help_string(action)


def add_data_args(parser: argparse.ArgumentParser, default: str | None = None,
                  limit_help: str = "use only N examples of each split (seeded subset)") -> None:
    """--data/--root/--batch-size/--limit. `default=None`: the data set stored in the model file."""
    where = (default if default is not None
             else "the data set stored in the model file by `slimkit train`")
    parser.add_argument("--data", default=default, metavar="NAME",
                        help="data set name, e.g. mnist5k, fashion-mnist, cifar10 "
                        f"(default: {where})")
    stored = "" if default is not None else "the root stored in the model file, else "
    parser.add_argument("--root", default=None, metavar="DIR",
                        help="folder or archive holding the data set (default: "
                        f"{stored}$SLIMKIT_DATA)")
    parser.add_argument("--batch-size", type=positive_int, default=128, help="batch size")
    parser.add_argument("--limit", type=positive_int, default=None, metavar="N",
                        help=f"{limit_help} (default: all)")


def task_for(name: str, root: str | None) -> dict[str, Any]:
    """The task record of data set `name` (what `slimkit train` stores in a model file)."""
    from slimkit import data

    if name not in data.names():
        raise UserError(f"--data: unknown data set {name!r}; known: {', '.join(data.names())}")
    from slimkit.train.api import task_record

    return task_record(name, root)


def check_task_record(task: Any, source: str) -> dict[str, Any]:
    """A stored task record, validated key by key (a hand-edited file fails here, by name)."""
    from slimkit import data

    if not isinstance(task, dict):
        raise UserError(f"{source}: stored task must be a mapping, got {type(task).__name__}")
    required = {"data", "root", "input_shape", "num_classes"}
    known = required | {"mean", "std"}
    if required - set(task):
        raise UserError(f"{source}: stored task lacks {sorted(required - set(task))}")
    if set(task) - known:
        raise UserError(f"{source}: stored task has unknown keys {sorted(set(task) - known)}")
    if task["data"] not in data.names():
        raise UserError(f"{source}: stored task names an unknown data set {task['data']!r}")
    if task["root"] is not None and not isinstance(task["root"], str):
        raise UserError(f"{source}: stored task root must be a string or null")
    shape = task["input_shape"]
    if (not isinstance(shape, list) or len(shape) != 3
            or not all(isinstance(v, int) and not isinstance(v, bool) and v > 0 for v in shape)):
        raise UserError(f"{source}: stored task input_shape must be 3 positive ints, got {shape!r}")
    k = task["num_classes"]
    if not isinstance(k, int) or isinstance(k, bool) or k < 1:
        raise UserError(f"{source}: stored task num_classes must be a positive int, got {k!r}")
    spec = data.DATASETS.get(task["data"])
    if task["data"] != "synthetic" and (tuple(shape) != tuple(spec.input_shape)
                                        or k != spec.num_classes):
        raise UserError(f"{source}: stored task says {task['data']} has inputs {tuple(shape)} "
                        f"and {k} classes, but it has {tuple(spec.input_shape)} and "
                        f"{spec.num_classes}")
    return dict(task)


def resolve_task(args: argparse.Namespace, loaded: "Loaded", required: bool = True
                 ) -> dict[str, Any] | None:
    """The task a command works on: `--data/--root` if given, else the model file's own.

    Refuses a data set whose input shape or class count differs from the stored task's.
    Returns None when nothing is known and `required` is False.
    """
    stored = loaded.task
    if args.data is None:
        if stored is None:
            if not required:
                return None
            what = {"zoo": "is a zoo name with no data set",
                    "quantized": "is a simulated quantized file, which stores no data set"}.get(
                loaded.kind, "stores no data set (written before tasks were recorded, or not "
                "by `slimkit train`)")
            raise UserError(f"{loaded.source} {what}; pass --data NAME (and --root DIR for "
                            "file-based data sets)")
        task = dict(stored)
        if args.root is not None:
            task["root"] = args.root
        return task
    root = args.root
    if root is None and stored is not None and stored["data"] == args.data:
        root = stored["root"]
    task = task_for(args.data, root)
    if loaded.kind == "zoo":  # a bare zoo model is built for the data set's channels/classes
        from slimkit import zoo

        loaded.arch_kwargs = {"num_classes": task["num_classes"],
                              "in_channels": task["input_shape"][0]}
        loaded.model = zoo.create(loaded.arch, **loaded.arch_kwargs)
    if stored is not None:
        if tuple(task["input_shape"]) != tuple(stored["input_shape"]):
            raise UserError(
                f"--data {args.data} has inputs of shape {tuple(task['input_shape'])} but "
                f"{loaded.source} was trained on {stored['data']} with inputs of shape "
                f"{tuple(stored['input_shape'])}")
        if task["num_classes"] != stored["num_classes"]:
            raise UserError(
                f"--data {args.data} has {task['num_classes']} classes but {loaded.source} "
                f"predicts {stored['num_classes']} ({stored['data']})")
    return task


def load_split(task: dict[str, Any], split: str, limit: int | None = None):
    """One split of the task's data set (a seeded subset of `limit` items)."""
    from slimkit import data

    try:
        dataset = data.load(task["data"], root=task["root"], split=split)
    except data.DataError as exc:
        raise UserError(str(exc).replace("pass root=", "pass --root ")) from None
    except ValueError as exc:
        if "takes no root" in str(exc):
            raise UserError(f"--root: {task['data']} is embedded in slimkit and takes no --root "
                            f"(got {task['root']!r})") from None
        raise
    if limit is not None:
        dataset = data.subset(dataset, min(limit, len(dataset)), seed=0)
    check_finite_inputs(dataset, f"{task['data']}/{split}")
    return dataset


def make_loader(task: dict[str, Any], split: str, batch_size: int = 128,
                limit: int | None = None, train: bool = False):
    from slimkit import data

    return data.loader(load_split(task, split, limit), batch_size=batch_size, train=train)


def check_finite_inputs(dataset, where: str) -> None:
    """Refuse NaN/inf inputs: they poison calibration ranges and training alike."""
    import torch

    from slimkit.data import base_dataset

    base = base_dataset(dataset)
    images = getattr(base, "images", None)
    if isinstance(images, torch.Tensor) and images.is_floating_point():
        if not bool(torch.isfinite(images).all()):
            raise UserError(f"{where}: the data holds NaN or infinite values")


def check_finite_batches(batches: Iterable, where: str) -> None:
    import torch

    for x in batches:
        if not bool(torch.isfinite(x).all()):
            raise UserError(f"{where}: the calibration data holds NaN or infinite values")


def check_finite_weights(model, source: str) -> None:
    """Refuse a model whose weights hold NaN/inf (a diverged run, a corrupted file)."""
    import torch

    for name, t in model.state_dict().items():
        if t.is_floating_point() and not bool(torch.isfinite(t).all()):
            raise UserError(f"{source}: weight {name!r} holds NaN or infinite values")


def check_fits(model, loader, task: dict[str, Any], source: str) -> None:
    """One forward pass of one batch: the data set's shape and class count fit the model."""
    import torch

    x, _ = next(iter(loader))
    try:
        with torch.no_grad():
            was = getattr(model, "training", False)
            model.eval()
            out = model(x[:2])
            model.train(was)
    except Exception as exc:  # noqa: BLE001 - torch/onnxruntime raise many kinds on bad shapes
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise UserError(
            f"{source} does not accept {task['data']} inputs of shape {tuple(x.shape[1:])} "
            f"({first[:200]}); pass the --data it was built for") from None
    if out.dim() != 2 or out.shape[1] != task["num_classes"]:
        raise UserError(
            f"{source} predicts {tuple(out.shape[1:])} outputs but {task['data']} has "
            f"{task['num_classes']} classes; pass the --data it was trained on")


# ----------------------------------------------------------------------------- models
@dataclass
class Loaded:
    """A model as a command sees it: where it came from, and what it remembers."""

    model: Any
    arch: str
    source: str                      # the argument as given
    kind: str                        # "model" | "quantized" | "onnx" | "zoo"
    task: dict[str, Any] | None = None
    meta: dict[str, Any] = field(default_factory=dict)
    path: Path | None = None
    arch_kwargs: dict[str, Any] = field(default_factory=dict)

    @property
    def input_shape(self) -> tuple[int, ...] | None:
        if self.task is not None:
            return tuple(self.task["input_shape"])
        if self.kind == "zoo":
            from slimkit import zoo

            return zoo.input_shape(self.arch)
        return None


def _sniff(path: Path) -> str:
    try:
        with path.open("rb") as fh:
            head = fh.read(16)
    except OSError as exc:
        raise UserError(f"{path}: cannot read ({exc.strerror})") from None
    if head[:2] == b"PK":
        return "model"
    if len(head) >= 9 and head[8:9] == b"{":  # u64 header length, then JSON
        return "quantized"
    if path.suffix == ".onnx":
        return "onnx"
    raise UserError(f"{path}: not a slimkit model file (neither a `slimkit train`/`prune` "
                    "model, a `slimkit quantize` .onnx or .safetensors file)")


def load_model(spec: str, num_classes: int = 10, in_channels: int | None = None) -> Loaded:
    """A model file (`train`/`prune` .pt, `quantize` .safetensors, .packed.safetensors or
    .onnx) or a zoo name."""
    from slimkit import zoo

    path = Path(spec)
    if path.is_dir():
        raise UserError(f"{spec} is a folder, not a model file")
    if path.is_file():
        kind = _sniff(path)
        if kind == "model":
            return _load_model_file(path, spec)
        if kind == "quantized":
            if _safetensors_format(path) == _packed_format():
                return _load_packed(path, spec)
            return _load_qfile(path, spec)
        return _load_onnx(path, spec)
    if spec in zoo.names():
        kwargs = {"num_classes": num_classes, "in_channels": in_channels}
        if in_channels is None:
            del kwargs["in_channels"]
        return Loaded(zoo.create(spec, **kwargs), spec, spec, "zoo", arch_kwargs=kwargs)
    raise UserError(
        f"{spec!r} is neither a model file nor a zoo model; zoo models: {', '.join(zoo.names())}")


def _load_model_file(path: Path, spec: str) -> Loaded:
    """Read the file once (validated by `read_model_file`), then build the model from it."""
    from slimkit.train import build_from_state, read_model_file
    from slimkit.train.modelfile import create_from_file

    obj = read_model_file(path)
    meta = obj.get("meta", {})
    if not isinstance(meta, dict):
        raise UserError(f"{path}: meta must be a mapping")
    model = create_from_file(obj["arch"], obj["arch_kwargs"], str(path))
    model = build_from_state(model, obj["state_dict"], meta.get("channel_spec"), source=str(path))
    check_finite_weights(model, spec)
    task = check_task_record(meta["task"], spec) if meta.get("task") is not None else None
    return Loaded(model, obj["arch"], spec, "model", task, meta, path, dict(obj["arch_kwargs"]))


def _load_qfile(path: Path, spec: str) -> Loaded:
    from safetensors import safe_open

    from slimkit.quant.qfile import load_quantized

    model = load_quantized(path)
    try:
        with safe_open(str(path), framework="pt") as f:
            meta = dict(f.metadata() or {})
    except Exception as exc:  # noqa: BLE001 - safetensors raises its own error types
        raise UserError(f"{path}: not a safetensors file ({exc})") from None
    check_finite_weights(model, spec)
    task = None
    if meta.get("task"):
        try:
            task = check_task_record(json.loads(meta["task"]), spec)
        except json.JSONDecodeError:
            raise UserError(f"{spec}: stored task is not JSON") from None
    return Loaded(model, meta.get("arch", path.stem), spec, "quantized", task, meta, path)


def _safetensors_format(path: Path) -> str | None:
    """The ``format`` metadata of a safetensors file (None when unreadable: the loader
    reports why)."""
    from safetensors import safe_open

    try:
        with safe_open(str(path), framework="pt") as f:
            return (f.metadata() or {}).get("format")
    except Exception:  # noqa: BLE001 - safetensors raises its own error types
        return None


def _packed_format() -> str:
    from slimkit.deploy.packed_file import PACKED_FORMAT

    return PACKED_FORMAT


def _load_packed(path: Path, spec: str) -> Loaded:
    """A `quantize --bits B` packed file, read back as its float model (kind "quantized", so
    commands that need a float original refuse it)."""
    from slimkit.deploy.packed_file import open_packed

    packed = open_packed(path)
    check_finite_weights(packed.model, spec)
    task = check_task_record(packed.task, spec) if packed.task is not None else None
    meta = {"format": _packed_format(), "layers": packed.layers}
    return Loaded(packed.model, packed.arch, spec, "quantized", task, meta, path,
                  dict(packed.arch_kwargs))


def _load_onnx(path: Path, spec: str) -> Loaded:
    import onnx

    from slimkit.deploy.onnx_export import OrtModule

    try:
        proto = onnx.load(str(path), load_external_data=False)
    except Exception as exc:  # noqa: BLE001 - protobuf decode errors have no common base
        raise UserError(f"{spec}: not a readable ONNX file ({type(exc).__name__})") from None
    props = {p.key: p.value for p in proto.metadata_props}
    task = None
    if props.get(ONNX_TASK_KEY):
        try:
            task = check_task_record(json.loads(props[ONNX_TASK_KEY]), spec)
        except json.JSONDecodeError:
            raise UserError(f"{spec}: stored task is not JSON") from None
    try:
        module = OrtModule(path, threads=1)
    except UserError:
        raise
    except Exception as exc:  # noqa: BLE001 - onnxruntime raises its own types on bad graphs
        first = str(exc).strip().splitlines()[0][:200] if str(exc).strip() else type(exc).__name__
        raise UserError(f"{spec}: onnxruntime cannot load it ({first})") from None
    return Loaded(module, props.get(ONNX_ARCH_KEY, ""), spec, "onnx", task, props, path)


def load_model_or_arch(spec: str, num_classes: int = 10, in_channels: int | None = None):
    """(model, arch) of a model file or a zoo name (kept for callers outside the CLI)."""
    loaded = load_model(spec, num_classes, in_channels)
    return loaded.model, loaded.arch


def parse_shape(text: str, flag: str = "--input-shape") -> tuple[int, ...]:
    try:
        shape = tuple(int(v) for v in text.replace("x", ",").split(","))
    except ValueError:
        raise UserError(f"{flag} must look like 3,32,32, got {text!r}") from None
    if len(shape) != 3 or any(v <= 0 for v in shape):
        raise UserError(f"{flag} must be three positive integers C,H,W, got {text!r}")
    return shape


def check_shape_fits(model, shape: Sequence[int], source: str, flag: str = "--input-shape"
                     ) -> None:
    """One forward pass of zeros of `shape` (C, H, W): refuse a shape the model cannot take."""
    import torch

    try:
        with torch.no_grad():
            was = getattr(model, "training", False)
            model.eval()
            model(torch.zeros(1, *shape))
            model.train(was)
    except Exception as exc:  # noqa: BLE001 - torch raises many kinds on bad shapes
        first = str(exc).strip().splitlines()[0][:200] if str(exc).strip() else type(exc).__name__
        raise UserError(f"{flag} {','.join(map(str, shape))} does not fit {source} "
                        f"({first})") from None


# ----------------------------------------------------------------------------- output paths
def _read_only(p: Path) -> bool:
    """No write bit for anyone (root ignores the bits; slimkit still respects them)."""
    try:
        mode = p.stat().st_mode
    except OSError:
        return False
    return not (mode & (stat.S_IWUSR | stat.S_IWGRP | stat.S_IWOTH)) or not os.access(p, os.W_OK)


def check_out(path: str | os.PathLike, flag: str = "--out", inputs: Sequence[str] = (),
              suffixes: Sequence[str] | None = None, folder: bool = False) -> Path:
    """Refuse an output path before any work: a folder (or, with `folder`, a file), a path
    under a file, a read-only file or folder, an input of the same command, a wrong suffix.

    Files go through `slimkit.fileio.check_writable`; the mode bits are checked as well, so a
    read-only file or folder is refused even for root (whom `os.access` lets write anything).
    """
    from slimkit.fileio import check_writable

    out = Path(path)
    if str(path) == "" or out.name in ("", ".", ".."):
        raise UserError(f"{flag}: {str(path)!r} is not a {'folder' if folder else 'file'} name")
    if suffixes is not None and out.suffix.lower() not in suffixes:
        want = " or ".join(suffixes)
        raise UserError(f"{flag} {path}: this command writes a {want} file; use a name ending "
                        f"in {want}")
    for given in inputs:
        src = Path(given)
        same = out.resolve() == src.resolve() or (
            src.exists() and out.exists() and os.path.samefile(src, out))
        if same:
            raise UserError(f"{flag} {path} is also an input ({given}); write to a new file")
    if not folder:
        check_writable(out, flag, inputs=inputs, create_parents=True)
    elif out.exists() and not out.is_dir():
        raise UserError(f"{flag} {path} is a file; give a folder")
    if out.exists():
        if _read_only(out):
            raise UserError(f"{flag} {path} is read-only")
        return out
    parent = out.parent
    while not parent.exists() and parent != parent.parent:
        parent = parent.parent
    if not parent.is_dir():
        raise UserError(f"{flag} {path} lies under {parent}, which is a file, not a folder")
    if _read_only(parent):
        raise UserError(f"{flag} {path}: folder {parent} is read-only")
    return out


def check_in(path: str, flag: str) -> Path:
    """An input file that must exist and be readable."""
    p = Path(path)
    if p.is_dir():
        raise UserError(f"{flag} {path} is a folder, not a file")
    if not p.is_file():
        raise UserError(f"{flag} {path}: no such file")
    return p
