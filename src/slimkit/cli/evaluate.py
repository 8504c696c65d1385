"""`slimkit evaluate`: top-1/top-5 accuracy of a saved model on its own data set."""

from __future__ import annotations

import argparse

from slimkit.cli._common import (HelpFormatter, add_data_args, check_fits, load_model,
                                 make_loader, resolve_task, top1)


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "evaluate", help="accuracy of a saved model", formatter_class=HelpFormatter,
        description="Evaluate a model file (`train`/`prune` .pt, `quantize` .onnx or "
        ".safetensors) on the test split of the data set it was trained on.")
    p.add_argument("checkpoint", help="model file, or a zoo model name with --data")
    p.add_argument("--split", default="test", choices=("train", "test"), help="split to score")
    add_data_args(p)


def run(args: argparse.Namespace) -> int:
    from slimkit.train import evaluate

    loaded = load_model(args.checkpoint)
    task = resolve_task(args, loaded)
    loader = make_loader(task, args.split, args.batch_size, args.limit)
    check_fits(loaded.model, loader, task, args.checkpoint)
    result = evaluate(loaded.model, loader)
    print(f"{args.checkpoint} on {task['data']}/{args.split}: {top1(result['top1'])}  "
          f"top-5 {100 * result['top5']:.2f}%  loss {result['loss']:.4f}  n={result['n']}")
    return 0
