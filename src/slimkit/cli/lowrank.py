"""`slimkit lowrank MODEL --method svd|tucker|cp --rank-selection ... --out FILE.onnx`:
factorise a saved model's layers (flags generated from `LowRankConfig`)."""

from __future__ import annotations

import argparse


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    from slimkit.compress.command import add_method_command
    from slimkit.lowrank import LowRankConfig

    add_method_command(subparsers, "lowrank", LowRankConfig,
                       help="low-rank factorisation (SVD, Tucker-2, CP)",
                       description="Factorise the Linear/Conv2d layers of a saved model "
                                   "(Denton 2014, Kim 2016, Lebedev 2015).")


def run(args: argparse.Namespace) -> int:
    from slimkit.compress.command import run_method_command
    from slimkit.lowrank import LowRankConfig

    return run_method_command(args, LowRankConfig)
