"""`slimkit info`: per-layer table (shape, params, MACs, memory) of a model."""

from __future__ import annotations

import argparse

from slimkit.cli._common import load_model_or_arch, parse_shape


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("info", help="per-layer shapes, params, MACs and memory",
                              description="Print a per-layer table of a model file or zoo model.")
    p.add_argument("model", help="model file or zoo model name")
    p.add_argument("--input-shape", default=None, help="C,H,W (default: the zoo model's own)")
    p.add_argument("--in-channels", type=int, default=None)
    p.add_argument("--num-classes", type=int, default=10)


def run(args: argparse.Namespace) -> int:
    from slimkit import zoo
    from slimkit.metrics import count_macs, param_bytes, layer_table, render_table

    model, arch = load_model_or_arch(args.model, args.num_classes, args.in_channels)
    if args.input_shape:
        shape = parse_shape(args.input_shape)
    elif arch in zoo.names():
        shape = zoo.input_shape(arch, in_channels=args.in_channels)
    else:
        raise ValueError("--input-shape is needed for a model that is not in the zoo")
    print(render_table(layer_table(model, shape)))
    macs = count_macs(model, shape).total
    print(f"\n{arch}: input {shape}, {sum(p.numel() for p in model.parameters()):,} params, "
          f"{param_bytes(model):,} bytes, {macs:,} MACs")
    return 0
