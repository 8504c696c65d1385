"""`slimkit prune CHECKPOINT --method M --target 0.5 --out FILE`: prune a saved model."""

from __future__ import annotations

import argparse

from slimkit.cli._common import add_data_args, load_model_or_arch, make_loader


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    from slimkit.cli._names import PRUNE_METHODS as METHODS
    from slimkit.cli._names import PRUNE_TARGETS as TARGETS

    p = subparsers.add_parser(
        "prune",
        help="prune a model (structured or unstructured)",
        description="Prune a saved model or a zoo model by a registered method.",
    )
    p.add_argument("checkpoint", help="model file (slimkit train --out) or a zoo model name")
    p.add_argument("--method", default="l1_filter", help=f"one of: {', '.join(METHODS.names())}")
    p.add_argument(
        "--target",
        type=float,
        default=0.5,
        help="sparsity to reach, or the fraction of MACs/params/latency to keep",
    )
    p.add_argument("--target-kind", default="sparsity", choices=TARGETS)
    p.add_argument(
        "--granularity",
        default="element",
        help="for magnitude/han/agp: element, vector, kernel, channel, filter, nm",
    )
    p.add_argument("--importance", default="", help="criterion (default: the method's own)")
    p.add_argument(
        "--ignore", action="append", default=[], help="layer glob to leave whole (repeatable)"
    )
    p.add_argument("--round-to", type=int, default=1)
    p.add_argument(
        "--train-epochs",
        type=int,
        default=1,
        help="training inside the method (han, agp, slimming, ssl, sfp)",
    )
    p.add_argument("--finetune-epochs", type=int, default=0)
    p.add_argument("--lr", type=float, default=0.01)
    p.add_argument("--out", required=True, help="where to write the pruned model file")
    add_data_args(p, default="mnist5k")


def run(args: argparse.Namespace) -> int:
    import torch

    from slimkit import zoo
    from slimkit.pruning import PruneConfig, prune
    from slimkit.train import evaluate, save_model

    cfg = PruneConfig(
        method=args.method,
        ratio=args.target,
        target=args.target_kind,
        granularity=args.granularity,
        importance=args.importance,
        ignore=tuple(args.ignore),
        round_to=args.round_to,
        train_epochs=args.train_epochs,
        finetune_epochs=args.finetune_epochs,
        lr=args.lr,
    )
    model, arch = load_model_or_arch(args.checkpoint)
    needs_data = (
        cfg.method in ("han", "agp", "sfp", "channel_lasso")
        or cfg.finetune_epochs > 0
        or cfg.method in ("slimming", "ssl")
        and cfg.train_epochs > 0
    )
    train = make_loader(args, "train", train=True) if needs_data else None
    shape = zoo.input_shape(arch) if arch in zoo.names() else None
    if shape is None:
        x = next(iter(train if train is not None else make_loader(args, "test")))[0][:1]
    else:
        x = torch.zeros(1, *shape)
    small = prune(model, cfg, example_inputs=x, data=train)
    from slimkit.metrics import count_macs, count_params

    before, after = count_params(model), count_params(small)
    nz = sum(int((p != 0).sum()) for p in small.parameters())
    macs_b = count_macs(model, tuple(x.shape[1:])).total
    macs_a = count_macs(small, tuple(x.shape[1:]), skip_zeros=True).total
    print(
        f"{cfg.method}: params {before} -> {after} (non-zero {nz}), MACs {macs_b} -> {macs_a} "
        f"(ratio used {getattr(small, 'slimkit_prune_ratio', cfg.ratio):.3f})"
    )
    if needs_data or args.data:
        acc = evaluate(small, make_loader(args, "test"))["top1"]
        print(f"test top-1 after pruning: {acc:.4f}")
    save_model(
        args.out, small, arch=arch, method=cfg.method, target=cfg.ratio, target_kind=cfg.target
    )
    print(f"wrote {args.out}")
    return 0
