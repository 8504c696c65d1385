"""`slimkit auto`: search pruning ratios, low-rank and int8 for a target on this host."""

from __future__ import annotations

import argparse
import os

from slimkit.cli._common import HelpFormatter, add_data_args, load_model, resolve_task


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "auto", help="find the recipe that meets a latency / size / MACs target", formatter_class=HelpFormatter,
        description="Search recipes that combine L1 filter pruning, SVD of the fc layers, a "
        "distillation fine-tune and int8 (onnxruntime) for the most accurate model that meets "
        "--target within --max-drop points; every candidate is cached in OUT/cache (an "
        "interrupted search resumes) and runs under torchrun across ranks. Writes OUT/auto.md, "
        "OUT/pareto.png, OUT/chosen.yaml (reproduce with `slimkit run`) and the chosen file.")
    p.add_argument("model", help="model file written by `slimkit train` (it remembers its data)")
    p.add_argument("--target", required=True, help="latency=0.5x | size=0.25x | size=200KB | macs=0.5x")
    p.add_argument("--max-drop", type=float, default=1.0, help="top-1 points the result may lose")
    p.add_argument("--device", default="host", choices=("host",),
                   help="where latency is measured (this host, onnxruntime, 1 thread)")
    p.add_argument("--prune-ratios", default="0,0.25,0.4,0.5,0.6,0.75",
                   help="comma-separated L1 filter pruning ratios to try (0: none)")
    p.add_argument("--no-lowrank", action="store_true", help="do not try SVD of the fc layers")
    p.add_argument("--no-int8", action="store_true", help="do not try int8")
    p.add_argument("--finetune-epochs", type=int, default=1, help="distillation epochs after a change")
    p.add_argument("--max-candidates", type=int, default=12, help="candidates run at most")
    p.add_argument("--out", required=True, help="output folder (created; reused to resume)")
    add_data_args(p)


def _ratios(text: str) -> tuple[float, ...]:
    from slimkit.errors import UserError

    try:
        return tuple(float(v) for v in text.split(","))
    except ValueError:
        raise UserError(f"--prune-ratios must be comma-separated numbers, got {text!r}") from None


def run(args: argparse.Namespace) -> int:
    from pathlib import Path

    from slimkit.auto.search import AutoConfig, parse_target, search
    from slimkit.errors import UserError

    target = parse_target(args.target)
    cfg = AutoConfig(target, max_drop=args.max_drop, prune_ratios=_ratios(args.prune_ratios),
                     lowrank=not args.no_lowrank, int8=not args.no_int8,
                     finetune_epochs=args.finetune_epochs, max_candidates=args.max_candidates,
                     limit=args.limit)
    loaded = load_model(args.model)
    if loaded.kind != "model":
        raise UserError(f"{args.model}: `slimkit auto` starts from a float model file (`slimkit train` .pt)")
    task = resolve_task(args, loaded)
    out = Path(args.out)
    if out.exists() and not out.is_dir():
        raise UserError(f"--out {out}: exists and is not a folder")
    out.mkdir(parents=True, exist_ok=True)
    if not os.access(out, os.W_OK):
        raise UserError(f"--out {out}: folder is not writable")
    rank, world, barrier = 0, 1, (lambda: None)
    if int(os.environ.get("WORLD_SIZE", "1")) > 1:
        import torch.distributed as dist

        dist.init_process_group("gloo")
        rank, world, barrier = dist.get_rank(), dist.get_world_size(), dist.barrier
    try:
        summary = search(args.model, task, cfg, out, rank=rank, world=world, barrier=barrier)
    finally:
        if world > 1:
            import torch.distributed as dist

            dist.destroy_process_group()
    if rank == 0:
        print((out / "auto.md").read_text())
        print(f"wrote {out / 'auto.md'}, {out / 'pareto.png'}"
              + (f", {out / 'chosen.yaml'}" if summary["chosen"] else ""))
    return 0
