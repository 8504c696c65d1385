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
    if loaded.meta.get("dense_task"):
        return _evaluate_dense(args, loaded)
    task = resolve_task(args, loaded)
    loader = make_loader(task, args.split, args.batch_size, args.limit)
    check_fits(loaded.model, loader, task, args.checkpoint)
    result = evaluate(loaded.model, loader)
    print(f"{args.checkpoint} on {task['data']}/{args.split}: {top1(result['top1'])}  "
          f"top-5 {100 * result['top5']:.2f}%  loss {result['loss']:.4f}  n={result['n']}")
    return 0


def _evaluate_dense(args: argparse.Namespace, loaded) -> int:
    """A detector / segmenter written by `slimkit train --task`: its own metric on synthetic
    test scenes drawn as at training time (the same seed gives the same scenes)."""
    from slimkit.errors import UserError
    from slimkit.tasks import SceneConfig, evaluate_task, get_task

    record = loaded.meta["dense_task"]
    if not isinstance(record, dict) or not {"name", "scenes", "seed"} <= set(record):
        raise UserError(f"{args.checkpoint}: the stored dense_task record is incomplete")
    if args.data is not None:
        raise UserError(f"{args.checkpoint} is a {record['name']} model on synthetic scenes; "
                        "--data does not apply")
    task = get_task(record["name"])
    n = max(1, int(record["scenes"]) // 4)
    split = "train" if args.split == "train" else "test"
    seed = int(record["seed"]) + (0 if split == "train" else 1)
    scenes = task.dataset(SceneConfig(n=int(record["scenes"]) if split == "train" else n,
                                      split=split, seed=seed))
    score = evaluate_task(loaded.model, task.loader(scenes, batch_size=args.batch_size), task)
    print(f"{args.checkpoint} on synthetic {task.name} scenes/{split}: {task.metric} "
          f"{100 * score[task.metric]:.2f}%  n={len(scenes)}")
    return 0

