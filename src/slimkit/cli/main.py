"""The `slimkit` command line: one module per command, errors as one line.

Start-up stays light: only the command being run is imported (its module imports torch inside
``run``), so ``slimkit --help`` and ``slimkit <command> --help`` never import torch.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from typing import Callable, Sequence

# Each command lives in slimkit/cli/<name>.py and exposes add_parser(subparsers) and run(args).
COMMANDS = ("train", "evaluate", "info", "compare", "prune", "quantize", "lowrank", "distill", "compress",
            "run", "auto", "survey", "demo")
# The one-line help of each command for `slimkit --help`, without importing the command.
SUMMARIES = {
    "train": "train a zoo model",
    "evaluate": "accuracy of a saved model",
    "info": "per-layer shapes, params, MACs and memory",
    "compare": "six ratios of a compressed model to its original",
    "prune": "prune a model (structured or unstructured)",
    "quantize": "post-training quantization (PTQ, DFQ, mixed precision)",
    "lowrank": "factorise conv/linear layers (SVD, Tucker-2, CP)",
    "distill": "train a student from a teacher (KD, attention, FitNets ...)",
    "compress": "apply any registered method by name (slimkit compress METHOD --help)",
    "run": "run a YAML recipe (any method, finetune, distill and export steps)",
    "auto": "find the recipe that meets a latency / size / MACs target on this host",
    "survey": "reproduce the survey's comparison tables (markdown + HTML)",
    "demo": "train, compress and compare LeNet-5 (no data needed)",
}


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # one clear line, exit status 2
        command = self.prog.split()[1:]  # "slimkit train" -> the command, named in the line
        where = f"{' '.join(command)}: " if command else ""
        self.exit(2, f"slimkit: error: {where}{message}\n")


def _command_of(argv: Sequence[str]) -> str | None:
    """The command named in ``argv`` (the first word that is not an option), if known."""
    for word in argv:
        if word == "--":
            return None
        if not word.startswith("-"):
            return word if word in COMMANDS else None
    return None


def _with_threads(run: Callable[[argparse.Namespace], int]) -> Callable[..., int]:
    """Run a command under slimkit's thread default (``slimkit.threads``; ``--threads`` or
    ``SLIMKIT_THREADS`` override it)."""

    def wrapped(args: argparse.Namespace) -> int:
        from slimkit.threads import apply_threads

        apply_threads(getattr(args, "threads", None), cap_only=True, quiet=True)
        return run(args)

    return wrapped


def build_parser(argv: Sequence[str] | None = None) -> argparse.ArgumentParser:
    """The parser; only the command named in ``argv`` (all of them when argv is None) is
    imported and gets its full arguments, the others are listed by name and summary."""
    parser = _Parser(
        prog="slimkit",
        description="Make trained CNNs smaller and faster, measured by the survey's six ratios.",
    )
    parser.add_argument("--version", action="version", version=_version())
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    sub.required = True
    wanted = set(COMMANDS) if argv is None else {_command_of(argv)}
    for name in COMMANDS:
        if name not in wanted:
            sub.add_parser(name, help=SUMMARIES[name])
            continue
        module = importlib.import_module(f"slimkit.cli.{name}")
        module.add_parser(sub)
        command = sub.choices[name]
        if "--threads" not in command._option_string_actions:
            from slimkit.cli._common import positive_int

            command.add_argument("--threads", type=positive_int, default=None, metavar="N",
                                 help="torch intra-op threads (default: the cores free now; "
                                      "env SLIMKIT_THREADS)")
        command.set_defaults(run=_with_threads(module.run))
    return parser


def _version() -> str:
    from slimkit import __version__

    return f"slimkit {__version__}"


def main(argv: Sequence[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    parser = build_parser(argv)
    args = parser.parse_args(argv)
    from slimkit.errors import SlimkitError

    try:
        return int(args.run(args) or 0)
    except KeyboardInterrupt:
        print("slimkit: interrupted", file=sys.stderr)
        return 130
    except (SlimkitError, ValueError, KeyError, OSError) as exc:
        # errors a user can cause: one line, exit status 2. Anything else is a bug and keeps
        # its traceback.
        message = exc.args[0] if isinstance(exc, KeyError) and exc.args else exc
        if isinstance(exc, OSError) and not isinstance(exc, SlimkitError) and exc.strerror:
            message = f"{exc.filename}: {exc.strerror}" if exc.filename else exc.strerror
        text = " ".join(str(message).split()) or type(exc).__name__
        print(f"slimkit: error: {text}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
