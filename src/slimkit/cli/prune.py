"""`slimkit prune CHECKPOINT --method M --target 0.5 --out FILE`: prune a saved model.

The data set (for methods that train, fine-tuning and the accuracy printed) is the one stored
in the model file unless `--data` is given; the pruned file carries the task forward.
"""

from __future__ import annotations

import argparse
import math

from slimkit.cli._common import (HelpFormatter, add_data_args, check_fits, check_out,
                                 check_shape_fits, load_model, make_loader, nonneg_int,
                                 positive_float, positive_int, resolve_task, top1)
from slimkit.errors import UserError

# PruneConfig's field names as the flags that set them (messages name the flag)
_FLAGS = {"unknown pruning method": "--method: unknown pruning method",
          "unknown target": "--target-kind: unknown target",
          "ratio": "--target", "unknown granularity": "--granularity: unknown granularity",
          "unknown importance": "--importance: unknown importance",
          "round_to": "--round-to", "train_epochs": "--train-epochs",
          "finetune_epochs": "--finetune-epochs", "need lr": "--lr: need lr"}
_TRAINS = ("han", "agp", "sfp", "channel_lasso")  # methods that always need training data


def _finite(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"expected a finite number, got {text!r}")
    return value


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    from slimkit.cli._names import PRUNE_METHODS

    p = subparsers.add_parser(
        "prune", help="prune a model (structured or unstructured)", formatter_class=HelpFormatter,
        description="Prune a saved model or a zoo model by a registered method.")
    p.add_argument("checkpoint", help="model file (slimkit train --out) or a zoo model name")
    p.add_argument("--method", default="l1_filter",
                   help=f"pruning method: {', '.join(PRUNE_METHODS.names())}")
    p.add_argument("--target", type=_finite, default=0.5,
                   help="sparsity to reach in [0, 1), or with --target-kind macs/params/latency "
                   "the fraction to keep in (0, 1]. Filter pruning removes a layer's filters and "
                   "the next layer's matching input channels, so a sparsity of s keeps about "
                   "(1-s)^2 of a layer pair's weights")
    p.add_argument("--target-kind", default="sparsity",
                   choices=("sparsity", "macs", "params", "latency"), help="what --target sets")
    p.add_argument("--granularity", default="element",
                   help="for magnitude/han/agp: element, vector, kernel, channel, filter, nm")
    p.add_argument("--importance", default="",
                   help="criterion (default: the method's own)")
    p.add_argument("--ignore", action="append", default=[],
                   help="layer glob to leave whole (repeatable; default: none)")
    p.add_argument("--round-to", type=positive_int, default=1,
                   help="keep channel counts a multiple of this")
    p.add_argument("--train-epochs", type=nonneg_int, default=1,
                   help="training inside the method (han, agp, slimming, ssl, sfp)")
    p.add_argument("--finetune-epochs", type=nonneg_int, default=0,
                   help="fine-tuning epochs after pruning")
    p.add_argument("--lr", type=positive_float, default=0.01,
                   help="learning rate of training and fine-tuning")
    p.add_argument("--out", required=True, help="where to write the pruned model file (.pt)")
    add_data_args(p)


def _config(args: argparse.Namespace):
    from slimkit.pruning import PruneConfig

    try:
        return PruneConfig(
            method=args.method, ratio=args.target, target=args.target_kind,
            granularity=args.granularity, importance=args.importance, ignore=tuple(args.ignore),
            round_to=args.round_to, train_epochs=args.train_epochs,
            finetune_epochs=args.finetune_epochs, lr=args.lr)
    except UserError as exc:
        msg = str(exc)
        for key, flag in _FLAGS.items():
            if msg.startswith(key):
                msg = flag + msg[len(key):]
                break
        raise UserError(msg) from None


def _needs_data(cfg) -> bool:
    return (cfg.method in _TRAINS or cfg.finetune_epochs > 0
            or cfg.method in ("slimming", "ssl") and cfg.train_epochs > 0)


def run(args: argparse.Namespace) -> int:
    import torch

    from slimkit.metrics import count_macs, count_params
    from slimkit.pruning.api import prune_with_ratio
    from slimkit.train import evaluate, save_model

    cfg = _config(args)
    check_out(args.out, "--out", inputs=(args.checkpoint,), suffixes=(".pt", ".pth"))
    loaded = load_model(args.checkpoint)
    if loaded.kind in ("quantized", "onnx"):
        raise UserError(f"{args.checkpoint} is a quantized model; prune the float model file "
                        "(.pt) and quantize afterwards")
    needs_data = _needs_data(cfg)
    task = resolve_task(args, loaded, required=needs_data)
    model, arch = loaded.model, loaded.arch
    test = train = None
    if task is not None:
        test = make_loader(task, "test", args.batch_size, args.limit)
        check_fits(model, test, task, args.checkpoint)
        if needs_data:
            train = make_loader(task, "train", args.batch_size, args.limit, train=True)
        shape = tuple(task["input_shape"])
    else:
        shape = loaded.input_shape
        check_shape_fits(model, shape, args.checkpoint, "its input shape")
    x = torch.zeros(1, *shape)
    acc_before = evaluate(model, test)["top1"] if test is not None else None
    small, used = prune_with_ratio(model, cfg, example_inputs=x, data=train)

    before, after = count_params(model), count_params(small)
    nz = sum(int((p != 0).sum()) for p in small.parameters())
    macs_b = count_macs(model, shape).total
    macs_a = count_macs(small, shape, skip_zeros=True).total
    print(f"{cfg.method}: params {before:,} -> {after:,} (non-zero {nz:,}, kept "
          f"{100 * nz / max(before, 1):.1f}%), MACs {macs_b:,} -> {macs_a:,} (ratio used "
          f"{used:.3f})")
    if cfg.target == "sparsity" and after < before and nz / max(before, 1) < (1 - used) - 0.05:
        print(f"note: {cfg.method} removes whole filters, and with them the matching input "
              f"channels of the next layer, so --target {cfg.ratio} keeps about "
              f"(1-{used:.2f})^2 = {100 * (1 - used) ** 2:.0f}% of a layer pair's weights; "
              "use --target-kind params to set the fraction of parameters kept")
    if test is not None:
        acc = evaluate(small, test)["top1"]
        print(f"{task['data']}/test: {top1(acc_before)} before, {top1(acc)} after pruning"
              + (f" (n={args.limit} subset)" if args.limit else ""))
    else:
        print(f"no data set known for {args.checkpoint}: pass --data NAME to score it")
    save_model(args.out, small, arch=arch, arch_kwargs=loaded.arch_kwargs, task=task,
               method=cfg.method, target=cfg.ratio, target_kind=cfg.target,
               data=task["data"] if task else None)
    print(f"wrote {args.out}")
    return 0
