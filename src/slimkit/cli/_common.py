"""Arguments and loaders shared by the CLI commands."""

from __future__ import annotations

import argparse
from pathlib import Path

from torch import nn

from slimkit.errors import UserError


def add_data_args(parser: argparse.ArgumentParser, default: str = "mnist5k") -> None:
    parser.add_argument("--data", default=default,
                        help=f"data set name (default: {default}; see `slimkit.data`)")
    parser.add_argument("--root", default=None, help="folder or archive holding the data set")
    parser.add_argument("--batch-size", type=int, default=128, help="batch size (default: 128)")
    parser.add_argument("--limit", type=int, default=None,
                        help="use only the first N examples of each split (seeded subset)")


def load_split(args: argparse.Namespace, split: str):
    from slimkit import data

    dataset = data.load(args.data, root=args.root, split=split)
    if args.limit is not None:
        if args.limit <= 0:
            raise ValueError(f"--limit must be positive, got {args.limit}")
        dataset = data.subset(dataset, min(args.limit, len(dataset)), seed=0)
    return dataset


def make_loader(args: argparse.Namespace, split: str, train: bool = False):
    from slimkit import data

    return data.loader(load_split(args, split), batch_size=args.batch_size, train=train)


def load_model_or_arch(spec: str, num_classes: int = 10,
                       in_channels: int | None = None) -> tuple[nn.Module, str]:
    """A saved model file (`slimkit train --out`) or a zoo name; returns (model, arch)."""
    from slimkit import zoo

    path = Path(spec)
    if path.is_file():
        with path.open("rb") as fh:
            head = fh.read(9)
        is_torch_zip = head[:2] == b"PK"
        is_safetensors = len(head) == 9 and head[8:9] == b"{"  # u64 header length, then JSON
        if not (is_torch_zip or is_safetensors):
            raise UserError(f"{path}: not a slimkit model file (neither a `slimkit train`/`prune` "
                            "model nor a `slimkit quantize` safetensors file)")
        if is_safetensors:
            from safetensors import safe_open

            from slimkit.quant.qfile import load_quantized

            model = load_quantized(path)
            with safe_open(str(path), framework="pt") as f:
                return model, (f.metadata() or {}).get("arch", path.stem)
        from slimkit.train import load_model, read_model_file

        return load_model(path), read_model_file(path)["arch"]
    if spec in zoo.names():
        return zoo.create(spec, num_classes=num_classes, in_channels=in_channels), spec
    raise FileNotFoundError(
        f"{spec!r} is neither a model file nor a zoo model; zoo models: {', '.join(zoo.names())}"
    )


def parse_shape(text: str) -> tuple[int, ...]:
    try:
        shape = tuple(int(v) for v in text.replace("x", ",").split(","))
    except ValueError:
        raise ValueError(f"--input-shape must look like 3,32,32, got {text!r}") from None
    if not shape or any(v <= 0 for v in shape):
        raise ValueError(f"--input-shape must be positive integers, got {text!r}")
    return shape
