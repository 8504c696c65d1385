"""`slimkit info`: per-layer table (shape, params, MACs, memory) of a model."""

from __future__ import annotations

import argparse

from slimkit.cli._common import (HelpFormatter, check_shape_fits, load_model, parse_shape,
                                 positive_int)
from slimkit.errors import UserError


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "info", help="per-layer shapes, params, MACs and memory", formatter_class=HelpFormatter,
        description="Print a per-layer table of a model file or zoo model.")
    p.add_argument("model", help="model file (.pt or quantized .safetensors) or zoo model name")
    p.add_argument("--input-shape", default=None,
                   help="C,H,W (default: the shape stored in the model file, else the zoo "
                   "model's own)")
    p.add_argument("--in-channels", type=positive_int, default=None,
                   help="input channels of a zoo model (default: its own)")
    p.add_argument("--num-classes", type=positive_int, default=10,
                   help="classes of a zoo model")


def run(args: argparse.Namespace) -> int:
    from slimkit import zoo
    from slimkit.metrics import count_macs, layer_table, param_bytes, render_table

    loaded = load_model(args.model, args.num_classes, args.in_channels)
    if loaded.kind == "onnx":
        raise UserError(f"{args.model}: info reads .pt and .safetensors model files; an ONNX "
                        "graph has no per-layer modules to list")
    model, arch = loaded.model, loaded.arch
    if args.input_shape:
        shape = parse_shape(args.input_shape)
    elif loaded.input_shape is not None and loaded.kind != "zoo":
        shape = loaded.input_shape
    elif arch in zoo.names():
        shape = zoo.input_shape(arch, in_channels=args.in_channels)
    else:
        raise UserError(f"{args.model} records no input shape; pass --input-shape C,H,W")
    check_shape_fits(model, shape, args.model,
                     "--input-shape" if args.input_shape else "the model's input shape")
    print(render_table(layer_table(model, shape)))
    macs = count_macs(model, shape).total
    print(f"\n{arch}: input {tuple(shape)}, {sum(p.numel() for p in model.parameters()):,} params, "
          f"{param_bytes(model):,} bytes, {macs:,} MACs")
    return 0
