"""`slimkit train`: train a zoo model on a data set, with checkpoints and resume.

Everything a user can get wrong (architecture, data set shape, output path, resume
checkpoint, learning rate) is checked before the first step. The model file records the
task (data set, root, input shape, classes, normalisation) for every later command.
"""

from __future__ import annotations

import argparse

from slimkit.cli._common import (HelpFormatter, add_data_args, check_fits, check_out,
                                 make_loader, positive_float, positive_int, task_for, top1)
from slimkit.errors import UserError


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "train", help="train a zoo model", formatter_class=HelpFormatter,
        description="Train a zoo model; runs under torchrun with DDP as well. The model file "
        "remembers the data set, so later commands need no --data.")
    p.add_argument("--task", default="classification",
                   choices=("classification", "detection", "segmentation"),
                   help="classification trains --arch on --data; detection / segmentation train "
                        "slimkit.tasks' detector / U-Net on synthetic digit scenes")
    p.add_argument("--arch", default="lenet5", help="zoo model name (classification)")
    p.add_argument("--width", type=positive_int, default=8,
                   help="base width of the detector / U-Net (--task detection|segmentation)")
    p.add_argument("--scenes", type=positive_int, default=2000,
                   help="synthetic training scenes (--task detection|segmentation); a quarter "
                        "as many test scenes")
    p.add_argument("--epochs", type=positive_int, default=5, help="training epochs")
    p.add_argument("--lr", type=positive_float, default=None,
                   help="peak learning rate (default: 0.05; 0.002 with --task detection|segmentation)")
    p.add_argument("--optimizer", default="sgd", help="sgd, adam or adamw")
    p.add_argument("--schedule", default="cosine", help="cosine, constant or step")
    p.add_argument("--augment", action="store_true", help="random crop + flip (CIFAR)")
    p.add_argument("--label-smoothing", type=float, default=0.0,
                   help="label smoothing of the cross-entropy, in [0, 1) (Szegedy et al. 2016)")
    p.add_argument("--channels-last", action="store_true",
                   help="train in NHWC (faster for convnets on CPU)")
    p.add_argument("--precision", default="fp32", choices=("fp32", "bf16"),
                   help="bf16: bfloat16 autocast, weights stay float32 (pays on CPUs with "
                        "AVX-512 BF16 or AMX, and on GPUs)")
    p.add_argument("--seed", type=int, default=0, help="seed of the weights and the shuffling")
    p.add_argument("--checkpoint-dir", default=None,
                   help="write last.pt here after every epoch (default: no checkpoints)")
    p.add_argument("--resume", action="store_true", help="continue from --checkpoint-dir/last.pt")
    p.add_argument("--time-budget", type=positive_float, default=None,
                   help="stop after this many seconds (default: no limit)")
    p.add_argument("--out", required=True, help="model file to write (.pt)")
    add_data_args(p, default="mnist5k")


def _check_resume(args: argparse.Namespace, model) -> None:
    """A resume checkpoint must hold this architecture's weights (checked before training)."""
    from pathlib import Path

    from slimkit.train import load_checkpoint

    if args.checkpoint_dir is None:
        raise UserError("--resume needs --checkpoint-dir (the folder holding last.pt)")
    path = Path(args.checkpoint_dir) / "last.pt"
    if not path.is_file():
        return  # nothing to resume yet: the run starts from scratch and writes it
    state = load_checkpoint(path)["model"]
    if not isinstance(state, dict):
        raise UserError(f"{path}: checkpoint holds no state_dict")
    own = model.state_dict()
    if set(state) != set(own):
        diff = sorted(set(state) ^ set(own))[:3]
        raise UserError(f"--resume: {path} is not a checkpoint of --arch {args.arch} "
                        f"(keys differ: {diff})")
    bad = [k for k in own if tuple(getattr(state[k], "shape", ())) != tuple(own[k].shape)]
    if bad:
        raise UserError(f"--resume: {path} does not fit --arch {args.arch} with --data "
                        f"{args.data} (shapes of {bad[:3]} differ)")


