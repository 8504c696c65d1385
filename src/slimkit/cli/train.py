"""`slimkit train`: train a zoo model on a data set, with checkpoints and resume."""

from __future__ import annotations

import argparse

from slimkit.cli._common import add_data_args, make_loader


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "train", help="train a zoo model",
        description="Train a zoo model; runs under torchrun with DDP as well.")
    p.add_argument("--arch", default="lenet5", help="zoo model name (default: lenet5)")
    p.add_argument("--epochs", type=int, default=5)
    p.add_argument("--lr", type=float, default=0.05)
    p.add_argument("--optimizer", default="sgd", help="sgd or adam")
    p.add_argument("--schedule", default="cosine", help="cosine, constant or step")
    p.add_argument("--augment", action="store_true", help="random crop + flip (CIFAR)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--checkpoint-dir", default=None, help="write last.pt here after every epoch")
    p.add_argument("--resume", action="store_true", help="continue from --checkpoint-dir/last.pt")
    p.add_argument("--time-budget", type=float, default=None, help="stop after this many seconds")
    p.add_argument("--out", required=True, help="model file to write (.pt)")
    add_data_args(p)


def run(args: argparse.Namespace) -> int:
    from slimkit import data, zoo
    from slimkit.train import distributed, fit, save_model

    import torch

    torch.manual_seed(args.seed)  # the initial weights are part of the run's seed
    shape = data.input_shape(args.data)
    kwargs = {"num_classes": data.num_classes(args.data), "in_channels": shape[0]}
    model = zoo.create(args.arch, **kwargs)
    train_loader = make_loader(args, "train", train=True)
    if args.augment:
        train_loader = data.loader(train_loader.dataset, batch_size=args.batch_size, train=True,
                                   augment=True, seed=args.seed)
    test_loader = make_loader(args, "test")
    history = fit(model, train_loader, epochs=args.epochs, lr=args.lr, optimizer=args.optimizer,
                  schedule=args.schedule, val_loader=test_loader, seed=args.seed,
                  checkpoint_dir=args.checkpoint_dir, resume=args.resume,
                  time_budget_s=args.time_budget)
    if distributed.is_main():
        save_model(args.out, model, arch=args.arch, arch_kwargs=kwargs, data=args.data)
        print(f"wrote {args.out}: {history.summary() if hasattr(history, 'summary') else ''}")
    return 0
