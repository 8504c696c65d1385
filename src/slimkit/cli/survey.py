"""`slimkit survey --out DIR`: the survey's comparison tables, reproduced and reported.

Writes ``DIR/survey.md`` and a self-contained ``DIR/survey.html``; every cell is cached under
``DIR/cache`` by its config hash, so a rerun is instant and an interrupted run resumes.
"""

from __future__ import annotations

import argparse
import shlex
import sys

from slimkit.cli._common import HelpFormatter, check_out
from slimkit.errors import UserError

BUDGETS = ("smoke", "quick", "full")  # slimkit.survey.setup.BUDGETS (no torch at --help)
# slimkit.survey.report.TABLES, in report order (no torch at --help)
TABLES = ("table6", "table7", "deep_compression", "section34", "table8", "distillation",
          "sensitivity")


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "survey", help="reproduce the survey's comparison tables (markdown + HTML)",
        formatter_class=HelpFormatter,
        description="Regenerate the survey's Tables 6, 7 and 8, Deep Compression on the LeNets, "
        "section 3.4's six ratios and a distillation table from runs on this machine, each "
        "beside the published numbers. Budgets: smoke (seconds, embedded/synthetic data), "
        "quick (minutes, data subsets), full (hours).")
    p.add_argument("--budget", default="quick", choices=BUDGETS,
                   help="how much to train and measure")
    p.add_argument("--out", required=True,
                   help="output folder: survey.md, survey.html and the cell cache")
    p.add_argument("--data-root", default=None,
                   help="folder holding fashion-mnist/ and cifar10-jpeg.tar.gz (without it, "
                   "the embedded mnist5k digits and synthetic images, and the tables say so)")
    p.add_argument("--tables", default=None, type=_tables, metavar="NAME[,NAME...]",
                   help=f"compute only these tables ({', '.join(TABLES)}); table8 brings "
                   "section34, which it ranks. The report then holds only these")
    p.add_argument("--checkpoints", default=None,
                   help="folder of trained baseline files (default: benchmarks/checkpoints "
                   "of a source checkout, when present)")
    p.add_argument("--train-missing", action="store_true",
                   help="at the full budget, train a baseline whose checkpoint is missing "
                   "here (hours on a CPU) instead of stopping with its rebuild command")


def _tables(text: str) -> tuple[str, ...]:
    names = tuple(n.strip() for n in text.split(",") if n.strip())
    bad = [n for n in names if n not in TABLES]
    if bad or not names:
        raise argparse.ArgumentTypeError(
            f"unknown table {', '.join(bad) or repr(text)}; choose from {', '.join(TABLES)}")
    return names


def run(args: argparse.Namespace) -> int:
    from pathlib import Path

    out = Path(args.out)
    if out.exists() and not out.is_dir():
        raise UserError(f"--out {out} is a file; give a folder")
    if args.data_root is not None and not Path(args.data_root).is_dir():
        raise UserError(f"--data-root {args.data_root} is not a folder")
    if args.checkpoints is not None and not Path(args.checkpoints).is_dir():
        raise UserError(f"--checkpoints {args.checkpoints} is not a folder")
    out.mkdir(parents=True, exist_ok=True)
    for name in ("survey.md", "survey.html"):
        check_out(out / name, flag="--out")

    from slimkit.survey.report import run_survey

    command = "slimkit " + " ".join(shlex.quote(a) for a in sys.argv[1:]) \
        if sys.argv[1:2] == ["survey"] else "slimkit survey " + " ".join(
            shlex.quote(a) for a in _argv(args))
    result = run_survey(args.budget, out, data_root=args.data_root,
                        checkpoints=args.checkpoints, command=command,
                        tables=getattr(args, "tables", None),
                        train_missing=getattr(args, "train_missing", False),
                        log=lambda m: print(m, file=sys.stderr, flush=True))
    print(f"wrote {result['markdown']} and {result['html']} in {result['wall_s']:.0f} s "
          f"({result['computed']} cells computed, {result['reused']} from the cache)")
    return 0


def _argv(args: argparse.Namespace) -> list[str]:
    out = ["--budget", args.budget, "--out", str(args.out)]
    if args.data_root:
        out += ["--data-root", str(args.data_root)]
    if args.checkpoints:
        out += ["--checkpoints", str(args.checkpoints)]
    if getattr(args, "tables", None):
        out += ["--tables", ",".join(args.tables)]
    if getattr(args, "train_missing", False):
        out += ["--train-missing"]
    return out


def main(argv: list[str] | None = None) -> int:
    """``python -m slimkit.cli.survey ...`` (the same as ``slimkit survey ...``)."""
    parser = argparse.ArgumentParser(prog="slimkit")
    sub = parser.add_subparsers(dest="command", required=True)
    add_parser(sub)
    args = parser.parse_args(["survey", *(sys.argv[1:] if argv is None else argv)])
    import torch

    torch.set_num_threads(1)
    try:
        return run(args)
    except UserError as exc:
        print(f"slimkit: error: survey: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    raise SystemExit(main())