def _train_dense(args: argparse.Namespace) -> int:
    """Detection / segmentation on synthetic scenes (`slimkit.tasks`): train, score the task's
    own metric (mAP@0.5 / mIoU) and write a model file that `evaluate` scores the same way."""
    import torch

    from slimkit.tasks import SceneConfig, evaluate_task, get_task, train_task
    from slimkit.train import save_model
    from slimkit.train.modelfile import TASK_ARCH

    check_out(args.out, "--out", suffixes=(".pt", ".pth"))
    if args.resume or args.checkpoint_dir or args.augment:
        raise UserError(f"--task {args.task}: --resume, --checkpoint-dir and --augment are for "
                        "classification only")
    task = get_task(args.task)
    torch.manual_seed(args.seed)
    model = task.build_model(width=args.width)
    train = task.dataset(SceneConfig(n=args.scenes, split="train", seed=args.seed))
    test = task.dataset(SceneConfig(n=max(1, args.scenes // 4), split="test", seed=args.seed + 1))
    lr = args.lr if args.lr_given else 2e-3
    train_task(model, task.loader(train, batch_size=args.batch_size, train=True, seed=args.seed),
               task, epochs=args.epochs, lr=lr, time_budget_s=args.time_budget, seed=args.seed)
    score = evaluate_task(model, task.loader(test, batch_size=args.batch_size), task)[task.metric]
    record = {"name": task.name, "metric": task.metric, "scenes": args.scenes, "seed": args.seed,
              "input_shape": list(task.input_shape(SceneConfig()))}
    save_model(args.out, model, arch=TASK_ARCH + task.name, arch_kwargs={"width": args.width},
               dense_task=record, score=score, epochs=args.epochs)
    print(f"wrote {args.out}: {task.metric} {100 * score:.2f}% on {len(test)} synthetic "
          f"{task.name} test scenes after {args.epochs} epoch(s)")
    return 0


def run(args: argparse.Namespace) -> int:
    from slimkit import data, zoo
    from slimkit.train import OPTIMIZERS, SCHEDULES, distributed, fit, save_model

    import torch

    args.lr_given = args.lr is not None
    if args.task != "classification":
        return _train_dense(args)
    if args.lr is None:
        args.lr = 0.05
    if args.arch not in zoo.names():
        raise UserError(f"--arch: unknown zoo model {args.arch!r}; known: {', '.join(zoo.names())}")
    if args.optimizer not in OPTIMIZERS.names():
        raise UserError(f"--optimizer: unknown {args.optimizer!r}; known: "
                        f"{', '.join(OPTIMIZERS.names())}")
    if args.schedule not in SCHEDULES.names():
        raise UserError(f"--schedule: unknown {args.schedule!r}; known: "
                        f"{', '.join(SCHEDULES.names())}")
    if not 0.0 <= args.label_smoothing < 1.0:
        raise UserError(f"--label-smoothing must be in [0, 1), got {args.label_smoothing}")
    check_out(args.out, "--out", suffixes=(".pt", ".pth"))
    if args.checkpoint_dir is not None:
        check_out(args.checkpoint_dir, "--checkpoint-dir", folder=True)
    task = task_for(args.data, args.root)

    torch.manual_seed(args.seed)  # the initial weights are part of the run's seed
    kwargs = {"num_classes": task["num_classes"], "in_channels": task["input_shape"][0]}
    model = zoo.create(args.arch, **kwargs)
    train_loader = make_loader(task, "train", args.batch_size, args.limit, train=True)
    check_fits(model, train_loader, task, f"--arch {args.arch}")
    if args.resume:
        _check_resume(args, model)
    if args.augment:
        train_loader = data.loader(train_loader.dataset, batch_size=args.batch_size, train=True,
                                   augment=True, seed=args.seed)
    test_loader = make_loader(task, "test", args.batch_size, args.limit)
    history = fit(model, train_loader, epochs=args.epochs, lr=args.lr, optimizer=args.optimizer,
                  schedule=args.schedule, val_loader=test_loader, seed=args.seed,
                  checkpoint_dir=args.checkpoint_dir, resume=args.resume,
                  time_budget_s=args.time_budget, label_smoothing=args.label_smoothing,
                  channels_last=args.channels_last, precision=args.precision)
    if distributed.is_main():
        acc = history.last("val_top1") if history.epochs else float("nan")
        save_model(args.out, model, arch=args.arch, arch_kwargs=kwargs, data=args.data,
                   task=task, top1=acc, epochs=history.epochs)
        print(f"wrote {args.out}: {top1(acc)} on {args.data}/test after {history.epochs} "
              f"epoch(s)")
    return 0
