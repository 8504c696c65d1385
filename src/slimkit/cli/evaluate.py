"""`slimkit evaluate`: top-1/top-5 accuracy of a saved model on a data set."""

from __future__ import annotations

import argparse

from slimkit.cli._common import add_data_args, load_model_or_arch, make_loader


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("evaluate", help="accuracy of a saved model",
                              description="Evaluate a saved model on a data set's test split.")
    p.add_argument("checkpoint", help="model file written by `slimkit train --out`")
    p.add_argument("--split", default="test", choices=("train", "test"))
    add_data_args(p)


def run(args: argparse.Namespace) -> int:
    from slimkit.train import evaluate

    model, _ = load_model_or_arch(args.checkpoint)
    result = evaluate(model, make_loader(args, args.split))
    print(f"{args.checkpoint} on {args.data}/{args.split}: top-1 {100 * result['top1']:.2f}%  "
          f"top-5 {100 * result['top5']:.2f}%  loss {result['loss']:.4f}  n={result['n']}")
    return 0
