"""`slimkit compress METHOD MODEL [config flags] --out FILE`: any registered method, with its
config's fields as flags (generated from the registry, so CLI, YAML and Python agree), e.g.

    slimkit compress han lenet5.pt --ratio 0.9 --steps 3 --out han.pt
    slimkit compress nm lenet5.pt --n 2 --m 4 --out nm.pt
    slimkit compress qat lenet5.pt --weight-bits 4 --epochs 1 --out qat.onnx
"""

from __future__ import annotations

import argparse


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    from slimkit.compress import METHODS
    from slimkit.compress.command import add_method_command
    from slimkit.compress.contract import _load

    _load()
    p = subparsers.add_parser("compress", help="apply any registered compression method",
                              description="Apply one registered method to a saved model; "
                                          "`slimkit compress METHOD --help` lists its flags.")
    methods = p.add_subparsers(dest="method", metavar="METHOD", required=True)
    for name in METHODS.names():
        spec = METHODS.get(name)
        doc = (spec.config.__doc__ or "").strip().splitlines()
        add_method_command(methods, name, spec.config,
                           help=f"{spec.family}: {doc[0] if doc else name}")


def run(args: argparse.Namespace) -> int:
    from slimkit.compress import METHODS
    from slimkit.compress.command import run_method_command

    return run_method_command(args, METHODS.get(args.method).config)
